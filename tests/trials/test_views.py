import json

import pytest

from trials.models import ProtocolVersion, SiteQualification

from .factories import ProtocolVersionFactory, ScannerFactory, demo_charter

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(trial):
    return ProtocolVersionFactory(trial=trial)


def _pages(trial, site, version):
    return [f"/trials/{trial.pk}/", f"/trials/{trial.pk}/versions/", f"/trials/{trial.pk}/versions/{version.pk}/",
            f"/trials/{trial.pk}/versions/new/", f"/trials/{trial.pk}/team/", f"/trials/{trial.pk}/sites/{site.pk}/"]


def test_an_outsider_gets_404_on_every_trial_page(client, trial, site1, version, outsider):
    client.force_login(outsider)
    for url in _pages(trial, site1, version):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/trials/{trial.pk}/sites/{site1.pk}/scanners/", {}).status_code == 404


def test_the_manager_sees_every_setup_page(client, trial, site1, version, trial_manager):
    client.force_login(trial_manager)
    for url in _pages(trial, site1, version):
        assert client.get(url).status_code == 200, url


def test_a_coordinators_site_page_says_what_is_missing(client, trial, site1, version, coordinator_site1):
    client.force_login(coordinator_site1)
    assert client.get("/my-site/")["Location"] == f"/trials/{trial.pk}/sites/{site1.pk}/"
    page = client.get(f"/trials/{trial.pk}/sites/{site1.pk}/").content.decode()
    assert "register a CT scanner" in page and "register a MR scanner" in page
    assert "training on the current version missing" in page


def test_registering_a_scanner_through_htmx_returns_the_page_partial(client, trial, site1, version,
                                                                    coordinator_site1):
    client.force_login(coordinator_site1)
    response = client.post(f"/trials/{trial.pk}/sites/{site1.pk}/scanners/", {
        "modality": "CT", "manufacturer": "SIEMENS", "model": "SOMATOM Force", "serial": "75123"},
        HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="site-page"' in body
    assert "SOMATOM Force" in body and "register a CT scanner" not in body


def test_a_bad_form_shows_errors_and_writes_nothing(client, trial, site1, version, coordinator_site1):
    client.force_login(coordinator_site1)
    response = client.post(f"/trials/{trial.pk}/sites/{site1.pk}/scanners/", {"modality": "CT"})
    assert "This field is required" in response.content.decode()
    assert not site1.scanners.exists()


def test_releasing_a_bad_charter_in_the_browser_shows_field_errors(client, trial, version, trial_manager):
    client.force_login(trial_manager)
    charter = demo_charter(CT_CAP={"slice_thickness_mm": {"min": 5.0, "max": 1.0}})
    response = client.post(f"/trials/{trial.pk}/versions/new/", {
        "label": "2.0", "effective_date": "2026-06-01", "approved_on": "2026-05-20",
        "charter": json.dumps(charter)})
    assert "procedures[0].slice_thickness_mm: min (5.0) is greater than max (1.0)" in response.content.decode()
    broken = client.post(f"/trials/{trial.pk}/versions/new/", {
        "label": "2.0", "effective_date": "2026-06-01", "approved_on": "2026-05-20", "charter": "{oops"})
    assert "not valid JSON" in broken.content.decode()
    assert ProtocolVersion.objects.filter(trial=trial).count() == 1


def test_a_released_version_shows_its_diff(client, trial, version, trial_manager):
    client.force_login(trial_manager)
    response = client.post(f"/trials/{trial.pk}/versions/new/", {
        "label": "2.0", "effective_date": "2026-06-01", "approved_on": "2026-05-20",
        "charter": json.dumps(demo_charter(MR_BRAIN={"min_slices": 160, "requalify": True}))}, follow=True)
    page = response.content.decode()
    assert "Changes since v1.0" in page and "procedures.MR_BRAIN.min_slices" in page


def test_reviewing_a_qualification_in_the_browser(client, trial, site1, version, coordinator_site1, qc_analyst):
    from trials.services import qualification_request, qualification_submit

    qualification = qualification_request(actor=coordinator_site1, site=site1, scanner=ScannerFactory(site=site1),
                                          procedure="CT_CAP")
    qualification_submit(actor=coordinator_site1, qualification=qualification, study_reference="PH-9")
    client.force_login(qc_analyst)
    assert "PH-9" in client.get("/qualifications/").content.decode()
    refused = client.post(f"/qualifications/{qualification.pk}/", {"decision": "reject", "reason": ""})
    assert "say why" in refused.content.decode()
    client.post(f"/qualifications/{qualification.pk}/", {"decision": "approve", "reason": "ok"})
    qualification.refresh_from_db()
    assert qualification.status == SiteQualification.Status.APPROVED

    client.force_login(coordinator_site1)
    assert client.post(f"/qualifications/{qualification.pk}/", {"decision": "approve"}).status_code == 404


def test_granting_a_role_on_the_team_page(client, trial, trial_manager, django_user_model):
    django_user_model.objects.create_user("newreader")
    client.force_login(trial_manager)
    client.post(f"/trials/{trial.pk}/team/", {"username": "newreader", "role": "reader"})
    unknown = client.post(f"/trials/{trial.pk}/team/", {"username": "nobody", "role": "reader"})
    assert "no active user" in unknown.content.decode()
    assert "newreader" in client.get(f"/trials/{trial.pk}/team/").content.decode()


def test_editing_the_trial_record_in_the_browser(client, trial, trial_manager):
    client.force_login(trial_manager)
    form = {"form": "trial", "title": "Renamed", "sponsor": trial.sponsor, "phase": trial.phase,
            "status": "closed", "sponsor_blinded": "on", "reason": "study closed"}
    client.post(f"/trials/{trial.pk}/", form)
    trial.refresh_from_db()
    assert (trial.title, trial.status) == ("Renamed", "closed")
    assert trial.history.first().history_change_reason == "study closed"


def test_an_amendment_draft_does_not_carry_the_requalify_flag_forward(client, trial, trial_manager):
    ProtocolVersionFactory(trial=trial, charter=demo_charter(MR_BRAIN={"requalify": True}))
    client.force_login(trial_manager)
    draft = json.loads(client.get(f"/trials/{trial.pk}/versions/new/").context["form"].initial["charter"])
    assert not any(p["requalify"] for p in draft["procedures"])
