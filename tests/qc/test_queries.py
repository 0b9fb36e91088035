"""Site queries: raising, the thread, answers with a rescan, close/reopen, aging and escalation, attachments,
and who sees what (a coordinator of another site gets 404)."""

import datetime
import hashlib

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from qc.exceptions import QcError, QueryStateError
from qc.models import Query, QueryAttachment, QueryMessage
from qc.services import (
    qc_run,
    queries_mark_overdue,
    queries_raise_missing,
    query_answer,
    query_attachment_add,
    query_close,
    query_message_add,
    query_raise,
    query_reopen,
)
from trials.models import SiteNotice

pytestmark = pytest.mark.django_db
TODAY = timezone.localdate()


@pytest.fixture
def media(tmp_path, settings):
    """The default store (attachments) in this test's own folder."""
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "media")}}}
    return tmp_path / "media"


@pytest.fixture
def pending(make_study):
    def make(**options):
        study = make_study(**{"count": 5, **options})
        qc_run(study_id=study.pk, trigger="deidentified")
        study.refresh_from_db()
        return study
    return make


@pytest.fixture
def query(pending, qc_analyst, coordinator_site1, trial_manager):
    return query_raise(analyst=qc_analyst, study=pending(folder="v1"), category=Query.Category.MISSING_SERIES,
                       text="The T1 post-contrast series is missing.", due_date=TODAY + datetime.timedelta(days=3))


def test_raising_a_query_notifies_the_site_and_is_audited(pending, qc_analyst, coordinator_site1,
                                                          django_capture_on_commit_callbacks):
    study = pending()
    with django_capture_on_commit_callbacks(execute=True):
        query = query_raise(analyst=qc_analyst, study=study, category="image_quality", text="Motion in series 2.")

    assert (query.status, query.site_id, query.subject_id, query.visit_id) == ("open", study.site_id,
                                                                            study.subject_id, study.visit_id)
    assert query.due_date == TODAY + datetime.timedelta(days=7)
    assert [(m.side, m.text) for m in query.messages.all()] == [("qc", "Motion in series 2.")]
    assert SiteNotice.objects.filter(site=study.site, subject__contains="Image quality").exists()
    assert [m.to for m in mail.outbox] == [[coordinator_site1.email]]
    event = AuditEvent.objects.get(action="qc.query_raised")
    assert event.actor == qc_analyst and event.details["study"] == study.pk and event.site_id == study.site_id


def test_only_qc_raises_and_a_query_needs_text_and_a_future_due_date(pending, qc_analyst, coordinator_site1):
    study = pending()
    with pytest.raises(PermissionDenied):
        query_raise(analyst=coordinator_site1, study=study, category="other", text="x")
    with pytest.raises(QcError):
        query_raise(analyst=qc_analyst, study=study, category="other", text="  ")
    with pytest.raises(QcError):
        query_raise(analyst=qc_analyst, study=study, category="other", text="x",
                    due_date=TODAY - datetime.timedelta(days=1))
    assert not Query.objects.exists()


def test_a_coordinator_of_another_site_cannot_see_or_answer_the_query(client, query, coordinator_site1,
                                                                      coordinator_site2):
    client.force_login(coordinator_site2)
    assert client.get("/qc/queries/").status_code == 200  # they have a (empty) queries page of their own
    assert f"qc-query-{query.pk}" not in client.get("/qc/queries/").content.decode()
    assert client.get(f"/qc/queries/{query.pk}/").status_code == 404
    assert client.post(f"/qc/queries/{query.pk}/answer/", {"text": "done"}).status_code == 404
    assert client.post(f"/qc/queries/{query.pk}/messages/", {"text": "hi"}).status_code == 404
    assert client.get(f"/api/qc/queries/{query.pk}/").status_code == 404
    assert client.post(f"/api/qc/queries/{query.pk}/answer/", {"text": "done"},
                       content_type="application/json").status_code == 404
    assert client.get("/api/qc/queries/").json() == []
    with pytest.raises(PermissionDenied):
        query_answer(coordinator=coordinator_site2, query=query, text="done")
    query.refresh_from_db()
    assert query.status == "open" and query.messages.count() == 1

    client.force_login(coordinator_site1)
    assert f"qc-query-{query.pk}" in client.get("/qc/queries/").content.decode()
    assert client.get(f"/qc/queries/{query.pk}/").status_code == 200


@pytest.mark.parametrize("who", ["reader1", "sponsor", "outsider"])
def test_others_get_404_and_no_navigation_entry(client, request, who, query):
    client.force_login(request.getfixturevalue(who))
    assert client.get("/qc/queries/").status_code == 404
    assert client.get(f"/qc/queries/{query.pk}/").status_code == 404
    assert client.get("/api/qc/queries/").status_code == 404
    assert client.get(f"/api/qc/queries/{query.pk}/").status_code == 404
    assert client.post(f"/qc/queries/{query.pk}/close/").status_code == 404
    assert 'href="/qc/queries/"' not in client.get("/").content.decode()


def test_the_thread_holds_both_sides_in_order_and_a_closed_query_takes_no_more(query, qc_analyst,
                                                                               coordinator_site1):
    query_message_add(author=coordinator_site1, query=query, text="Which series number?")
    query_message_add(author=qc_analyst, query=query, text="The post-contrast T1.")

    thread = [(m.side, m.kind, m.text) for m in query.messages.order_by("created_at", "pk")]
    assert thread == [("qc", "message", "The T1 post-contrast series is missing."),
                      ("site", "message", "Which series number?"), ("qc", "message", "The post-contrast T1.")]
    assert AuditEvent.objects.filter(action="qc.query_message_added").count() == 2
    query_close(analyst=qc_analyst, query=query)
    with pytest.raises(QueryStateError):
        query_message_add(author=coordinator_site1, query=query, text="late")


def test_the_site_answers_with_a_rescan_and_qc_closes_or_reopens(client, query, pending, qc_analyst,
                                                                  coordinator_site1):
    rescan = pending(folder="v2")
    assert rescan.version == 2
    client.force_login(coordinator_site1)
    page = client.get(f"/qc/queries/{query.pk}/").content.decode()
    assert f'<option value="{rescan.pk}">' in page and f'<option value="{query.study_id}">' not in page
    # the original study is not a rescan of its own query
    refused = client.post(f"/qc/queries/{query.pk}/answer/", {"text": "sent", "rescan": query.study_id})
    assert refused.status_code == 400 and "cannot be linked" in refused.content.decode()

    response = client.post(f"/qc/queries/{query.pk}/answer/", {"text": "Rescanned with contrast.",
                                                               "rescan": rescan.pk})

    assert response.status_code == 302
    query.refresh_from_db()
    assert (query.status, query.rescan_id) == ("answered", rescan.pk) and query.answered_at
    answer = query.messages.get(kind="answer")
    assert (answer.side, answer.rescan_id) == ("site", rescan.pk)
    assert AuditEvent.objects.get(action="qc.query_answered").details["rescan"] == rescan.pk
    # the coordinator cannot close; QC closes, reopens with a reason, closes again
    assert client.post(f"/qc/queries/{query.pk}/close/").status_code == 404
    client.force_login(qc_analyst)
    assert client.post(f"/qc/queries/{query.pk}/close/", {"note": "rescan fine"}).status_code == 302
    query.refresh_from_db()
    assert query.status == "closed" and query.closed_by == qc_analyst
    with pytest.raises(QcError):
        query_reopen(analyst=qc_analyst, query=query, reason="")
    query_reopen(analyst=qc_analyst, query=query, reason="series 3 is still missing")
    query.refresh_from_db()
    assert query.status == "reopened" and query.closed_at is None
    assert [m.kind for m in query.messages.order_by("created_at", "pk")] == ["message", "answer", "close", "reopen"]
    assert {"qc.query_closed", "qc.query_reopened"} <= set(AuditEvent.objects.values_list("action", flat=True))


def test_a_rescan_must_match_the_query_and_postdate_it(query, coordinator_site1, make_study):
    earlier = query.study
    with pytest.raises(QcError, match="uploaded after"):
        query_answer(coordinator=coordinator_site1, query=query, text="x", rescan=earlier)
    query.refresh_from_db()
    assert query.status == "open"


def test_aging_escalates_each_overdue_query_once_by_email_and_audits_it(query, coordinator_site1, trial_manager,
                                                                         django_capture_on_commit_callbacks):
    answered = query_raise(analyst=query.raised_by, study=query.study, category="other", text="second",
                           due_date=TODAY)
    query_answer(coordinator=coordinator_site1, query=answered, text="done")
    mail.outbox.clear()
    late = TODAY + datetime.timedelta(days=10)

    with django_capture_on_commit_callbacks(execute=True):
        assert queries_mark_overdue(today=late) == [query.pk]  # the answered one waits on QC, not the site
    with django_capture_on_commit_callbacks(execute=True):
        assert queries_mark_overdue(today=late) == []

    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == sorted([coordinator_site1.email, trial_manager.email])
    assert "Overdue QC query" in mail.outbox[0].subject and "7 day(s) overdue" in mail.outbox[0].body
    query.refresh_from_db()
    assert query.overdue and query.escalated_at
    event = AuditEvent.objects.get(action="qc.query_escalated")
    assert event.actor is None and event.details["days_overdue"] == 7


def test_the_query_list_filters_and_shows_age_and_overdue_badges(client, query, qc_analyst):
    queries_mark_overdue(today=TODAY + datetime.timedelta(days=10))
    client.force_login(qc_analyst)

    html = client.get("/qc/queries/").content.decode()

    assert f"qc-query-{query.pk}" in html and "Overdue</span>" in html and "0 days" in html
    assert 'href="/qc/queries/"' in html  # the navigation entry
    assert f"qc-query-{query.pk}" in client.get("/qc/queries/?overdue=1&category=missing_series").content.decode()
    assert f"qc-query-{query.pk}" not in client.get("/qc/queries/?category=phi_found").content.decode()
    assert f"qc-query-{query.pk}" not in client.get("/qc/queries/?status=closed").content.decode()
    partial = client.get("/qc/queries/?status=open", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<table id="qc-query-list"') and f"qc-query-{query.pk}" in partial


def test_the_study_page_raises_a_query(client, pending, qc_analyst):
    study = pending()
    client.force_login(qc_analyst)
    due = (TODAY + datetime.timedelta(days=5)).isoformat()

    bad = client.post(f"/qc/studies/{study.pk}/queries/", {"category": "other", "text": ""})
    assert bad.status_code == 400 and "needs a text" in bad.content.decode()
    response = client.post(f"/qc/studies/{study.pk}/queries/",
                           {"category": "protocol_deviation", "text": "Slice thickness 7 mm.", "due_date": due},
                           HTTP_HX_REQUEST="true")

    assert response.status_code == 200 and "raised; the site has been notified" in response.content.decode()
    query = Query.objects.get()
    assert (query.study_id, query.category, query.due_date.isoformat()) == (study.pk, "protocol_deviation", due)


def test_attachments_keep_a_sha256_respect_the_size_limit_and_download_only_for_the_query(
        client, query, media, settings, coordinator_site1, coordinator_site2, qc_analyst):
    settings.QC_QUERY_ATTACHMENT_MAX_BYTES = 1000
    with pytest.raises(QcError, match="limited to 1000 bytes"):
        query_attachment_add(author=qc_analyst, query=query, upload=SimpleUploadedFile("big.pdf", b"x" * 1001))
    client.force_login(coordinator_site1)
    content = b"%PDF-1.4 scanner service report"

    response = client.post(f"/qc/queries/{query.pk}/messages/",
                           {"text": "Scanner report attached.", "file": SimpleUploadedFile("report.pdf", content)})

    assert response.status_code == 302
    attachment = QueryAttachment.objects.get()
    assert (attachment.name, attachment.size, attachment.sha256) == (
        "report.pdf", len(content), hashlib.sha256(content).hexdigest())
    assert "report" not in attachment.key and attachment.key.startswith(f"qc/queries/{query.pk}/")
    assert attachment.message == QueryMessage.objects.get(text="Scanner report attached.")
    url = f"/qc/queries/{query.pk}/attachments/{attachment.pk}/"
    for user in (coordinator_site1, qc_analyst):
        client.force_login(user)
        download = client.get(url)
        assert download.status_code == 200 and b"".join(download.streaming_content) == content
    assert AuditEvent.objects.filter(action="qc.query_attachment_downloaded").count() == 2
    client.force_login(coordinator_site2)
    assert client.get(url).status_code == 404
    assert AuditEvent.objects.filter(action="qc.query_attachment_downloaded").count() == 2


def test_missing_timepoints_raise_queries_only_when_switched_on(ready_site, qc_analyst, settings):
    later = ready_site["baseline"].window_end + datetime.timedelta(days=1)
    settings.QC_AUTO_MISSING_QUERIES = False
    assert queries_raise_missing(today=later) == []

    settings.QC_AUTO_MISSING_QUERIES = True
    raised = queries_raise_missing(today=later)

    assert raised and queries_raise_missing(today=later) == []  # once per visit and procedure
    query = Query.objects.get(visit=ready_site["baseline"], procedure="CT_CAP")
    assert (query.category, query.automatic, query.study_id, query.raised_by) == ("missing_timepoint", True,
                                                                                  None, None)
    assert AuditEvent.objects.filter(action="qc.query_raised", actor__isnull=True).count() == len(raised)


def test_the_api_lists_raises_messages_answers_and_closes(client, pending, qc_analyst, coordinator_site1):
    study = pending()
    client.force_login(qc_analyst)
    raised = client.post("/api/qc/queries/", {"study_id": study.pk, "category": "phi_found",
                                              "text": "A name is burned into series 2."},
                         content_type="application/json")
    assert raised.status_code == 201, raised.content
    query_id = raised.json()["query"]["id"]
    assert client.post(f"/api/qc/queries/{query_id}/answer/", {"text": "x"},
                       content_type="application/json").status_code == 404  # QC does not answer

    client.force_login(coordinator_site1)
    assert [row["id"] for row in client.get("/api/qc/queries/?status=open").json()] == [query_id]
    assert client.post(f"/api/qc/queries/{query_id}/messages/", {"text": "Checking with radiology."},
                       content_type="application/json").status_code == 200
    answered = client.post(f"/api/qc/queries/{query_id}/answer/", {"text": "Resent without the overlay."},
                           content_type="application/json")
    assert answered.status_code == 200 and answered.json()["query"]["status"] == "answered"
    assert client.post(f"/api/qc/queries/{query_id}/answer/", {"text": "again"},
                       content_type="application/json").status_code == 409

    client.force_login(qc_analyst)
    closed = client.post(f"/api/qc/queries/{query_id}/close/", {"note": "ok"}, content_type="application/json")
    assert closed.status_code == 200 and closed.json()["query"]["status"] == "closed"
    assert [m["side"] for m in closed.json()["messages"]] == ["qc", "site", "site", "qc"]


def test_the_openapi_schema_lists_the_query_endpoints_and_validates(client, qc_analyst, tmp_path):
    client.force_login(qc_analyst)
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    assert {"/api/qc/queries/", "/api/qc/queries/{query_id}/", "/api/qc/queries/{query_id}/answer/",
            "/api/qc/queries/{query_id}/close/"} <= set(paths)
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


# -- site QC metrics ------------------------------------------------------------------------------------

def test_site_metrics_count_first_pass_acceptance_queries_per_study_and_resolution(
        client, pending, qc_analyst, trial_manager, coordinator_site1, outsider):
    from qc.services import study_accept, study_reject

    first = pending(folder="v1")
    study_reject(analyst=qc_analyst, study=first, reason="motion")
    second = pending(folder="v2")  # a rescan: not a first pass
    study_accept(analyst=qc_analyst, study=second)
    query = query_raise(analyst=qc_analyst, study=second, category="other", text="which scanner?")
    query_answer(coordinator=coordinator_site1, query=query, text="the Force")
    query_close(analyst=qc_analyst, query=query)
    query_raise(analyst=qc_analyst, study=second, category="other", text="still open")
    month = timezone.now().strftime("%Y-%m")
    client.force_login(trial_manager)

    rows = client.get("/api/qc/metrics/").json()

    assert len(rows) == 1
    row = rows[0]
    assert (row["site"], row["month"], row["first_versions_decided"], row["first_pass_accepted"]) == (
        "101", month, 1, 0)
    assert row["first_pass_rate"] == 0.0 and row["studies_checked"] == 2 and row["queries_raised"] == 2
    assert row["queries_per_study"] == 1.0 and row["queries_closed"] == 1 and row["median_resolution_days"] == 0.0
    page = client.get("/qc/metrics/").content.decode()
    assert "Site QC metrics" in page and month in page and 'href="/qc/metrics/"' in page
    client.force_login(outsider)  # manages another trial: sees its (empty) metrics, never this one's
    assert client.get("/api/qc/metrics/").json() == []


@pytest.mark.parametrize("who", ["coordinator_site1", "reader1"])
def test_site_metrics_are_not_for_sites_or_readers(client, request, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get("/qc/metrics/").status_code == 404
    assert client.get("/api/qc/metrics/").status_code == 404


def test_the_api_raises_a_query_about_a_visit_whose_study_is_missing(client, ready_site, qc_analyst,
                                                                      coordinator_site2):
    subject, baseline = ready_site["subject"], ready_site["baseline"]
    client.force_login(qc_analyst)

    raised = client.post("/api/qc/queries/", {"subject_id": subject.pk, "visit_id": baseline.pk,
                                              "procedure": "CT_CAP", "category": "missing_series",
                                              "text": "Baseline CT not received."}, content_type="application/json")

    assert raised.status_code == 201, raised.content
    body = raised.json()["query"]
    assert (body["study_id"], body["subject"], body["visit"], body["procedure"]) == (None, "101-0001", "BL", "CT_CAP")
    client.force_login(coordinator_site2)
    assert client.post("/api/qc/queries/", {"subject_id": subject.pk, "category": "other", "text": "x"},
                       content_type="application/json").status_code == 404


def test_a_file_held_by_de_identification_becomes_one_query_to_its_site(make_study, ready_site):
    """Verification failures are not released silently: the site is asked, once per study while it is open."""
    from deid.models import DeidRecord
    from deid.signals import instance_held
    from qc.services import query_raise_for_held

    study = make_study(count=2, BurnedInAnnotation="YES")  # no pixel region covers it: both files held
    records = list(DeidRecord.objects.filter(instance__study=study, outcome=DeidRecord.Outcome.HELD))
    assert len(records) == 2

    query = query_raise_for_held(record_id=records[0].pk)
    assert query_raise_for_held(record_id=records[1].pk) is None  # the open query covers the study

    assert (query.study, query.category, query.automatic) == (study, Query.Category.PHI_FOUND, True)
    assert "BurnedInAnnotation" in query.text and query.raised_by is None
    assert Query.objects.filter(study=study).count() == 1
    assert AuditEvent.objects.filter(action="qc.query_raised", target_id=str(query.pk)).count() == 1
    assert SiteNotice.objects.filter(site=study.site, subject__contains="PHI found").exists()
    # the signal deid sends on commit reaches QC's receiver (connected under its dispatch uid)
    assert "qc.on_instance_held" in {entry[0][0] for entry in instance_held.receivers}
