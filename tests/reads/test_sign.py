"""Signing a read: a Part 11 signature is required (wrong password: nothing saved), responses come from the
engine, the read is locked after signing, and corrections are new signed versions with a reason."""

import pytest

from audit.exceptions import SignatureError
from audit.models import AuditEvent, ElectronicSignature
from audit.signatures import signature_verify
from reads.exceptions import InvalidAssessment, ReadLocked, ReadsError, ReasonRequired, TaskNotAvailable
from reads.models import Read, ReadTask
from reads.services import read_correct, read_save_draft, read_sign, read_signed_content, task_open

from .conftest import BASELINE, PASSWORD, followup, read_and_sign, task_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def subject(reading, enroll, accept):
    subject = enroll("101-0001")
    for timepoint in ("BL", "W6"):
        accept(subject, timepoint)
    return subject


@pytest.fixture
def baseline_draft(subject):
    task = task_of(subject, "BL", "A")
    task_open(task=task, user=task.reader.user)
    read_save_draft(task=task, user=task.reader.user, lesions=BASELINE)
    return task


def test_a_wrong_password_signs_nothing(baseline_draft):
    task = baseline_draft

    with pytest.raises(SignatureError, match="password did not match"):
        read_sign(task=task, user=task.reader.user, password="not-my-password")

    task.refresh_from_db()
    read = Read.objects.get(task=task)
    assert task.status == ReadTask.Status.IN_PROGRESS and task.signed_at is None
    assert read.status == Read.Status.DRAFT and read.signature is None and read.responses == {}
    assert not ElectronicSignature.objects.exists()
    assert not AuditEvent.objects.filter(action="reads.read_signed").exists()
    assert AuditEvent.objects.filter(action="audit.signature_failed", actor=task.reader.user).exists()


def test_signing_stores_a_valid_signature_and_locks_the_read(baseline_draft):
    task = baseline_draft
    user = task.reader.user

    read = read_sign(task=task, user=user, password=PASSWORD)

    task.refresh_from_db()
    assert task.status == ReadTask.Status.SIGNED and task.signed_at is not None
    assert read.status == Read.Status.SIGNED
    signature = read.signature
    assert signature.signer == user and signature.printed_name == "reader1"  # no full name: the username
    assert signature.meaning.startswith("Read and assessed")
    assert signature.record_type == "reads.read" and signature.record_id == f"{task.pk}.v1"
    assert signature_verify(signature=signature, content=read_signed_content(read=read)).valid
    event = AuditEvent.objects.get(action="reads.read_signed", target_id=str(read.pk))
    assert event.details["content_sha256"] == signature.content_sha256

    with pytest.raises(ReadLocked, match="signed and locked"):
        read_save_draft(task=task, user=user, lesions=BASELINE)
    with pytest.raises(ReadLocked):
        read_sign(task=task, user=user, password=PASSWORD)


def test_a_changed_read_no_longer_matches_its_signature(baseline_draft):
    read = read_sign(task=baseline_draft, user=baseline_draft.reader.user, password=PASSWORD)
    tampered = {**read_signed_content(read=read), "lesions": {**read.lesions, "targets": []}}

    assert not signature_verify(signature=read.signature, content=tampered).valid


def test_responses_are_computed_by_the_engine_over_the_readers_history(subject, baseline_draft):
    read_sign(task=baseline_draft, user=baseline_draft.reader.user, password=PASSWORD)

    read = read_and_sign(subject, "W6", "A", followup(18, 12))  # 50 → 30 mm: -40 %

    assert read.overall == "PR"
    week6 = read.responses["timepoints"][0]
    assert week6["visit"] == "W6" and week6["target"] == "PR" and week6["sum_mm"] == 30
    assert read.responses["pd_date"] is None


def test_an_invalid_baseline_is_refused_with_the_engines_codes(subject):
    task = task_of(subject, "BL", "A")
    task_open(task=task, user=task.reader.user)
    too_many = {"targets": [{"id": f"T{n}", "organ": f"ORGAN{n}", "nodal": False, "mm": 20, "modality": "CT",
                             "slice_thickness_mm": 5} for n in range(1, 7)], "non_targets": []}
    read_save_draft(task=task, user=task.reader.user, lesions=too_many)

    with pytest.raises(InvalidAssessment, match="MAX_TARGETS_EXCEEDED") as caught:
        read_sign(task=task, user=task.reader.user, password=PASSWORD)

    assert "MAX_TARGETS_EXCEEDED" in caught.value.errors
    assert not ElectronicSignature.objects.exists()
    assert Read.objects.get(task=task).status == Read.Status.DRAFT


@pytest.mark.parametrize("lesions", [
    [],
    {"targets": {"T1": 10, "T2": 10}, "non_target": "NON-CR/NON-PD"},  # new lesions not stated
    {"targets": {"T1": 10, "T2": 10}, "non_target": "NON-CR/NON-PD", "new_lesions": "MAYBE"},
])
def test_a_malformed_follow_up_is_refused_on_saving(subject, baseline_draft, lesions):
    read_sign(task=baseline_draft, user=baseline_draft.reader.user, password=PASSWORD)
    task = task_of(subject, "W6", "A")
    task_open(task=task, user=task.reader.user)

    with pytest.raises(InvalidAssessment):
        read_save_draft(task=task, user=task.reader.user, lesions=lesions)
    assert not Read.objects.filter(task=task).exists()


def test_a_follow_up_the_engine_rejects_is_not_signed(subject, baseline_draft):
    read_sign(task=baseline_draft, user=baseline_draft.reader.user, password=PASSWORD)
    task = task_of(subject, "W6", "A")
    task_open(task=task, user=task.reader.user)
    read_save_draft(task=task, user=task.reader.user, lesions=followup(-3, 10))

    with pytest.raises(InvalidAssessment, match="cannot be evaluated.*negative"):
        read_sign(task=task, user=task.reader.user, password=PASSWORD)
    assert ElectronicSignature.objects.get().record_id == f"{baseline_draft.pk}.v1"  # the baseline's only


def test_signing_without_a_saved_assessment_is_refused(subject):
    task = task_of(subject, "BL", "A")
    task_open(task=task, user=task.reader.user)

    with pytest.raises(ReadsError, match="no saved assessment"):
        read_sign(task=task, user=task.reader.user, password=PASSWORD)


def test_another_user_cannot_sign_the_task(baseline_draft, reading):
    with pytest.raises(TaskNotAvailable):
        read_sign(task=baseline_draft, user=reading.users["reader2"], password=PASSWORD)


def test_a_correction_is_a_new_signed_version_with_its_reason(subject, baseline_draft):
    user = baseline_draft.reader.user
    first = read_sign(task=baseline_draft, user=user, password=PASSWORD)
    corrected = {**BASELINE, "targets": [{**BASELINE["targets"][0], "mm": 32}, BASELINE["targets"][1]]}

    second = read_correct(read=first, user=user, lesions=corrected, reason="T1 re-measured on the axial slice",
                          password=PASSWORD)

    first.refresh_from_db()
    assert first.status == Read.Status.CORRECTED and first.signature is not None  # kept, with its signature
    assert (second.version, second.status, second.corrects, second.correction_reason) == (
        2, Read.Status.SIGNED, first, "T1 re-measured on the axial slice")
    assert second.signature.record_id == f"{baseline_draft.pk}.v2"
    assert signature_verify(signature=second.signature, content=read_signed_content(read=second)).valid
    event = AuditEvent.objects.get(action="reads.read_corrected", target_id=str(second.pk))
    assert event.reason == "T1 re-measured on the axial slice" and event.details["corrects"] == first.pk
    # the correction is what the reader's history now uses
    later = read_and_sign(subject, "W6", "A", followup(20, 12))
    assert later.responses["timepoints"][0]["sum_mm"] == 32  # 52 → 32: -38 %
    assert later.overall == "PR"


def test_a_correction_needs_a_reason_and_the_right_password(baseline_draft):
    user = baseline_draft.reader.user
    first = read_sign(task=baseline_draft, user=user, password=PASSWORD)

    with pytest.raises(ReasonRequired):
        read_correct(read=first, user=user, lesions=BASELINE, reason=" ", password=PASSWORD)
    with pytest.raises(SignatureError):
        read_correct(read=first, user=user, lesions=BASELINE, reason="typo", password="wrong")

    first.refresh_from_db()
    assert first.status == Read.Status.SIGNED
    assert Read.objects.filter(task=baseline_draft).count() == 1


def test_only_the_current_version_can_be_corrected(baseline_draft):
    user = baseline_draft.reader.user
    first = read_sign(task=baseline_draft, user=user, password=PASSWORD)
    read_correct(read=first, user=user, lesions=BASELINE, reason="checked again", password=PASSWORD)

    with pytest.raises(ReadLocked, match="current signed version"):
        read_correct(read=first, user=user, lesions=BASELINE, reason="again", password=PASSWORD)
