"""The agreement page, its htmx partial, the API and the SDTM download: numbers, permissions, bad input."""

import hashlib
import io
import zipfile

import pytest

from audit.models import AuditEvent
from reads.metrics import agreement_report
from reads.sdtm import FILES

from .test_metrics import seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(reading, enroll, accept):
    return seed(reading, enroll, accept)


def page_url(trial):
    return f"/reads/oversight/trials/{trial.pk}/agreement"


def api_url(trial):
    return f"/api/reads/oversight/trials/{trial.pk}/agreement/"


def test_the_trial_manager_sees_kappa_rates_and_the_monthly_drift(client, seeded, reading):
    client.force_login(reading.manager)
    response = client.get(page_url(reading.trial))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Reader agreement · CL-TEST-001" in body
    assert "0.375" in body  # Cohen's kappa, whole trial
    assert "60.0%" in body  # percent agreement
    assert "0.6667 (2/3)" in body  # adjudication rate
    assert "0.4 (2/5)" in body  # disagreement index
    assert "2026-04" in body and "2026-05" in body  # drift rows
    assert "Download SDTM" in body


def test_a_month_is_shown_through_htmx_as_the_tables_alone(client, seeded, reading):
    client.force_login(reading.manager)
    response = client.get(page_url(reading.trial) + "?period=2026-04", HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="agreement-tables">')
    assert "Month 2026-04" in body and "0.6" in body and "75.0%" in body
    assert "<html" not in body


def test_an_unknown_month_is_a_clear_error(client, seeded, reading):
    client.force_login(reading.manager)
    response = client.get(page_url(reading.trial) + "?period=1999-01")
    assert response.status_code == 400
    assert "No reads were signed in '1999-01'" in response.content.decode()
    assert "2026-04, 2026-05" in response.content.decode()


def test_the_auditor_sees_the_page(client, seeded, reading, auditor):
    client.force_login(auditor)
    assert client.get(page_url(reading.trial)).status_code == 200


@pytest.mark.parametrize("who", ["reader1", "adjudicator", "coordinator_site1", "qc_analyst", "sponsor", "outsider"])
def test_everyone_else_gets_404_on_page_api_and_download(client, reading, who, request):
    client.force_login(request.getfixturevalue(who))
    assert client.get(page_url(reading.trial)).status_code == 404
    assert client.get(api_url(reading.trial)).status_code == 404
    assert client.post(f"/reads/oversight/trials/{reading.trial.pk}/sdtm.zip").status_code == 404
    assert not AuditEvent.objects.filter(action="reads.sdtm_exported").exists()


def test_a_missing_trial_is_404_and_anonymous_users_sign_in_first(client, reading):
    client.force_login(reading.manager)
    assert client.get("/reads/oversight/trials/999999/agreement").status_code == 404
    client.logout()
    response = client.get(page_url(reading.trial))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get(api_url(reading.trial)).status_code in (401, 403)


def test_the_api_returns_the_same_json_as_the_report(client, seeded, reading):
    client.force_login(reading.manager)
    response = client.get(api_url(reading.trial))
    assert response.status_code == 200
    data = response.json()
    assert data == agreement_report(trial=reading.trial)
    assert data["overall"]["pairs"][0]["cohen_kappa"]["value"] == 0.375


def test_the_oversight_index_lists_the_trials_the_user_oversees(client, reading, reader1):
    client.force_login(reading.manager)
    body = client.get("/reads/oversight/").content.decode()
    assert page_url(reading.trial) in body
    client.force_login(reader1)
    assert client.get("/reads/oversight/").status_code == 404


def test_the_download_is_a_zip_of_the_six_files_and_an_audit_event(client, seeded, reading):
    client.force_login(reading.manager)
    response = client.post(f"/reads/oversight/trials/{reading.trial.pk}/sdtm.zip")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert 'filename="CL-TEST-001-sdtm.zip"' in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == sorted(FILES)
    event = AuditEvent.objects.get(action="reads.sdtm_exported")
    assert event.actor == reading.manager and event.details["destination"] == "download"
    assert {name: f["sha256"] for name, f in event.details["files"].items()} == {
        name: hashlib.sha256(archive.read(name)).hexdigest() for name in FILES}


def test_the_download_is_post_only(client, reading):
    client.force_login(reading.manager)
    assert client.get(f"/reads/oversight/trials/{reading.trial.pk}/sdtm.zip").status_code == 405
    assert not AuditEvent.objects.filter(action="reads.sdtm_exported").exists()
