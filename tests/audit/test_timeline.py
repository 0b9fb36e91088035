"""The patient timeline: who may open it, what it shows and in which order, and its exports."""

import csv
import io
import json

import pytest

from audit.chain import chain_head, chain_seal
from audit.models import AuditEvent
from audit.selectors import decode_cursor

from ..trials.factories import MembershipFactory, TrialFactory, UserFactory
from .conftest import record, tamper

pytestmark = pytest.mark.django_db

ORDER = ["trials.subject_enrolled", "intake.instance_received", "deid.instance_deidentified", "qc.study_accepted"]


def _url(subject, suffix=""):
    return f"/audit/subjects/{subject.pk}/timeline{suffix}"


def _actions(response) -> list[str]:
    return [e.event.action for e in response.context["entries"]]


def test_auditor_sees_the_subjects_events_oldest_first(client, auditor, history):
    client.force_login(auditor)
    response = client.get(_url(history))
    assert response.status_code == 200
    assert _actions(response) == ORDER
    body = response.content.decode()
    assert "102-0001" in body and "Image de-identified" in body and "Europe/Paris" in body


def test_trial_manager_may_open_the_timeline(client, trial_manager, history):
    client.force_login(trial_manager)
    assert client.get(_url(history)).status_code == 200


@pytest.mark.parametrize("who", ["coordinator_site2", "qc_analyst", "reader1", "sponsor", "outsider"])
def test_other_roles_get_404(client, request, history, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(_url(history)).status_code == 404
    assert client.get(_url(history, ".csv")).status_code == 404
    assert client.get(f"/api/audit/subjects/{history.pk}/timeline/").status_code == 404


def test_auditor_of_another_trial_gets_404(client, history):
    other_auditor = UserFactory(username="auditor-other")
    MembershipFactory(user=other_auditor, trial=TrialFactory(protocol_number="CL-ELSE"), role="auditor")
    client.force_login(other_auditor)
    assert client.get(_url(history)).status_code == 404


def test_missing_subject_is_404_like_forbidden(client, auditor):
    client.force_login(auditor)
    assert client.get("/audit/subjects/999999/timeline").status_code == 404


def test_entries_show_utc_and_site_local_time(client, auditor, history):
    client.force_login(auditor)
    entry = client.get(_url(history)).context["entries"][0]
    assert entry.utc.utcoffset().total_seconds() == 0
    assert str(entry.local.tzinfo) == "Europe/Paris"
    assert entry.local == entry.utc
    page = client.get(_url(history)).content.decode()
    assert entry.local.strftime("%Y-%m-%d %H:%M:%S CE") in page  # CET or CEST, not UTC


def test_filter_by_action_family(client, auditor, history):
    client.force_login(auditor)
    assert _actions(client.get(_url(history), {"family": "deid"})) == ["deid.instance_deidentified"]


def test_newest_first(client, auditor, history):
    client.force_login(auditor)
    assert _actions(client.get(_url(history), {"order": "desc"})) == list(reversed(ORDER))


def test_keyset_pages_cover_every_event_once_in_order(client, auditor, history, coordinator_site2):
    for n in range(250):
        record(actor=coordinator_site2, action="intake.instance_received", subject=history, n=n)
    client.force_login(auditor)
    seen, after = [], ""
    while True:
        response = client.get(_url(history), {"after": after} if after else {})
        seen += [e.event.pk for e in response.context["entries"]]
        after = response.context["next_cursor"]
        if not after:
            break
    expected = list(AuditEvent.objects.filter(subject_id=history.pk).order_by("occurred_at", "id")
                    .values_list("pk", flat=True))
    assert seen == expected and len(seen) == 254
    assert decode_cursor("garbage!") is None


def test_htmx_next_page_is_the_rows_partial(client, auditor, history, coordinator_site2):
    for n in range(120):
        record(actor=coordinator_site2, action="intake.instance_received", subject=history, n=n)
    client.force_login(auditor)
    cursor = client.get(_url(history)).context["next_cursor"]
    response = client.get(_url(history), {"after": cursor}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<h1>" not in body and "<tr id=\"event-" in body


def test_other_subjects_events_are_not_on_the_timeline(client, auditor, history, trial_manager, site1):
    from trials.services import subject_enroll

    from .conftest import ENROLLED

    other = subject_enroll(actor=trial_manager, site=site1, code="101-0009", patient_id="MRN-OTHER",
                           enrollment_date=ENROLLED)
    record(action="intake.instance_received", subject=other)
    client.force_login(auditor)
    assert _actions(client.get(_url(history))) == ORDER


def test_target_with_a_page_is_a_link(client, auditor, history):
    client.force_login(auditor)
    enrolled = client.get(_url(history)).context["entries"][0]
    assert enrolled.url == _url(history)  # a subject's own page is its timeline


# -- exports -----------------------------------------------------------------------------------------------

def _csv(response) -> tuple[dict, list[dict]]:
    text = b"".join(response.streaming_content).decode()
    lines = text.splitlines()
    meta = {}
    for line in lines:
        if not line.startswith("#"):
            break
        key, _, value = line.partition(",")
        meta[key.removeprefix("# ")] = value
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[len(meta):]))))
    return meta, rows


def test_csv_export_has_the_events_chain_head_and_verification(client, auditor, history):
    client.force_login(auditor)
    head_seq, head_hash = chain_head()
    response = client.get(_url(history, ".csv"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    meta, rows = _csv(response)
    assert [r["action"] for r in rows] == ORDER
    assert meta["chain_head_hash"] == head_hash and meta["chain_head_seq"] == str(head_seq)
    assert meta["verification"].strip('"').startswith("OK")
    assert rows[1]["actor_label"] == "coord2" and rows[1]["subject_code"] == "102-0001"
    assert json.loads(rows[1]["details"])["channel"] == "web"
    assert rows[1]["occurred_at_local"].endswith(("+01:00", "+02:00"))


def test_each_export_is_an_audit_event_with_the_head_it_carried(client, auditor, history):
    client.force_login(auditor)
    meta, _rows = _csv(client.get(_url(history, ".csv")))
    event = AuditEvent.objects.get(action="audit.timeline_exported")
    assert event.actor == auditor and event.actor_role == "auditor"
    assert event.subject_id == history.pk and event.trial_id == history.trial_id
    assert event.details["format"] == "csv" and event.details["rows"] == 4
    assert event.details["chain_head_hash"] == meta["chain_head_hash"]
    assert meta["export_event_id"] == str(event.pk)
    # the export shows on the subject's timeline from now on, but not inside its own file
    assert AuditEvent.objects.filter(subject_id=history.pk, action="audit.timeline_exported").count() == 1


def test_json_export(client, auditor, history):
    client.force_login(auditor)
    response = client.get(_url(history, ".json"), {"family": "intake"})
    data = json.loads(b"".join(response.streaming_content))
    assert [e["action"] for e in data["events"]] == ["intake.instance_received"]
    assert data["export"]["verification"]["ok"] is True
    assert data["export"]["chain_head_hash"] == chain_head()[1] or data["export"]["chain_head_seq"] > 0
    assert data["export"]["scope"]["family"] == "intake"
    assert AuditEvent.objects.get(action="audit.timeline_exported").details["format"] == "json"


def test_pdf_export(client, auditor, history):
    client.force_login(auditor)
    response = client.get(_url(history, ".pdf"))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert AuditEvent.objects.get(action="audit.timeline_exported").details["format"] == "pdf"


def test_tampered_event_shows_as_failed_verification_in_the_export(client, auditor, history):
    victim = AuditEvent.objects.get(action="qc.study_accepted")
    tamper("UPDATE audit_auditevent SET details = '{\"note\": \"rewritten\"}' WHERE id = %s", [victim.pk])
    client.force_login(auditor)
    meta, _rows = _csv(client.get(_url(history, ".csv")))
    assert "FAILED" in meta["verification"] and str(victim.pk) in meta["verification"]
    event = AuditEvent.objects.get(action="audit.timeline_exported")
    assert event.details["verification"]["failed_event_ids"] == [victim.pk]


def test_unsealed_events_are_counted_in_the_verification(client, auditor, history):
    record(action="intake.instance_received", subject=history)
    client.force_login(auditor)
    meta, rows = _csv(client.get(_url(history, ".csv")))
    assert len(rows) == 5 and "1 not yet sealed" in meta["verification"]
    chain_seal()


def test_api_timeline(client, auditor, history):
    client.force_login(auditor)
    data = client.get(f"/api/audit/subjects/{history.pk}/timeline/").json()
    assert [e["action"] for e in data["results"]] == ORDER and data["next"] == ""
    assert data["results"][0]["occurred_at_local"].endswith(("+01:00", "+02:00"))


def test_pdf_of_too_many_events_goes_to_the_background_and_records_nothing_yet(client, auditor, history,
                                                                               monkeypatch):
    from audit import exports
    from audit.models import PdfExport

    monkeypatch.setattr(exports, "PDF_MAX_EVENTS", 3)
    client.force_login(auditor)
    response = client.get(_url(history, ".pdf"), {"family": ""})
    export = PdfExport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/audit/exports/{export.pk}"
    assert (export.status, export.subject_id, export.requested_by) == (PdfExport.Status.QUEUED, history.pk, auditor)
    # the export's event is recorded by the task, when it reads the rows (tests/audit/test_pdf_background.py)
    assert not AuditEvent.objects.filter(action="audit.timeline_exported").exists()
    assert client.get(_url(history, ".pdf"), {"family": "intake"}).status_code == 200
