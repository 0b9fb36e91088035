"""Part 11 electronic signatures: re-authentication, what is recorded, and the link to the exact content."""

import pytest
from django.db import DatabaseError, transaction
from django.template.loader import render_to_string

from audit.exceptions import SignatureError
from audit.models import AuditEvent, ElectronicSignature
from audit.signatures import content_sha256, signature_list_for_record, signature_sign, signature_verify

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # UserFactory's
ASSESSMENT = {"lesions": [{"site": "liver", "mm": 23}], "response": "PR", "timepoint": "W6"}


def _sign(user, password=PASSWORD, content=ASSESSMENT, **kwargs):
    return signature_sign(user=user, password=password, meaning="Reviewed and approved", record_type="reads.read",
                          record_id=41, content=content, **kwargs)


def test_signing_records_name_time_meaning_and_content_hash(reader1, trial):
    reader1.first_name, reader1.last_name = "Ada", "Reader"
    reader1.save()

    signature = _sign(reader1, trial_id=trial.pk)

    assert signature.printed_name == "Ada Reader" and signature.meaning == "Reviewed and approved"
    assert signature.content_sha256 == content_sha256(ASSESSMENT)
    assert signature.signed_at.utcoffset().total_seconds() == 0
    event = AuditEvent.objects.get(action="audit.signature_signed")
    assert signature.audit_event == event and event.actor == reader1 and event.actor_role == "reader"
    assert event.details["content_sha256"] == signature.content_sha256 and event.trial_id == trial.pk
    assert (event.target_type, event.target_id) == ("reads.read", "41")


def test_wrong_password_refuses_and_records_the_attempt(reader1):
    with pytest.raises(SignatureError):
        _sign(reader1, password="not-my-password")
    assert not ElectronicSignature.objects.exists()
    failed = AuditEvent.objects.get(action="audit.signature_failed")
    assert failed.actor == reader1 and failed.details["record_id"] == "41"


def test_someone_elses_password_does_not_sign(reader1, reader2):
    reader2.set_password("reader2-own-password")
    reader2.save()
    with pytest.raises(SignatureError):
        _sign(reader1, password="reader2-own-password")


def test_inactive_user_cannot_sign(reader1):
    reader1.is_active = False
    reader1.save()
    with pytest.raises(SignatureError):
        _sign(reader1)


def test_a_signature_needs_a_meaning(reader1):
    with pytest.raises(SignatureError):
        signature_sign(user=reader1, password=PASSWORD, meaning=" ", record_type="reads.read", record_id=1,
                       content=b"x")


def test_changing_the_record_invalidates_the_signature(reader1):
    signature = _sign(reader1)
    assert signature_verify(signature=signature, content=ASSESSMENT).valid
    # key order does not matter for a dict; any change of value does
    assert signature_verify(signature=signature, content=dict(reversed(list(ASSESSMENT.items())))).valid
    changed = {**ASSESSMENT, "response": "CR"}
    assert not signature_verify(signature=signature, content=changed).valid


def test_bytes_are_signed_exactly(reader1):
    signature = signature_sign(user=reader1, password=PASSWORD, meaning="Approved", record_type="qc.review",
                               record_id="7", content=b"%PDF-1.7 report")
    assert signature_verify(signature=signature, content=b"%PDF-1.7 report").valid
    assert not signature_verify(signature=signature, content=b"%PDF-1.7 report ").valid


def test_signature_rows_are_never_changed(reader1):
    signature = _sign(reader1)
    with pytest.raises(DatabaseError, match="never changed"), transaction.atomic():
        ElectronicSignature.objects.filter(pk=signature.pk).update(meaning="Rejected")
    with pytest.raises(DatabaseError, match="never changed"), transaction.atomic():
        ElectronicSignature.objects.filter(pk=signature.pk).delete()


def test_include_shows_status_against_the_current_record(reader1):
    _sign(reader1)
    html = render_to_string("audit/_signatures.html", {
        "signatures": signature_list_for_record(record_type="reads.read", record_id=41, content=ASSESSMENT)})
    assert "Reviewed and approved" in html and "Valid" in html
    html = render_to_string("audit/_signatures.html", {
        "signatures": signature_list_for_record(record_type="reads.read", record_id=41,
                                                content={**ASSESSMENT, "response": "SD"})})
    assert "Invalid" in html
