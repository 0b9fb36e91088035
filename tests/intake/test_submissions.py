"""Received: submissions of every door, with their per-file results; the selectors, the pages and the API.

Submissions are made as the doors make them (submission_open, instance_receive with real DICOM files,
file_refuse), so the reasons shown are the ones the services write.
"""

import datetime
import uuid

import pytest
from django.http import Http404

from intake.models import ImagingStudy, Submission
from intake.selectors import submission_get_for_user_any_channel, submission_list_for_user
from intake.services import file_refuse, instance_receive, submission_close, submission_open
from trials.services import subject_enroll

from ..trials.factories import ProtocolVersionFactory
from . import test_receive
from .dicom import make_study

pytestmark = pytest.mark.django_db

ENROLLED = datetime.date(2026, 3, 2)
OTHER_SITE = "the Patient ID belongs to a subject of another site (102-0001 is not enrolled at this site)"
NOT_DICOM = "not a DICOM file (no DICM preamble or File Meta Information)"

ready_site = test_receive.ready_site  # site 1 qualified for CT_CAP, coordinator trained, 101-0001 enrolled


@pytest.fixture(autouse=True)
def quarantine(settings, tmp_path):
    """This test's own quarantine store: others run tests on the same checkout."""
    settings.STORAGES = {**settings.STORAGES, "quarantine": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "quarantine")}}}


@pytest.fixture
def subject2(trial, site2, coordinator_site2):
    ProtocolVersionFactory(trial=trial)
    return subject_enroll(actor=coordinator_site2, site=site2, code="102-0001", patient_id="MRN-2001",
                          enrollment_date=ENROLLED)


def _files(tmp_path, *, patient_id: str, count: int = 1):
    return make_study(tmp_path / uuid.uuid4().hex, patient_id=patient_id, date=ENROLLED, count=count)


@pytest.fixture
def pacs1(tmp_path, site1, subject2):
    """An association from site 1's PACS: two unmatched instances (to the inbox), one of another site's
    patient, one file that is not DICOM and one sent twice."""
    submission = submission_open(actor=None, site=site1, channel=Submission.Channel.DICOM, calling_ae="RUH_PACS",
                                 remote_address="10.1.2.3")
    paths = _files(tmp_path, patient_id="MRN-UNKNOWN", count=2)
    for path in paths:
        instance_receive(submission=submission, path=path, name=path.name)
    instance_receive(submission=submission, path=paths[0], name=paths[0].name)
    stray = _files(tmp_path, patient_id="MRN-2001")[0]
    instance_receive(submission=submission, path=stray, name="stray.dcm")
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    instance_receive(submission=submission, path=junk, name="notes.txt")
    return submission_close(submission=submission)


@pytest.fixture
def stow1(tmp_path, site1, coordinator_site1, subject2):
    """A STOW-RS request of site 1's coordinator: one instance, nothing refused, still open."""
    submission = submission_open(actor=coordinator_site1, site=site1, channel=Submission.Channel.STOWRS)
    path = _files(tmp_path, patient_id="MRN-NEW")[0]
    instance_receive(submission=submission, path=path, name=path.name)
    return submission


@pytest.fixture
def pacs2(tmp_path, site2, subject2):
    """An association from site 2's PACS with one file refused before filing."""
    submission = submission_open(actor=None, site=site2, channel=Submission.Channel.DICOM, calling_ae="CLINIC_CT")
    path = _files(tmp_path, patient_id="MRN-2001")[0]
    instance_receive(submission=submission, path=path, name=path.name)
    file_refuse(submission=submission, name="huge.dcm", reason="the file is 3.0 GiB; files over 2.0 GiB are refused")
    return submission_close(submission=submission)


def _hx():
    return {"HTTP_HX_REQUEST": "true"}


def _ids(submissions) -> set[int]:
    return {s.pk for s in submissions}


# -- selectors ----------------------------------------------------------------------------------------------

def test_the_services_wrote_what_the_page_will_show(pacs1):
    assert (pacs1.accepted, pacs1.duplicates, pacs1.rejected) == (2, 1, 2)
    reasons = {row["file"]: row["reason"] for row in pacs1.results if row["outcome"] == "rejected"}
    assert reasons == {"stray.dcm": OTHER_SITE, "notes.txt": NOT_DICOM}


def test_coordinators_see_their_site_managers_and_all_site_roles_every_site(
        trial_manager, coordinator_site1, coordinator_site2, qc_analyst, auditor, sponsor, reader1, outsider,
        pacs1, stow1, pacs2):
    everything = {pacs1.pk, stow1.pk, pacs2.pk}
    assert _ids(submission_list_for_user(user=coordinator_site1)) == {pacs1.pk, stow1.pk}
    assert _ids(submission_list_for_user(user=coordinator_site2)) == {pacs2.pk}
    for user in (trial_manager, qc_analyst, auditor, sponsor):
        assert _ids(submission_list_for_user(user=user)) == everything, user
    assert _ids(submission_list_for_user(user=reader1)) == _ids(submission_list_for_user(user=outsider)) == set()
    # newest first
    assert [s.pk for s in submission_list_for_user(user=trial_manager)] == [pacs2.pk, stow1.pk, pacs1.pk]


def test_one_submission_is_404_for_missing_and_forbidden_alike(coordinator_site1, outsider, pacs1, pacs2):
    assert submission_get_for_user_any_channel(user=coordinator_site1, submission_id=pacs1.pk) == pacs1
    for user, submission_id in ((coordinator_site1, pacs2.pk), (outsider, pacs1.pk), (coordinator_site1, 10**9)):
        with pytest.raises(Http404):
            submission_get_for_user_any_channel(user=user, submission_id=submission_id)


def test_the_filters_narrow_the_list(trial_manager, site1, site2, pacs1, stow1, pacs2):
    def seen(**filters):
        return _ids(submission_list_for_user(user=trial_manager, **filters))

    assert seen(site_id=site1.pk) == {pacs1.pk, stow1.pk}
    assert seen(channel=Submission.Channel.STOWRS) == {stow1.pk}
    assert seen(channel=Submission.Channel.DICOM, site_id=site2.pk) == {pacs2.pk}
    assert seen(refused_only=True) == {pacs1.pk, pacs2.pk}
    Submission.objects.filter(pk=pacs1.pk).update(started_at=datetime.datetime(2026, 1, 10, 23, 30,
                                                                                tzinfo=datetime.UTC))
    assert seen(started_to=datetime.date(2026, 1, 10)) == {pacs1.pk}
    assert seen(started_from=datetime.date(2026, 1, 11)) == {stow1.pk, pacs2.pk}
    assert seen(started_from=datetime.date(2026, 1, 10), started_to=datetime.date(2026, 1, 10)) == {pacs1.pk}


# -- the list page ------------------------------------------------------------------------------------------

def test_a_coordinator_lists_their_sites_submissions_of_every_channel(client, coordinator_site1, pacs1, stow1,
                                                                      pacs2):
    client.force_login(coordinator_site1)
    response = client.get("/intake/submissions/")
    page = response.content.decode()
    assert response.status_code == 200
    assert f'id="submission-{pacs1.pk}"' in page and f'id="submission-{stow1.pk}"' in page
    assert f'id="submission-{pacs2.pk}"' not in page and "CLINIC_CT" not in page
    assert "DICOM C-STORE" in page and "STOW-RS" in page and "<code>RUH_PACS</code>" in page
    assert "coord1" in page  # the STOW-RS sender
    assert '<strong class="error">2</strong>' in page and f'<tr id="submission-{pacs1.pk}" class="refused">' in page
    assert f'<tr id="submission-{stow1.pk}">' in page  # nothing refused: not highlighted
    assert b'href="/intake/submissions/"' in client.get("/").content  # in the navigation


def test_the_filters_rerender_the_table_with_htmx(client, coordinator_site1, pacs1, stow1):
    client.force_login(coordinator_site1)
    response = client.get("/intake/submissions/?refused=on", **_hx())
    page = response.content.decode()
    assert page.strip().startswith('<div id="submissions-table">') and "<h1>" not in page
    assert f'id="submission-{pacs1.pk}"' in page and f'id="submission-{stow1.pk}"' not in page
    page = client.get("/intake/submissions/?channel=stowrs").content.decode()
    assert f'id="submission-{pacs1.pk}"' not in page and f'id="submission-{stow1.pk}"' in page
    assert 'hx-get="/intake/submissions/"' in page and 'hx-target="#submissions-table"' in page


def test_a_site_outside_the_users_scope_is_refused_by_the_filter(client, coordinator_site1, site2, pacs1, pacs2):
    client.force_login(coordinator_site1)
    response = client.get(f"/intake/submissions/?site={site2.pk}")
    page = response.content.decode()
    assert response.status_code == 200 and "CLINIC_CT" not in page
    assert f'id="submission-{pacs1.pk}"' in page  # the invalid filter is dropped, the scope stays
    assert response.context["form"].errors["site"]


def test_a_manager_filters_by_site_and_sees_fifty_a_page(client, trial_manager, site1, site2, pacs1, pacs2):
    client.force_login(trial_manager)
    page = client.get(f"/intake/submissions/?site={site2.pk}").content.decode()
    assert f'id="submission-{pacs2.pk}"' in page and f'id="submission-{pacs1.pk}"' not in page
    Submission.objects.bulk_create([Submission(trial=site1.trial, site=site1, channel=Submission.Channel.DICOM,
                                               calling_ae="RUH_PACS") for _ in range(55)])
    first = client.get("/intake/submissions/")
    assert len(first.context["rows"]) == 50 and "submissions 1–50 of 57" in first.content.decode()
    assert len(client.get("/intake/submissions/?page=2").context["rows"]) == 7


def test_the_list_costs_the_same_queries_for_three_submissions_or_fifty(client, trial_manager, site1,
                                                                       coordinator_site1, pacs1, stow1, pacs2):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(trial_manager)
    with CaptureQueriesContext(connection) as few:
        client.get("/intake/submissions/")
    for _ in range(47):
        submission_open(actor=coordinator_site1, site=site1, channel=Submission.Channel.STOWRS)
    with CaptureQueriesContext(connection) as many:
        response = client.get("/intake/submissions/")
    assert len(response.context["rows"]) == 50 and len(many) == len(few)


def test_readers_get_404_and_no_link(client, reader1, pacs1):
    client.force_login(reader1)
    assert client.get("/intake/submissions/").status_code == 404
    assert client.get(f"/intake/submissions/{pacs1.pk}/").status_code == 404
    assert b'href="/intake/submissions/"' not in client.get("/").content


# -- the detail page ----------------------------------------------------------------------------------------

def test_the_detail_shows_refusals_first_with_their_reasons_then_duplicates_then_accepted(
        client, coordinator_site1, pacs1):
    client.force_login(coordinator_site1)
    response = client.get(f"/intake/submissions/{pacs1.pk}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert f"<td>stray.dcm</td><td>{OTHER_SITE}</td>" in page and f"<td>notes.txt</td><td>{NOT_DICOM}</td>" in page
    assert page.index('id="refused-files"') < page.index('id="duplicate-files"') < page.index('id="accepted-files"')
    assert "already received (same instance, same bytes)" in page and "2 accepted files" in page
    assert "<code>RUH_PACS</code>" in page and "10.1.2.3" not in page


def test_the_detail_lists_the_studies_and_links_unassigned_ones_to_the_inbox(client, coordinator_site1, pacs1):
    study = ImagingStudy.objects.filter(instances__submission=pacs1).distinct().get()
    client.force_login(coordinator_site1)
    response = client.get(f"/intake/submissions/{pacs1.pk}/")
    page = response.content.decode()
    assert f'id="study-{study.pk}"' in page and "no enrolled subject matches the Patient ID" in page
    assert f'href="/intake/inbox/#study-{study.pk}"' in page
    assert [(s.pk, s.received) for s in response.context["studies"]] == [(study.pk, 2)]


def test_qc_sees_the_detail_but_no_inbox_link(client, qc_analyst, pacs1):
    client.force_login(qc_analyst)
    page = client.get(f"/intake/submissions/{pacs1.pk}/").content.decode()
    assert OTHER_SITE in page and "/intake/inbox/" not in page


def test_another_sites_coordinator_and_an_outsider_get_404(client, coordinator_site2, outsider, pacs1, stow1):
    for user in (coordinator_site2, outsider):
        client.force_login(user)
        assert client.get(f"/intake/submissions/{pacs1.pk}/").status_code == 404, user
        assert client.get(f"/intake/submissions/{stow1.pk}/").status_code == 404, user
    # the outsider manages another trial: their list does not show this one's
    assert f'id="submission-{pacs1.pk}"' not in client.get("/intake/submissions/").content.decode()


def test_an_open_web_upload_links_to_the_upload_page(client, site1, coordinator_site1, trial_manager, qc_analyst,
                                                     ready_site):
    submission = submission_open(actor=coordinator_site1, site=site1, channel=Submission.Channel.WEB,
                                 subject=ready_site["subject"], visit=ready_site["baseline"], procedure="CT_CAP")
    link = f'href="/upload/{submission.pk}/"'
    for user in (coordinator_site1, trial_manager):
        client.force_login(user)
        page = client.get(f"/intake/submissions/{submission.pk}/").content.decode()
        assert link in page and "101-0001" in page, user
    client.force_login(qc_analyst)  # the upload page would answer 404
    assert link not in client.get(f"/intake/submissions/{submission.pk}/").content.decode()
    submission_close(submission=submission)
    client.force_login(coordinator_site1)
    assert link not in client.get(f"/intake/submissions/{submission.pk}/").content.decode()


# -- the API ------------------------------------------------------------------------------------------------

def test_api_lists_the_users_scope_newest_first_with_filters(client, coordinator_site1, trial_manager, site2,
                                                             pacs1, stow1, pacs2):
    client.force_login(coordinator_site1)
    body = client.get("/api/intake/submissions/").json()
    assert body["count"] == 2 and [s["id"] for s in body["results"]] == [stow1.pk, pacs1.pk]
    first = body["results"][1]
    assert first == {"id": pacs1.pk, "trial": "CL-TEST-001", "trial_id": pacs1.trial_id, "site": "101",
                     "site_id": pacs1.site_id, "channel": "dicom", "calling_ae": "RUH_PACS", "submitted_by": None,
                     "started_at": first["started_at"], "finished_at": first["finished_at"], "accepted": 2,
                     "duplicates": 1, "rejected": 2}
    assert first["finished_at"] is not None and body["results"][0]["finished_at"] is None
    assert body["results"][0]["submitted_by"] == "coord1"
    assert [s["id"] for s in client.get("/api/intake/submissions/?refused=true").json()["results"]] == [pacs1.pk]
    assert client.get(f"/api/intake/submissions/?site={site2.pk}").json()["count"] == 0

    client.force_login(trial_manager)
    assert client.get("/api/intake/submissions/").json()["count"] == 3
    assert [s["id"] for s in client.get("/api/intake/submissions/?channel=dicom&refused=true&"
                                        f"site={site2.pk}").json()["results"]] == [pacs2.pk]


def test_api_refuses_bad_filters(client, trial_manager):
    client.force_login(trial_manager)
    response = client.get("/api/intake/submissions/?channel=fax&started_from=yesterday")
    assert response.status_code == 400 and set(response.json()) >= {"channel", "started_from"}


def test_api_detail_gives_results_refused_first_and_the_studies(client, coordinator_site1, pacs1):
    client.force_login(coordinator_site1)
    body = client.get(f"/api/intake/submissions/{pacs1.pk}/").json()
    assert [r["outcome"] for r in body["results"]] == ["rejected", "rejected", "duplicate", "accepted", "accepted"]
    assert {r["file"]: r["reason"] for r in body["results"][:2]} == {"stray.dcm": OTHER_SITE, "notes.txt": NOT_DICOM}
    assert [(s["status"], s["received"], s["unassigned_reason"]) for s in body["studies"]] == [
        ("unassigned", 2, "no enrolled subject matches the Patient ID")]


def test_api_outsider_reader_and_other_site_get_404(client, coordinator_site2, outsider, reader1, pacs1):
    for user in (coordinator_site2, outsider, reader1):
        client.force_login(user)
        assert client.get(f"/api/intake/submissions/{pacs1.pk}/").status_code == 404, user
    client.force_login(reader1)
    assert client.get("/api/intake/submissions/").status_code == 404
    client.force_login(outsider)
    assert client.get("/api/intake/submissions/").json()["count"] == 0


def test_the_openapi_schema_describes_the_submission_endpoints(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = (tmp_path / "schema.yaml").read_text()
    assert "/api/intake/submissions/{submission_id}/:" in schema and "PaginatedSubmissionOutputList" in schema


def test_file_names_are_shown_to_the_site_and_its_managers_only(client, coordinator_site1, trial_manager, sponsor,
                                                               qc_analyst, pacs1):
    """A web upload's file names may carry a patient's name; sponsors and QC see positions instead."""
    for user in (coordinator_site1, trial_manager):
        client.force_login(user)
        assert "stray.dcm" in client.get(f"/intake/submissions/{pacs1.pk}/").content.decode()
    for user in (sponsor, qc_analyst):
        client.force_login(user)
        page = client.get(f"/intake/submissions/{pacs1.pk}/").content.decode()
        api = client.get(f"/api/intake/submissions/{pacs1.pk}/").json()
        assert "stray.dcm" not in page and "notes.txt" not in page and OTHER_SITE in page
        assert "stray.dcm" not in str(api) and {row["file"] for row in api["results"]} == {
            f"file {n}" for n in range(1, len(pacs1.results) + 1)}
