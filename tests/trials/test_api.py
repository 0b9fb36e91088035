"""The trials API: every endpoint scoped by permissions, every refusal a clear 4xx."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEvent
from trials.models import ProtocolVersion, SiteQualification, Subject

from .factories import ProtocolVersionFactory, ScannerFactory, demo_charter

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(trial):
    return ProtocolVersionFactory(trial=trial)


@pytest.fixture
def ct(site1):
    return ScannerFactory(site=site1)


def _release(client, trial, label, charter):
    return client.post(f"/api/trials/{trial.pk}/protocol-versions/", {
        "label": label, "effective_date": "2026-06-01", "approved_on": "2026-05-20", "charter": charter,
        "change_summary": "amendment"}, content_type="application/json")


def test_manager_releases_a_version_and_gets_a_diff(client, trial, version, trial_manager):
    client.force_login(trial_manager)
    response = _release(client, trial, "2.0", demo_charter(CT_CAP={"min_slices": 80}))
    assert response.status_code == 201, response.json()
    new_id = response.json()["id"]

    diff = client.get(f"/api/trials/{trial.pk}/protocol-versions/{new_id}/diff/?against={version.pk}").json()
    assert diff == [{"kind": "changed", "path": "procedures.CT_CAP.min_slices", "before": 50, "after": 80}]
    assert client.get(f"/api/trials/{trial.pk}/protocol-versions/{new_id}/diff/").status_code == 400


def test_a_bad_charter_answers_400_with_field_paths(client, trial, version, trial_manager):
    client.force_login(trial_manager)
    charter = demo_charter(MR_BRAIN={"modalities": ["MRI"], "kvp": {"min": 100}})
    response = _release(client, trial, "2.0", charter)
    assert response.status_code == 400
    body = response.json()
    assert "procedures[1].modalities" in body and "'MRI' is not a DICOM modality" in body["procedures[1].modalities"][0]
    assert ProtocolVersion.objects.filter(trial=trial).count() == 1


def test_other_roles_cannot_release_a_version(client, trial, version, qc_analyst, outsider):
    client.force_login(qc_analyst)
    assert _release(client, trial, "2.0", demo_charter()).status_code == 403
    client.force_login(outsider)
    assert _release(client, trial, "2.0", demo_charter()).status_code == 404


def test_qualification_flow_through_the_api(client, trial, version, site1, ct, coordinator_site1, qc_analyst):
    client.force_login(coordinator_site1)
    created = client.post("/api/qualifications/", {"scanner": ct.pk, "procedure": "CT_CAP"},
                          content_type="application/json")
    assert created.status_code == 201
    qid = created.json()["id"]
    assert client.post(f"/api/qualifications/{qid}/submit/", {"study_reference": "PH-1"},
                       content_type="application/json").json()["status"] == "submitted"
    assert client.post(f"/api/qualifications/{qid}/decide/", {"approve": True},
                       content_type="application/json").status_code == 403

    client.force_login(qc_analyst)
    assert [q["id"] for q in client.get("/api/qualifications/").json()] == [qid]
    decided = client.post(f"/api/qualifications/{qid}/decide/", {"approve": False, "reason": "phantom artefact"},
                          content_type="application/json")
    assert decided.json()["status"] == "rejected"
    again = client.post(f"/api/qualifications/{qid}/decide/", {"approve": True}, content_type="application/json")
    assert again.status_code == 409 and "not submitted" in again.json()["detail"]

    client.force_login(coordinator_site1)
    overview = client.get(f"/api/trials/{trial.pk}/sites/{site1.pk}/qualification/").json()
    ct_row = next(row for row in overview if row["code"] == "CT_CAP")
    assert not ct_row["qualified"] and "phantom artefact" in ct_row["missing"][0]


def test_coordinator_cannot_reach_another_sites_scanners_or_qualifications(client, trial, version, site2,
                                                                           coordinator_site1):
    other = ScannerFactory(site=site2)
    client.force_login(coordinator_site1)
    assert client.get(f"/api/trials/{trial.pk}/sites/{site2.pk}/scanners/").status_code == 404
    assert client.post(f"/api/trials/{trial.pk}/sites/{site2.pk}/scanners/", {}).status_code == 404
    assert client.post("/api/qualifications/", {"scanner": other.pk, "procedure": "CT_CAP"},
                       content_type="application/json").status_code == 404
    assert client.post(f"/api/trials/{trial.pk}/subjects/", {
        "site": site2.pk, "code": "102-0001", "patient_id": "X", "enrollment_date": "2026-03-01"},
        content_type="application/json").status_code == 404
    assert not Subject.objects.exists() and not SiteQualification.objects.exists()


def test_enroll_and_list_subjects_never_echo_the_patient_id(client, trial, version, site1, coordinator_site1):
    client.force_login(coordinator_site1)
    response = client.post(f"/api/trials/{trial.pk}/subjects/", {
        "site": site1.pk, "code": "101-0001", "patient_id": "MRN-7788", "enrollment_date": "2026-03-01"},
        content_type="application/json")
    assert response.status_code == 201 and "MRN-7788" not in response.content.decode()
    duplicate = client.post(f"/api/trials/{trial.pk}/subjects/", {
        "site": site1.pk, "code": "101-0002", "patient_id": "MRN-7788", "enrollment_date": "2026-03-01"},
        content_type="application/json")
    assert duplicate.status_code == 400 and "already enrolled as 101-0001" in duplicate.json()["detail"]
    listing = client.get(f"/api/trials/{trial.pk}/subjects/").json()
    assert [s["code"] for s in listing] == ["101-0001"]


def test_training_upload_with_evidence(client, trial, version, site1, coordinator_site1, trial_manager):
    client.force_login(trial_manager)
    response = client.post(f"/api/trials/{trial.pk}/sites/{site1.pk}/training/", {
        "user": "coord1", "topic": "Imaging manual", "trained_on": "2026-02-01", "trainer": "Core lab",
        "evidence": SimpleUploadedFile("cert.pdf", b"%PDF-1.4 cert", "application/pdf")})
    assert response.status_code == 201, response.content
    assert len(response.json()["evidence_sha256"]) == 64


def test_roles_are_granted_and_revoked_with_a_reason(client, trial, site1, trial_manager, django_user_model):
    newcomer = django_user_model.objects.create_user("newcomer")
    client.force_login(trial_manager)
    granted = client.post(f"/api/trials/{trial.pk}/memberships/", {
        "user": "newcomer", "role": "site_coordinator", "site": site1.pk}, content_type="application/json")
    assert granted.status_code == 201
    mid = granted.json()["id"]
    assert client.post(f"/api/trials/{trial.pk}/memberships/{mid}/revoke/", {}).status_code == 400
    assert client.post(f"/api/trials/{trial.pk}/memberships/{mid}/revoke/", {"reason": "left"},
                       content_type="application/json").status_code == 204
    assert not newcomer.memberships.exists()
    assert AuditEvent.objects.filter(action="trials.role_revoked", reason="left").exists()


def test_openapi_schema_lists_the_trials_endpoints(client, trial_manager):
    client.force_login(trial_manager)
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    for path in ["/api/trials/{trial_id}/protocol-versions/", "/api/qualifications/{qualification_id}/decide/",
                 "/api/trials/{trial_id}/subjects/", "/api/trials/{trial_id}/sites/{site_id}/training/"]:
        assert path in paths, path


def test_a_trial_correction_needs_a_reason_and_is_audited(client, trial, trial_manager, sponsor):
    client.force_login(trial_manager)
    assert client.patch(f"/api/trials/{trial.pk}/", {"title": "New"}, content_type="application/json"
                        ).status_code == 400
    response = client.patch(f"/api/trials/{trial.pk}/", {"title": "New", "reason": "sponsor renamed it"},
                            content_type="application/json")
    assert response.status_code == 200 and response.json()["title"] == "New"
    assert AuditEvent.objects.get(action="trials.trial_updated").reason == "sponsor renamed it"
    client.force_login(sponsor)
    assert client.patch(f"/api/trials/{trial.pk}/", {"title": "X", "reason": "y"},
                        content_type="application/json").status_code == 403


def test_a_software_upgrade_recorded_through_the_api_invalidates_the_qualification(
        client, trial, version, site1, ct, coordinator_site1, qc_analyst, coordinator_site2):
    from trials.services import qualification_decide, qualification_request, qualification_submit

    qualification = qualification_request(actor=coordinator_site1, site=site1, scanner=ct, procedure="CT_CAP")
    qualification_submit(actor=coordinator_site1, qualification=qualification, study_reference="PH")
    qualification_decide(actor=qc_analyst, qualification=qualification, approve=True)
    client.force_login(coordinator_site2)
    assert client.patch(f"/api/scanners/{ct.pk}/", {"software_version": "VA60", "reason": "x"},
                        content_type="application/json").status_code == 404
    client.force_login(coordinator_site1)
    response = client.patch(f"/api/scanners/{ct.pk}/", {"software_version": "VA60", "reason": "vendor upgrade"},
                            content_type="application/json")
    assert response.status_code == 200 and response.json()["software_version"] == "VA60"
    qualification.refresh_from_db()
    assert qualification.status == SiteQualification.Status.INVALIDATED


def test_a_site_correction_needs_the_trial_manager(client, trial, site1, trial_manager, coordinator_site1):
    client.force_login(coordinator_site1)
    assert client.patch(f"/api/trials/{trial.pk}/sites/{site1.pk}/", {"status": "closed", "reason": "x"},
                        content_type="application/json").status_code == 403
    client.force_login(trial_manager)
    response = client.patch(f"/api/trials/{trial.pk}/sites/{site1.pk}/", {"status": "closed",
                                                                          "reason": "site closed"},
                            content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "closed"
