"""The unassigned inbox and expected vs. received: pages, API and the selector under them."""

import datetime
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from intake.models import ImagingStudy, Submission
from intake.selectors import Expectation, expected_procedure_list_for_user, expected_summary
from intake.services import instance_receive, submission_open
from trials.services import subject_enroll

from ..trials.factories import ProtocolVersionFactory
from .dicom import make_study

pytestmark = pytest.mark.django_db

ENROLLED = datetime.date(2026, 3, 2)
S = ImagingStudy.Status


@pytest.fixture
def version(trial):
    return ProtocolVersionFactory(trial=trial)


@pytest.fixture
def subject1(version, site1, coordinator_site1):
    return subject_enroll(actor=coordinator_site1, site=site1, code="101-0001", patient_id="MRN-1001",
                          enrollment_date=ENROLLED)


@pytest.fixture
def subject2(version, site2, coordinator_site2):
    return subject_enroll(actor=coordinator_site2, site=site2, code="102-0001", patient_id="MRN-2001",
                          enrollment_date=ENROLLED)


def _gateway(tmp_path, site, *, patient_id: str, date: datetime.date, count: int = 2) -> ImagingStudy:
    """A study pushed by the site's PACS, filed as the gateway files it."""
    submission = submission_open(actor=None, site=site, channel=Submission.Channel.DICOM, calling_ae="PACS")
    outcomes = [instance_receive(submission=submission, path=path, name=path.name)
                for path in make_study(tmp_path / uuid.uuid4().hex, patient_id=patient_id, date=date, count=count)]
    return ImagingStudy.objects.get(pk=outcomes[0].study_id)


@pytest.fixture
def unassigned1(tmp_path, site1, subject1):
    # day 70 falls between the windows of week 6 and week 12
    return _gateway(tmp_path, site1, patient_id="MRN-1001", date=ENROLLED + datetime.timedelta(days=70))


@pytest.fixture
def unassigned2(tmp_path, site2, subject2):
    return _gateway(tmp_path, site2, patient_id="MRN-UNKNOWN", date=ENROLLED, count=1)


def _hx(**extra):
    return {"HTTP_HX_REQUEST": "true", **extra}


# -- the inbox page -----------------------------------------------------------------------------------------

def test_a_coordinator_sees_their_sites_unassigned_studies_with_the_reason(client, coordinator_site1,
                                                                            unassigned1, unassigned2):
    client.force_login(coordinator_site1)
    response = client.get("/intake/inbox/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "acquisition date 2026-05-11 falls in no visit window" in page and "Patient ID of 101-0001" in page
    assert f'id="study-{unassigned1.pk}"' in page and f'id="study-{unassigned2.pk}"' not in page
    assert [e["study"].instance_count for e in response.context["entries"]] == [2]
    assert f'hx-post="/intake/inbox/{unassigned1.pk}/assign/"' in page


def test_a_trial_manager_sees_and_works_every_sites_inbox(client, trial_manager, unassigned1, unassigned2):
    client.force_login(trial_manager)
    page = client.get("/intake/inbox/").content.decode()
    assert f'id="study-{unassigned1.pk}"' in page and f'id="study-{unassigned2.pk}"' in page
    assert "no enrolled subject matches the Patient ID" in page and "/assign/" in page
    client.post(f"/intake/inbox/{unassigned1.pk}/reject/", {"reason": "not ours"})
    unassigned1.refresh_from_db()
    assert unassigned1.status == "rejected"


@pytest.mark.parametrize("who", ["outsider", "reader1", "sponsor", "auditor", "qc_analyst"])
def test_roles_without_an_inbox_get_404_everywhere(client, request, who, unassigned1):
    client.force_login(request.getfixturevalue(who))
    if who == "outsider":  # manages another trial: has an inbox, without this trial's studies
        assert f'id="study-{unassigned1.pk}"' not in client.get("/intake/inbox/").content.decode()
    else:
        assert client.get("/intake/inbox/").status_code == 404
    assert client.get(f"/intake/inbox/{unassigned1.pk}/assign/").status_code == 404
    assert client.post(f"/intake/inbox/{unassigned1.pk}/assign/", {}).status_code == 404
    assert client.post(f"/intake/inbox/{unassigned1.pk}/reject/", {"reason": "x"}).status_code == 404


def test_another_sites_coordinator_gets_404_on_the_study(client, coordinator_site2, unassigned1):
    client.force_login(coordinator_site2)
    assert client.get("/intake/inbox/").status_code == 200
    assert client.get(f"/intake/inbox/{unassigned1.pk}/assign/").status_code == 404
    assert client.post(f"/intake/inbox/{unassigned1.pk}/assign/", {}).status_code == 404
    assert client.post(f"/intake/inbox/{unassigned1.pk}/reject/", {"reason": "x"}).status_code == 404


def test_the_selects_cascade_subject_visit_procedure(client, coordinator_site1, subject1, unassigned1):
    client.force_login(coordinator_site1)
    week12 = subject1.visits.get(timepoint="W12")
    # the study's Patient ID names the subject: it comes preselected, with its visits to choose from
    form = client.get(f"/intake/inbox/{unassigned1.pk}/assign/", _hx()).content.decode()
    assert "<html" not in form and f'<option value="{subject1.pk}" selected>' in form
    assert f'<option value="{week12.pk}">Week 12' in form and '<option value="CT_CAP"' not in form
    form = client.get(f"/intake/inbox/{unassigned1.pk}/assign/",
                      {"subject": subject1.pk, "visit": week12.pk}, **_hx()).content.decode()
    # a CT study: the visit's one CT procedure is proposed
    assert '<option value="CT_CAP" selected>' in form and '<option value="MR_BRAIN">' in form


def test_assigning_through_htmx_replaces_the_row_and_files_the_study(client, coordinator_site1, subject1,
                                                                     unassigned1):
    client.force_login(coordinator_site1)
    week12 = subject1.visits.get(timepoint="W12")
    response = client.post(f"/intake/inbox/{unassigned1.pk}/assign/",
                           {"subject": subject1.pk, "visit": week12.pk, "procedure": "CT_CAP"}, **_hx())
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert "Study assigned to 101-0001, Week 12, CT_CAP." in body and f'id="study-{unassigned1.pk}"' in body
    unassigned1.refresh_from_db()
    assert (unassigned1.status, unassigned1.visit, unassigned1.procedure) == (S.RECEIVED, week12, "CT_CAP")
    assert AuditEvent.objects.filter(action="intake.study_assigned", target_id=str(unassigned1.pk)).exists()


def test_a_refused_assignment_shows_inline_and_changes_nothing(client, coordinator_site1, subject1, unassigned1):
    client.force_login(coordinator_site1)
    week12 = subject1.visits.get(timepoint="W12")
    body = client.post(f"/intake/inbox/{unassigned1.pk}/assign/",
                       {"subject": subject1.pk, "visit": week12.pk, "procedure": "PET_WB"}, **_hx()).content.decode()
    assert "Week 12 does not call for PET_WB" in body and 'role="alert"' in body
    body = client.post(f"/intake/inbox/{unassigned1.pk}/assign/", {"subject": subject1.pk}, **_hx()).content.decode()
    assert "choose the subject, the visit and the procedure" in body
    unassigned1.refresh_from_db()
    assert unassigned1.status == S.UNASSIGNED


def test_rejecting_needs_a_reason(client, coordinator_site1, unassigned1):
    client.force_login(coordinator_site1)
    body = client.post(f"/intake/inbox/{unassigned1.pk}/reject/", {"reason": " "}, **_hx()).content.decode()
    assert "say why the study is rejected" in body
    body = client.post(f"/intake/inbox/{unassigned1.pk}/reject/", {"reason": "phantom sent by mistake"},
                       **_hx()).content.decode()
    assert "Study rejected" in body
    unassigned1.refresh_from_db()
    assert unassigned1.status == S.REJECTED
    assert AuditEvent.objects.get(action="intake.study_status_changed", target_id=str(unassigned1.pk)
                                  ).reason == "phantom sent by mistake"


def test_without_htmx_the_inbox_redirects_or_shows_the_refusal(client, coordinator_site1, subject1, unassigned1):
    client.force_login(coordinator_site1)
    response = client.post(f"/intake/inbox/{unassigned1.pk}/reject/", {"reason": ""})
    assert response.status_code == 200 and "say why the study is rejected" in response.content.decode()
    response = client.post(f"/intake/inbox/{unassigned1.pk}/reject/", {"reason": "duplicate export"})
    assert response.status_code == 302 and response["Location"] == "/intake/inbox/"
    # once out of the inbox, acting again is a conflict, said inline
    body = client.post(f"/intake/inbox/{unassigned1.pk}/reject/", {"reason": "again"}, **_hx()).content.decode()
    assert "is not in the unassigned inbox" in body


def test_the_inbox_page_costs_the_same_queries_for_one_study_or_many(client, tmp_path, site1, coordinator_site1,
                                                                      unassigned1):
    client.force_login(coordinator_site1)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/intake/inbox/").status_code == 200
        return len(captured)

    one = queries()
    for days in (71, 72, 73):
        _gateway(tmp_path, site1, patient_id="MRN-1001", date=ENROLLED + datetime.timedelta(days=days), count=1)
    assert queries() == one


# -- the inbox API ------------------------------------------------------------------------------------------

def test_the_inbox_api_lists_and_assigns(client, coordinator_site1, subject1, unassigned1, unassigned2):
    client.force_login(coordinator_site1)
    rows = client.get("/api/intake/inbox/").json()
    assert [(r["id"], r["subject"], r["instance_count"], r["unassigned_reason"]) for r in rows] == [
        (unassigned1.pk, "101-0001", 2, "acquisition date 2026-05-11 falls in no visit window")]
    week12 = subject1.visits.get(timepoint="W12")
    response = client.post(f"/api/intake/studies/{unassigned1.pk}/assign/",
                           {"subject": subject1.pk, "visit": week12.pk, "procedure": "CT_CAP"},
                           content_type="application/json")
    assert response.status_code == 200
    assert {k: response.json()[k] for k in ("status", "visit", "procedure", "version")} == {
        "status": "received", "visit": "W12", "procedure": "CT_CAP", "version": 1}
    again = client.post(f"/api/intake/studies/{unassigned1.pk}/assign/",
                        {"subject": subject1.pk, "visit": week12.pk, "procedure": "CT_CAP"},
                        content_type="application/json")
    assert again.status_code == 409 and "not in the unassigned inbox" in again.json()["detail"]


def test_the_inbox_api_refuses_with_clear_4xx(client, coordinator_site1, subject1, subject2, unassigned1):
    client.force_login(coordinator_site1)
    url = f"/api/intake/studies/{unassigned1.pk}/assign/"
    week12 = subject1.visits.get(timepoint="W12")
    assert client.post(url, {"subject": subject1.pk, "visit": week12.pk, "procedure": "PET_WB"},
                       content_type="application/json").json() == {"detail": "Week 12 does not call for PET_WB"}
    other_visit = subject2.visits.get(timepoint="W12")
    response = client.post(url, {"subject": subject1.pk, "visit": other_visit.pk, "procedure": "CT_CAP"},
                           content_type="application/json")
    assert response.status_code == 400 and "visit" in response.json()
    # a subject of another site is not even visible to this coordinator
    assert client.post(url, {"subject": subject2.pk, "visit": other_visit.pk, "procedure": "CT_CAP"},
                       content_type="application/json").status_code == 404
    reject = f"/api/intake/studies/{unassigned1.pk}/reject/"
    assert client.post(reject, {"reason": ""}, content_type="application/json").status_code == 400
    response = client.post(reject, {"reason": "wrong patient"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "rejected"


def test_the_inbox_api_scopes_every_endpoint(client, coordinator_site2, trial_manager, outsider, reader1,
                                             unassigned1, unassigned2):
    endpoints = [("post", f"/api/intake/studies/{unassigned1.pk}/assign/", {"subject": 1, "visit": 1,
                                                                           "procedure": "CT_CAP"}),
                 ("post", f"/api/intake/studies/{unassigned1.pk}/reject/", {"reason": "x"})]
    client.force_login(reader1)
    assert client.get("/api/intake/inbox/").status_code == 404
    client.force_login(outsider)
    assert client.get("/api/intake/inbox/").json() == []  # their own trial's inbox, empty
    for user in (outsider, reader1):
        client.force_login(user)
        for method, url, data in endpoints:
            assert getattr(client, method)(url, data, content_type="application/json").status_code == 404, url
    client.force_login(coordinator_site2)
    assert [r["id"] for r in client.get("/api/intake/inbox/").json()] == [unassigned2.pk]
    for method, url, data in endpoints:
        assert getattr(client, method)(url, data, content_type="application/json").status_code == 404, url
    client.force_login(trial_manager)
    site_ids = {r["site_id"] for r in client.get("/api/intake/inbox/").json()}
    assert site_ids == {unassigned1.site_id, unassigned2.site_id}
    assert [r["id"] for r in client.get(f"/api/intake/inbox/?site={unassigned2.site_id}").json()] == [
        unassigned2.pk]
    # trial managers work every site's inbox
    assert client.post(endpoints[1][1], {"reason": "x"}, content_type="application/json").status_code == 200


# -- expected vs. received ----------------------------------------------------------------------------------

def _study(subject, timepoint: str, procedure: str, status: str, version: int = 1) -> ImagingStudy:
    return ImagingStudy.objects.create(
        trial=subject.trial, site=subject.site, subject=subject, visit=subject.visits.get(timepoint=timepoint),
        procedure=procedure, version=version, status=status, study_uid_hash=uuid.uuid4().hex,
        patient_id_hash=subject.patient_id_hash, modality=procedure[:2])


def test_expected_vs_received_for_a_seeded_schedule(trial, trial_manager, subject1):
    week12 = subject1.visits.get(timepoint="W12")
    today = week12.window_start + datetime.timedelta(days=1)  # baseline and week 6 are closed, week 12 is open
    _study(subject1, "BL", "CT_CAP", S.ACCEPTED)
    _study(subject1, "BL", "MR_BRAIN", S.REJECTED)
    _study(subject1, "W6", "CT_CAP", S.REJECTED)
    rescan = _study(subject1, "W6", "CT_CAP", S.QC_PENDING, version=2)
    _study(subject1, "W12", "CT_CAP", S.RECEIVED)
    ImagingStudy.objects.create(  # still in the inbox: does not count
        trial=trial, site=subject1.site, subject=subject1, visit=subject1.visits.get(timepoint="W6"),
        procedure="MR_BRAIN", status=S.UNASSIGNED, study_uid_hash="u", patient_id_hash=subject1.patient_id_hash)

    rows = expected_procedure_list_for_user(user=trial_manager, trial=trial, today=today)

    assert {(r.timepoint, r.procedure): r.status for r in rows} == {
        ("BL", "CT_CAP"): Expectation.RECEIVED, ("BL", "MR_BRAIN"): Expectation.OVERDUE,
        ("W6", "CT_CAP"): Expectation.RECEIVED, ("W6", "MR_BRAIN"): Expectation.OVERDUE,
        ("W12", "CT_CAP"): Expectation.RECEIVED, ("W12", "MR_BRAIN"): Expectation.DUE,
        ("W18", "CT_CAP"): Expectation.NOT_DUE, ("W18", "MR_BRAIN"): Expectation.NOT_DUE}
    week6_ct = next(r for r in rows if (r.timepoint, r.procedure) == ("W6", "CT_CAP"))
    assert (week6_ct.study_id, week6_ct.study_status, week6_ct.versions, week6_ct.rejected_versions) == (
        rescan.pk, "qc_pending", 1, 1)
    assert [r.timepoint for r in rows[::2]] == ["BL", "W6", "W12", "W18"] and rows[0].day == 0
    assert expected_summary(rows=rows) == {"received": 3, "due": 1, "overdue": 2, "not_due": 2}
    assert sum(r.expected for r in rows) == 6


def test_expected_is_scoped_by_role(trial, site1, subject1, subject2, coordinator_site1, sponsor, auditor,
                                    qc_analyst, reader1, outsider):
    def subjects(user, **kwargs):
        return {r.subject_code for r in expected_procedure_list_for_user(user=user, trial=trial, **kwargs)}

    assert subjects(coordinator_site1) == {"101-0001"}
    for user in (sponsor, auditor, qc_analyst):
        assert subjects(user) == {"101-0001", "102-0001"}
        assert subjects(user, site_id=site1.pk) == {"101-0001"}
    assert subjects(reader1) == set() and subjects(outsider) == set()
    # a site filter never widens a coordinator's view
    assert subjects(coordinator_site1, site_id=subject2.site_id) == set()


def test_expected_takes_the_same_few_queries_whatever_the_trial_size(trial, site1, coordinator_site1, auditor,
                                                                     subject1):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            expected_procedure_list_for_user(user=auditor, trial=trial, today=ENROLLED)
        return len(captured)

    few = queries()
    for n in range(2, 12):
        subject = subject_enroll(actor=coordinator_site1, site=site1, code=f"101-{n:04d}",
                                 patient_id=f"MRN-1{n:03d}", enrollment_date=ENROLLED)
        _study(subject, "BL", "CT_CAP", S.ACCEPTED)
    assert queries() == few <= 4


def test_the_expected_page_shows_the_grid_with_a_legend(client, trial, trial_manager, subject1, subject2):
    _study(subject1, "BL", "CT_CAP", S.ACCEPTED)
    client.force_login(trial_manager)
    response = client.get(f"/intake/expected/?trial={trial.pk}")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="expected-legend"' in page and "the visit window has closed and nothing has arrived" in page
    assert "101-0001" in page and "102-0001" in page and "<th>Site</th>" in page
    assert "✓ CT_CAP" in page and 'id="site-filter"' in page
    assert [c["code"] for c in response.context["columns"]] == ["BL", "W6", "W12", "W18"]
    # the site filter answers with the table alone
    partial = client.get(f"/intake/expected/?trial={trial.pk}&site={subject2.site_id}", **_hx()).content.decode()
    assert "<html" not in partial and "102-0001" in partial and "101-0001" not in partial


def test_a_coordinator_sees_only_their_site_on_the_expected_page(client, trial, coordinator_site2, subject1,
                                                                  subject2):
    client.force_login(coordinator_site2)
    # their only trial: no need to name it
    page = client.get("/intake/expected/").content.decode()
    assert "102-0001" in page and "101-0001" not in page and 'id="site-filter"' not in page
    assert client.get(f"/intake/expected/?trial={trial.pk}&site={subject1.site_id}").status_code == 404


@pytest.mark.parametrize("who", ["outsider", "reader1", "adjudicator"])
def test_those_who_see_no_site_get_404_on_expected(client, request, trial, subject1, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/intake/expected/?trial={trial.pk}").status_code == 404
    assert client.get(f"/api/intake/trials/{trial.pk}/expected/").status_code == 404


def test_the_expected_api_returns_rows_with_filters(client, trial, sponsor, coordinator_site1, subject1, subject2):
    _study(subject1, "BL", "CT_CAP", S.ACCEPTED)
    client.force_login(sponsor)
    body = client.get(f"/api/intake/trials/{trial.pk}/expected/").json()
    assert body["count"] == 16 and {r["subject_code"] for r in body["results"]} == {"101-0001", "102-0001"}
    first = body["results"][0]
    assert {k: first[k] for k in ("subject_code", "site_number", "timepoint", "procedure", "status", "versions")} == {
        "subject_code": "101-0001", "site_number": "101", "timepoint": "BL", "procedure": "CT_CAP",
        "status": "received", "versions": 1}
    received = client.get(f"/api/intake/trials/{trial.pk}/expected/?status=received").json()
    assert received["count"] == 1
    assert client.get(f"/api/intake/trials/{trial.pk}/expected/?status=lost").status_code == 400
    only2 = client.get(f"/api/intake/trials/{trial.pk}/expected/?site={subject2.site_id}").json()
    assert {r["subject_code"] for r in only2["results"]} == {"102-0001"}

    client.force_login(coordinator_site1)
    mine = client.get(f"/api/intake/trials/{trial.pk}/expected/").json()
    assert {r["subject_code"] for r in mine["results"]} == {"101-0001"}
    assert client.get(f"/api/intake/trials/{trial.pk}/expected/?site={subject2.site_id}").status_code == 404


def test_the_openapi_schema_lists_the_intake_endpoints(client, trial_manager):
    client.force_login(trial_manager)
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    for path in ["/api/intake/inbox/", "/api/intake/studies/{study_id}/assign/",
                 "/api/intake/studies/{study_id}/reject/", "/api/intake/trials/{trial_id}/expected/",
                 "/dicomweb/studies"]:
        assert path in paths, path
