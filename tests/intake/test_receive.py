"""Every door files through instance_receive: these tests drive it with real DICOM files."""

import datetime
import shutil
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import storages
from django.db import IntegrityError, connection
from django.dispatch import receiver

from audit.models import AuditEvent
from intake import signals
from intake.exceptions import InvalidTransition, SubmissionRefused
from intake.models import ImagingStudy, Instance, Submission
from intake.services import (
    instance_receive,
    instance_transition,
    instances_receive,
    study_assign,
    study_reject_unassigned,
    study_transition,
    submission_close,
    submission_open,
)
from trials.exceptions import NotQualified
from trials.models import SiteQualification
from trials.services import (
    qualification_decide,
    qualification_request,
    qualification_submit,
    subject_enroll,
    training_record_add,
)

from ..trials.factories import ProtocolVersionFactory, ScannerFactory
from .dicom import make_study

pytestmark = pytest.mark.django_db

ENROLLED = datetime.date(2026, 3, 2)
SCANNER = {"Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM Force", "DeviceSerialNumber": "75123",
           "SoftwareVersions": "syngo CT VA50A"}


@pytest.fixture
def received():
    """Collects instance_received signals (stands in for the de-identification receiver)."""
    seen = []

    @receiver(signals.instance_received, weak=False, dispatch_uid="test-collector")
    def collect(sender, instance_id, **kwargs):
        seen.append(instance_id)

    yield seen
    signals.instance_received.disconnect(dispatch_uid="test-collector")


@pytest.fixture
def ready_site(trial, site1, coordinator_site1, qc_analyst, trial_manager):
    """Site 1 qualified for CT_CAP on its CT, coordinator trained, one subject enrolled."""
    version = ProtocolVersionFactory(trial=trial)
    ct = ScannerFactory(site=site1, manufacturer="SIEMENS", model="SOMATOM Force", serial="75123",
                        software_version="syngo CT VA50A")
    q = qualification_request(actor=coordinator_site1, site=site1, scanner=ct, procedure="CT_CAP")
    qualification_submit(actor=coordinator_site1, qualification=q, study_reference="PH-1")
    qualification_decide(actor=qc_analyst, qualification=q, approve=True)
    training_record_add(actor=trial_manager, user=coordinator_site1, site=site1, protocol_version=version,
                        topic="manual", trained_on=datetime.date(2026, 2, 1), trainer="lab")
    subject = subject_enroll(actor=coordinator_site1, site=site1, code="101-0001", patient_id="MRN-1001",
                             enrollment_date=ENROLLED)
    return {"subject": subject, "baseline": subject.visits.get(timepoint="BL"), "week6": subject.visits.get(
        timepoint="W6"), "qualification": q}


def _web(coordinator, site, ready, **kwargs):
    defaults = {"subject": ready["subject"], "visit": ready["baseline"], "procedure": "CT_CAP"}
    return submission_open(actor=coordinator, site=site, channel=Submission.Channel.WEB, **{**defaults, **kwargs})


def _receive_all(submission, paths):
    return [instance_receive(submission=submission, path=p, name=p.name) for p in paths]


def test_a_web_study_is_stored_with_hashes_audit_and_one_signal_each(
        tmp_path, site1, coordinator_site1, ready_site, received, django_capture_on_commit_callbacks):
    paths = make_study(tmp_path, patient_id="MRN-1001", scanner=SCANNER)
    submission = _web(coordinator_site1, site1, ready_site)
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = _receive_all(submission, paths)
    submission_close(submission=submission)

    assert [o.outcome for o in outcomes] == ["accepted"] * 3
    study = ImagingStudy.objects.get()
    assert (study.subject, study.visit.timepoint, study.procedure, study.version) == (
        ready_site["subject"], "BL", "CT_CAP", 1)
    stored = {storages["quarantine"].open(i.raw_key).read() for i in study.instances.all()}
    assert stored == {p.read_bytes() for p in paths}  # byte for byte as received
    assert sorted(received) == sorted(study.instances.values_list("pk", flat=True))
    submission.refresh_from_db()
    assert (submission.accepted, submission.duplicates, submission.rejected) == (3, 0, 0)
    assert AuditEvent.objects.filter(action="intake.instance_received", subject_id=study.subject_id).count() == 3
    # nothing identifying is kept in plain text
    uid = pydicom.dcmread(paths[0]).SOPInstanceUID
    assert not Instance.objects.filter(sop_uid_hash=uid).exists()
    assert uid not in str(list(AuditEvent.objects.values_list("details", flat=True)))


def test_the_same_file_twice_is_a_duplicate_and_is_not_stored_again(tmp_path, site1, coordinator_site1, ready_site):
    paths = make_study(tmp_path, patient_id="MRN-1001", count=1, scanner=SCANNER)
    first = _receive_all(_web(coordinator_site1, site1, ready_site), paths)
    again = _receive_all(_web(coordinator_site1, site1, ready_site), paths)
    assert first[0].outcome == "accepted" and again[0].outcome == "duplicate"
    assert Instance.objects.count() == 1


def test_same_sop_uid_with_other_bytes_is_rejected_unless_a_rescan_is_declared(
        tmp_path, site1, coordinator_site1, ready_site):
    path = make_study(tmp_path, patient_id="MRN-1001", count=1, scanner=SCANNER)[0]
    _receive_all(_web(coordinator_site1, site1, ready_site), [path])
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = "re-exported"
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed)

    refused = _receive_all(_web(coordinator_site1, site1, ready_site), [changed])[0]
    assert refused.outcome == "rejected" and "declare a rescan" in refused.reason
    rescan = _receive_all(_web(coordinator_site1, site1, ready_site, declared_rescan=True), [changed])[0]
    assert rescan.outcome == "accepted"
    versions = list(ImagingStudy.objects.order_by("version").values_list("version", "supersedes"))
    first_id = ImagingStudy.objects.get(version=1).pk
    assert versions == [(1, None), (2, first_id)]


def test_a_new_study_for_the_same_visit_and_procedure_is_the_next_version(
        tmp_path, site1, coordinator_site1, ready_site):
    _receive_all(_web(coordinator_site1, site1, ready_site), make_study(tmp_path / "a", patient_id="MRN-1001",
                                                                       count=1, scanner=SCANNER))
    _receive_all(_web(coordinator_site1, site1, ready_site), make_study(tmp_path / "b", patient_id="MRN-1001",
                                                                       count=1, scanner=SCANNER))
    assert list(ImagingStudy.objects.order_by("version").values_list("version", flat=True)) == [1, 2]
    assert ImagingStudy.objects.get(version=2).supersedes == ImagingStudy.objects.get(version=1)


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda p: p.write_bytes(b"this is a text file, not an image"), "not a DICOM file"),
    (lambda p: p.write_bytes(p.read_bytes()[:-2000]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:300]), "incomplete DICOM header"),
])
def test_broken_files_are_refused_with_a_reason_and_nothing_stored(
        tmp_path, site1, coordinator_site1, ready_site, damage, reason):
    path = make_study(tmp_path, patient_id="MRN-1001", count=1, scanner=SCANNER)[0]
    damage(path)
    outcome = _receive_all(_web(coordinator_site1, site1, ready_site), [path])[0]
    assert outcome.outcome == "rejected" and reason in outcome.reason
    assert not Instance.objects.exists() and not ImagingStudy.objects.exists()


def test_an_image_without_pixel_data_is_refused(tmp_path, site1, coordinator_site1, ready_site):
    path = make_study(tmp_path, patient_id="MRN-1001", count=1, scanner=SCANNER)[0]
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    outcome = _receive_all(_web(coordinator_site1, site1, ready_site), [path])[0]
    assert outcome.outcome == "rejected" and "requires it" in outcome.reason


def test_a_study_spanning_two_patient_ids_is_refused(tmp_path, site1, coordinator_site1, ready_site):
    first = make_study(tmp_path / "a", patient_id="MRN-1001", count=1, scanner=SCANNER)[0]
    study_uid = pydicom.dcmread(first).StudyInstanceUID
    other = make_study(tmp_path / "b", patient_id="MRN-9999", count=1, study_uid=study_uid, scanner=SCANNER)[0]
    outcomes = _receive_all(_web(coordinator_site1, site1, ready_site), [first, other])
    assert [o.outcome for o in outcomes] == ["accepted", "rejected"]
    assert "two Patient IDs" in outcomes[1].reason


def test_a_patient_of_another_site_is_refused(tmp_path, trial, site1, site2, coordinator_site1,
                                              coordinator_site2, ready_site):
    subject_enroll(actor=coordinator_site2, site=site2, code="102-0001", patient_id="MRN-2002",
                   enrollment_date=ENROLLED)
    path = make_study(tmp_path, patient_id="MRN-2002", count=1, scanner=SCANNER)[0]
    outcome = _receive_all(_web(coordinator_site1, site1, ready_site), [path])[0]
    assert outcome.outcome == "rejected" and "another site" in outcome.reason


def test_the_upload_gate_and_site_scope_apply_to_the_web_portal(site1, site2, coordinator_site1,
                                                                coordinator_site2, ready_site):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(NotQualified):
        _web(coordinator_site1, site1, ready_site, procedure="MR_BRAIN")
    with pytest.raises(PermissionDenied):
        _web(coordinator_site2, site1, ready_site)
    with pytest.raises(SubmissionRefused, match="another site"):
        _web(coordinator_site2, site2, ready_site)


def test_gateway_files_are_matched_by_patient_id_and_visit_window(tmp_path, site1, ready_site):
    submission = submission_open(actor=None, site=site1, channel=Submission.Channel.DICOM, calling_ae="SITE101")
    week6 = make_study(tmp_path / "w6", patient_id="MRN-1001", date=ENROLLED + datetime.timedelta(days=40),
                       scanner=SCANNER, count=1)
    stranger = make_study(tmp_path / "x", patient_id="MRN-UNKNOWN", scanner=SCANNER, count=1)
    outside = make_study(tmp_path / "o", patient_id="MRN-1001", date=ENROLLED + datetime.timedelta(days=70),
                         scanner=SCANNER, count=1)
    outcomes = _receive_all(submission, week6 + stranger + outside)

    assert [o.outcome for o in outcomes] == ["accepted"] * 3
    matched = ImagingStudy.objects.get(pk=outcomes[0].study_id)
    assert (matched.visit.timepoint, matched.procedure, matched.status) == ("W6", "CT_CAP", "received")
    inbox = ImagingStudy.objects.filter(status=ImagingStudy.Status.UNASSIGNED).order_by("id")
    assert [s.unassigned_reason for s in inbox] == [
        "no enrolled subject matches the Patient ID", "acquisition date 2026-05-11 falls in no visit window"]


def test_the_coordinator_assigns_or_rejects_from_the_inbox(tmp_path, site1, coordinator_site1, ready_site, received,
                                                           django_capture_on_commit_callbacks):
    submission = submission_open(actor=None, site=site1, channel=Submission.Channel.DICOM, calling_ae="SITE101")
    late = make_study(tmp_path / "o", patient_id="MRN-1001", date=ENROLLED + datetime.timedelta(days=70),
                      scanner=SCANNER, count=2)
    stranger = make_study(tmp_path / "x", patient_id="MRN-UNKNOWN", scanner=SCANNER, count=1)
    outcomes = _receive_all(submission, late + stranger)
    late_study = ImagingStudy.objects.get(pk=outcomes[0].study_id)
    stranger_study = ImagingStudy.objects.get(pk=outcomes[2].study_id)

    with django_capture_on_commit_callbacks(execute=True):
        study_assign(actor=coordinator_site1, study=late_study, subject=ready_site["subject"],
                     visit=ready_site["week6"], procedure="CT_CAP")
    late_study.refresh_from_db()
    assert late_study.status == "received" and late_study.visit.timepoint == "W6"
    assert len(received) == 2
    with pytest.raises(SubmissionRefused, match="Patient ID is not"):
        study_assign(actor=coordinator_site1, study=stranger_study, subject=ready_site["subject"],
                     visit=ready_site["week6"], procedure="CT_CAP")
    study_reject_unassigned(actor=coordinator_site1, study=stranger_study, reason="not a trial patient")
    stranger_study.refresh_from_db()
    assert stranger_study.status == "rejected"


def test_a_scan_from_another_scanner_invalidates_the_qualification(tmp_path, site1, coordinator_site1, ready_site):
    other = {**SCANNER, "SoftwareVersions": "syngo CT VA60"}
    _receive_all(_web(coordinator_site1, site1, ready_site), make_study(tmp_path, patient_id="MRN-1001", count=1,
                                                                       scanner=other))
    ready_site["qualification"].refresh_from_db()
    assert ready_site["qualification"].status == SiteQualification.Status.INVALIDATED


def test_a_phantom_submission_attaches_to_its_qualification(tmp_path, trial, site1, coordinator_site1, ready_site):
    mr = ScannerFactory(site=site1, modality="MR", manufacturer="GE", model="SIGNA", serial="MR1")
    qualification = qualification_request(actor=coordinator_site1, site=site1, scanner=mr, procedure="MR_BRAIN")
    submission = submission_open(actor=coordinator_site1, site=site1, channel=Submission.Channel.WEB,
                                 qualification=qualification)
    _receive_all(submission, make_study(tmp_path, patient_id="PHANTOM", modality="MR", count=2))
    submission_close(submission=submission)
    qualification.refresh_from_db()
    study = ImagingStudy.objects.get(qualification=qualification)
    assert qualification.status == "submitted" and qualification.study_reference == f"Corelab study {study.pk}"
    assert study.subject is None


def test_illegal_status_moves_raise_and_legal_ones_are_audited(tmp_path, site1, coordinator_site1, ready_site):
    _receive_all(_web(coordinator_site1, site1, ready_site), make_study(tmp_path, patient_id="MRN-1001", count=1,
                                                                       scanner=SCANNER))
    study = ImagingStudy.objects.get()
    with pytest.raises(InvalidTransition, match="cannot become accepted"):
        study_transition(actor=None, study=study, to=ImagingStudy.Status.ACCEPTED)
    study_transition(actor=None, study=study, to=ImagingStudy.Status.DEIDENTIFYING)
    instance = study.instances.get()
    with pytest.raises(InvalidTransition):
        instance_transition(actor=None, instance=instance, to=Instance.Status.DEIDENTIFIED)
    instance_transition(actor=None, instance=instance, to=Instance.Status.DEIDENTIFYING)
    assert AuditEvent.objects.filter(action__in=["intake.study_status_changed",
                                                 "intake.instance_status_changed"]).count() == 2


def test_files_are_never_rewritten_in_place(tmp_path, site1, coordinator_site1, ready_site):
    path = make_study(tmp_path, patient_id="MRN-1001", count=1, scanner=SCANNER)[0]
    _receive_all(_web(coordinator_site1, site1, ready_site), [path])
    instance = Instance.objects.get()
    copy = tmp_path / "copy.dcm"
    shutil.copy(path, copy)
    # storing the same key again must get a new name, never overwrite
    with copy.open("rb") as stream:
        from django.core.files import File

        again = storages["quarantine"].save(instance.raw_key, File(stream))
    assert again != instance.raw_key
    storages["quarantine"].delete(again)


def test_a_batch_files_each_file_as_one_would_with_one_event_and_one_signal_per_instance(
        tmp_path, site1, ready_site, received, django_capture_on_commit_callbacks):
    """instances_receive, as the gateway's filer calls it: two studies, a broken file and a repeat in one batch."""
    collected = []

    @receiver(signals.instance_received, weak=False, dispatch_uid="test-series-collector")
    def collect(sender, instance_id, series_id, study_id, **kwargs):
        collected.append((instance_id, series_id, study_id))

    try:
        baseline = make_study(tmp_path / "bl", patient_id="MRN-1001", date=datetime.date(2026, 3, 1), count=3,
                              scanner=SCANNER)
        week6 = make_study(tmp_path / "w6", patient_id="MRN-1001", date=datetime.date(2026, 4, 13), count=2,
                           scanner=SCANNER)
        broken = tmp_path / "broken.dcm"
        broken.write_bytes(b"not DICOM at all")
        gateway = submission_open(actor=None, site=site1, channel=Submission.Channel.DICOM, calling_ae="PACS")
        files = [(baseline[0], "1"), (week6[0], "2"), (broken, "3"), (baseline[1], "4"), (baseline[0], "5"),
                 (week6[1], "6"), (baseline[2], "7")]
        with django_capture_on_commit_callbacks(execute=True):
            outcomes = instances_receive(submission=gateway, files=files)
    finally:
        signals.instance_received.disconnect(dispatch_uid="test-series-collector")

    assert [(o.file, o.outcome) for o in outcomes] == [
        ("1", "accepted"), ("2", "accepted"), ("3", "rejected"), ("4", "accepted"), ("5", "duplicate"),
        ("6", "accepted"), ("7", "accepted")]
    assert "not a DICOM file" in outcomes[2].reason
    studies = {study.visit.timepoint: study for study in ImagingStudy.objects.select_related("visit")}
    assert studies["BL"].instances.count() == 3 and studies["W6"].instances.count() == 2
    instances = {instance.pk: instance for instance in Instance.objects.all()}
    # exactly one signal per stored instance, carrying its series and study
    assert sorted(received) == sorted(instances)
    assert sorted(collected) == sorted((pk, i.series_id, i.study_id) for pk, i in instances.items())
    events = AuditEvent.objects.filter(action="intake.instance_received")
    assert sorted(int(e.target_id) for e in events) == sorted(instances)
    for event in events:
        instance = instances[int(event.target_id)]
        assert event.subject_id == ready_site["subject"].pk and event.details["sha256"] == instance.raw_sha256
    gateway.refresh_from_db()
    assert (gateway.accepted, gateway.duplicates, gateway.rejected) == (5, 1, 1)
    assert [row["file"] for row in gateway.results] == ["3", "1", "4", "5", "7", "2", "6"]  # refusals, then by study


def test_a_batch_that_fails_on_the_database_leaves_nothing_of_that_study(tmp_path, site1, ready_site):
    """A study whose transaction fails keeps no object in quarantine and no row; nothing is counted."""
    paths = make_study(tmp_path, patient_id="MRN-1001", count=2, scanner=SCANNER)
    gateway = submission_open(actor=None, site=site1, channel=Submission.Channel.DICOM, calling_ae="PACS")
    before = set(Path(storages["quarantine"].location).rglob("*.dcm"))
    with connection.cursor() as cursor:  # the next Instance insert fails as a lost server would
        cursor.execute("ALTER TABLE intake_instance ADD CONSTRAINT test_refuse CHECK (raw_size < 0) NOT VALID")
    try:
        with pytest.raises(IntegrityError):
            instances_receive(submission=gateway, files=[(p, p.name) for p in paths])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE intake_instance DROP CONSTRAINT test_refuse")
    assert not Instance.objects.exists() and not ImagingStudy.objects.exists()
    assert set(Path(storages["quarantine"].location).rglob("*.dcm")) == before
    gateway.refresh_from_db()
    assert (gateway.accepted, gateway.rejected, gateway.results) == (0, 0, [])


def test_each_study_status_move_signals_once_after_commit(tmp_path, site1, coordinator_site1, ready_site,
                                                         django_capture_on_commit_callbacks):
    moves = []

    @receiver(signals.study_status_changed, weak=False, dispatch_uid="test-moves")
    def collect(sender, study_id, before, after, **kwargs):
        moves.append((study_id, before, after))

    try:
        _receive_all(_web(coordinator_site1, site1, ready_site),
                     make_study(tmp_path, patient_id="MRN-1001", count=1, scanner=SCANNER))
        study = ImagingStudy.objects.get()
        with django_capture_on_commit_callbacks(execute=True):
            with pytest.raises(InvalidTransition):
                study_transition(actor=None, study=study, to=ImagingStudy.Status.ACCEPTED)
            study_transition(actor=None, study=study, to=ImagingStudy.Status.DEIDENTIFYING)
            study_transition(actor=None, study=study, to=ImagingStudy.Status.DEIDENTIFIED)
    finally:
        signals.study_status_changed.disconnect(dispatch_uid="test-moves")
    assert moves == [(study.pk, "received", "deidentifying"), (study.pk, "deidentifying", "deidentified")]
