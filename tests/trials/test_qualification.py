"""Qualification, training and the upload gate: the record inspectors ask for first."""

import datetime

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from audit.models import AuditEvent
from trials.exceptions import InvalidTransition, NotQualified, NotTrained
from trials.models import ProtocolVersion, SiteNotice, SiteQualification
from trials.selectors import site_qualification_overview
from trials.services import (
    protocol_version_release,
    qualification_check_scan,
    qualification_decide,
    qualification_request,
    qualification_submit,
    scanner_register,
    scanner_update,
    submission_gate,
    training_record_add,
)

from .factories import ProtocolVersionFactory, ScannerFactory, demo_charter

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(trial):
    return ProtocolVersionFactory(trial=trial)


@pytest.fixture
def ct(site1):
    return ScannerFactory(site=site1)


@pytest.fixture
def mr(site1):
    return ScannerFactory(site=site1, manufacturer="GE MEDICAL SYSTEMS", model="SIGNA Premier", modality="MR",
                          software_version="MR30.1")


def _qualify(*, site, scanner, procedure, coordinator, reviewer):
    qualification = qualification_request(actor=coordinator, site=site, scanner=scanner, procedure=procedure)
    qualification_submit(actor=coordinator, qualification=qualification, study_reference="PHANTOM-2026-001")
    return qualification_decide(actor=reviewer, qualification=qualification, approve=True)


def test_qualification_runs_pending_submitted_approved_with_an_event_each(version, site1, ct, coordinator_site1,
                                                                           qc_analyst):
    qualification = qualification_request(actor=coordinator_site1, site=site1, scanner=ct, procedure="CT_CAP")
    assert qualification.status == SiteQualification.Status.PENDING
    assert qualification.scanner_identity["serial"] == ct.serial
    qualification_submit(actor=coordinator_site1, qualification=qualification, study_reference="PHANTOM-7")
    qualification_decide(actor=qc_analyst, qualification=qualification, approve=True, reason="phantom within spec")

    qualification.refresh_from_db()
    assert qualification.status == SiteQualification.Status.APPROVED and qualification.reviewer == qc_analyst
    actions = list(AuditEvent.objects.filter(target_type="trials.sitequalification")
                   .values_list("action", "actor_role"))
    assert actions == [("trials.qualification_requested", "site_coordinator"),
                       ("trials.qualification_submitted", "site_coordinator"),
                       ("trials.qualification_approved", "qc_analyst")]


def test_a_rejection_needs_a_reason_and_notifies_the_site(version, site1, ct, coordinator_site1, qc_analyst,
                                                          django_capture_on_commit_callbacks):
    qualification = qualification_request(actor=coordinator_site1, site=site1, scanner=ct, procedure="CT_CAP")
    qualification_submit(actor=coordinator_site1, qualification=qualification, study_reference="PHANTOM-7")
    with pytest.raises(ValidationError, match="say why"):
        qualification_decide(actor=qc_analyst, qualification=qualification, approve=False, reason=" ")

    with django_capture_on_commit_callbacks(execute=True):
        qualification_decide(actor=qc_analyst, qualification=qualification, approve=False,
                             reason="slice thickness 7 mm exceeds the 5 mm maximum")

    notice = SiteNotice.objects.get(site=site1)
    assert "7 mm" in notice.body
    assert mail.outbox[0].to == [coordinator_site1.email]


def test_the_submitter_cannot_review_their_own_qualification(version, site1, ct, trial_manager):
    qualification = qualification_request(actor=trial_manager, site=site1, scanner=ct, procedure="CT_CAP")
    qualification_submit(actor=trial_manager, qualification=qualification, study_reference="PHANTOM-7")
    with pytest.raises(InvalidTransition, match="cannot also review"):
        qualification_decide(actor=trial_manager, qualification=qualification, approve=True)


def test_a_site_coordinator_cannot_review_qualifications(version, site1, ct, coordinator_site1, trial_manager):
    qualification = qualification_request(actor=trial_manager, site=site1, scanner=ct, procedure="CT_CAP")
    qualification_submit(actor=trial_manager, qualification=qualification, study_reference="PHANTOM-7")
    with pytest.raises(PermissionDenied):
        qualification_decide(actor=coordinator_site1, qualification=qualification, approve=True)


def test_a_procedure_needs_a_scanner_of_an_allowed_modality(version, site1, mr, coordinator_site1):
    with pytest.raises(ValidationError, match="needs CT"):
        qualification_request(actor=coordinator_site1, site=site1, scanner=mr, procedure="CT_CAP")
    with pytest.raises(ValidationError, match="not a procedure"):
        qualification_request(actor=coordinator_site1, site=site1, scanner=mr, procedure="PET_WB")


def test_an_amendment_requiring_requalification_invalidates_that_procedure_only(
        trial, version, site1, ct, mr, coordinator_site1, qc_analyst, trial_manager):
    ct_q = _qualify(site=site1, scanner=ct, procedure="CT_CAP", coordinator=coordinator_site1, reviewer=qc_analyst)
    mr_q = _qualify(site=site1, scanner=mr, procedure="MR_BRAIN", coordinator=coordinator_site1,
                    reviewer=qc_analyst)

    v2 = protocol_version_release(actor=trial_manager, trial=trial, label="2.0",
                                  effective_date=datetime.date(2026, 6, 1), approved_on=datetime.date(2026, 5, 20),
                                  charter=demo_charter(MR_BRAIN={"requalify": True}),
                                  change_summary="3D T1 now required")

    ct_q.refresh_from_db()
    mr_q.refresh_from_db()
    assert ct_q.status == SiteQualification.Status.APPROVED
    assert mr_q.status == SiteQualification.Status.INVALIDATED
    assert "requires requalification for MR_BRAIN" in mr_q.invalidated_reason
    event = AuditEvent.objects.get(action="trials.qualification_invalidated")
    assert event.target_id == str(mr_q.pk) and event.actor == trial_manager
    assert SiteNotice.objects.filter(site=site1, subject__contains="MR_BRAIN").exists()
    assert list(ProtocolVersion.objects.filter(trial=trial, is_current=True)) == [v2]


def test_a_released_version_is_never_edited(version):
    version.change_summary = "quietly changed"
    with pytest.raises(ValueError, match="never edited"):
        version.save()


def test_a_bad_charter_is_refused_with_field_level_errors_and_nothing_released(trial, version, trial_manager):
    charter = demo_charter(CT_CAP={"slice_thickness_mm": {"min": 5.0, "max": 1.0}})
    with pytest.raises(ValidationError) as caught:
        protocol_version_release(actor=trial_manager, trial=trial, label="2.0", charter=charter,
                                 effective_date=datetime.date(2026, 6, 1), approved_on=datetime.date(2026, 6, 1))
    assert "procedures[0].slice_thickness_mm" in caught.value.message_dict
    assert list(ProtocolVersion.objects.filter(trial=trial).values_list("label", flat=True)) == ["1.0"]


@pytest.mark.parametrize(("seen", "invalidated"), [
    ({}, False),  # the qualified scanner itself
    ({"software_version": "syngo CT VA60"}, True),
    ({"serial": "99999", "model": "SOMATOM Drive"}, True),
])
def test_a_scan_from_a_different_scanner_invalidates_the_qualification(
        version, site1, ct, coordinator_site1, qc_analyst, seen, invalidated):
    qualification = _qualify(site=site1, scanner=ct, procedure="CT_CAP", coordinator=coordinator_site1,
                             reviewer=qc_analyst)
    identity = {**ct.identity(), **seen}

    result = qualification_check_scan(site=site1, procedure="CT_CAP", identity=identity)

    qualification.refresh_from_db()
    assert (qualification.status == SiteQualification.Status.INVALIDATED) is invalidated
    assert (result == [qualification]) is invalidated
    assert AuditEvent.objects.filter(action="trials.qualification_invalidated").exists() is invalidated
    assert SiteNotice.objects.filter(site=site1).exists() is invalidated


def test_a_recorded_software_upgrade_invalidates_the_scanners_qualifications(
        version, site1, ct, coordinator_site1, qc_analyst):
    qualification = _qualify(site=site1, scanner=ct, procedure="CT_CAP", coordinator=coordinator_site1,
                             reviewer=qc_analyst)
    scanner_update(actor=coordinator_site1, scanner=ct, reason="vendor upgrade", software_version="VA60")
    qualification.refresh_from_db()
    assert qualification.status == SiteQualification.Status.INVALIDATED


class TestUploadGate:
    def test_not_qualified_and_not_trained_says_both(self, version, site1, coordinator_site1):
        with pytest.raises(NotQualified, match="not qualified for CT_CAP.*also has no training record"):
            submission_gate(user=coordinator_site1, site=site1, procedure="CT_CAP")

    def test_qualified_but_not_trained(self, version, site1, ct, coordinator_site1, qc_analyst):
        _qualify(site=site1, scanner=ct, procedure="CT_CAP", coordinator=coordinator_site1, reviewer=qc_analyst)
        with pytest.raises(NotTrained, match="no training record for protocol v1.0"):
            submission_gate(user=coordinator_site1, site=site1, procedure="CT_CAP")

    def test_trained_but_not_qualified(self, version, site1, coordinator_site1, trial_manager):
        training_record_add(actor=trial_manager, user=coordinator_site1, site=site1, protocol_version=version,
                            topic="Imaging manual v1.0", trained_on=datetime.date(2026, 2, 1), trainer="Core lab")
        with pytest.raises(NotQualified) as caught:
            submission_gate(user=coordinator_site1, site=site1, procedure="CT_CAP")
        assert "training" not in str(caught.value)

    def test_qualified_and_trained_may_submit(self, version, site1, ct, coordinator_site1, qc_analyst, trial_manager):
        _qualify(site=site1, scanner=ct, procedure="CT_CAP", coordinator=coordinator_site1, reviewer=qc_analyst)
        training_record_add(actor=trial_manager, user=coordinator_site1, site=site1, protocol_version=version,
                            topic="Imaging manual v1.0", trained_on=datetime.date(2026, 2, 1), trainer="Core lab")
        submission_gate(user=coordinator_site1, site=site1, procedure="CT_CAP")  # does not raise
        # qualification is per procedure: MR is still closed
        with pytest.raises(NotQualified):
            submission_gate(user=coordinator_site1, site=site1, procedure="MR_BRAIN")


def test_training_evidence_is_stored_with_its_sha256(version, site1, coordinator_site1, trial_manager):
    from django.core.files.uploadedfile import SimpleUploadedFile

    evidence = SimpleUploadedFile("certificate.pdf", b"%PDF-1.4 training certificate", "application/pdf")
    record = training_record_add(actor=trial_manager, user=coordinator_site1, site=site1, protocol_version=version,
                                 topic="Upload portal", trained_on=datetime.date(2026, 2, 1), trainer="Core lab",
                                 evidence=evidence)
    import hashlib

    assert record.evidence_sha256 == hashlib.sha256(b"%PDF-1.4 training certificate").hexdigest()
    assert record.evidence.read() == b"%PDF-1.4 training certificate"
    assert AuditEvent.objects.get(action="trials.training_recorded").details["evidence_sha256"] == \
        record.evidence_sha256


def test_training_cannot_be_dated_in_the_future(version, site1, coordinator_site1, trial_manager):
    with pytest.raises(ValidationError, match="future"):
        training_record_add(actor=trial_manager, user=coordinator_site1, site=site1, protocol_version=version,
                            topic="x", trained_on=datetime.date(2099, 1, 1), trainer="y")


class TestCrossSite:
    def test_coordinator_cannot_act_for_another_site(self, version, site2, coordinator_site1):
        with pytest.raises(PermissionDenied):
            scanner_register(actor=coordinator_site1, site=site2, manufacturer="X", model="Y", serial="1",
                             modality="CT")

    def test_coordinator_cannot_see_another_sites_overview(self, version, site2, coordinator_site1):
        with pytest.raises(Http404):
            site_qualification_overview(user=coordinator_site1, site=site2)


def test_overview_says_what_is_missing(version, site1, ct, coordinator_site1):
    overview = {row.code: row for row in site_qualification_overview(user=coordinator_site1, site=site1)}

    assert not overview["CT_CAP"].qualified
    assert overview["CT_CAP"].missing == ["request a qualification and submit a phantom or test-subject scan"]
    assert overview["MR_BRAIN"].missing[0] == "register a MR scanner"
