"""Audit search: scoped to the trials where the user reads the audit trail, filtered, paginated, exported."""

import csv
import io

import pytest
from django.db import transaction

from audit.chain import chain_seal
from audit.models import AuditEvent
from audit.services import audit_record

from ..trials.factories import MembershipFactory, TrialFactory, UserFactory
from .conftest import record

pytestmark = pytest.mark.django_db


def _ids(response) -> list[int]:
    return [e.event.pk for e in response.context["entries"]]


@pytest.fixture
def other_trial_event(db):
    other = TrialFactory(protocol_number="CL-ELSE-2")
    with transaction.atomic():
        return audit_record(actor=None, action="intake.instance_received", trial_id=other.pk, details={"x": 1})


def test_search_shows_only_the_users_trials(client, auditor, history, other_trial_event):
    client.force_login(auditor)
    ids = _ids(client.get("/audit/search"))
    assert other_trial_event.pk not in ids
    assert set(ids) >= set(AuditEvent.objects.filter(subject_id=history.pk).values_list("pk", flat=True))
    assert all(AuditEvent.objects.get(pk=i).trial_id == history.trial_id for i in ids)


@pytest.mark.parametrize("who", ["coordinator_site1", "qc_analyst", "sponsor", "reader1"])
def test_roles_without_audit_access_get_404(client, request, history, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get("/audit/search").status_code == 404
    assert client.get("/audit/search.csv").status_code == 404
    assert client.get("/api/audit/events/").status_code == 404


def test_outsider_sees_nothing_of_this_trial(client, outsider, history):
    client.force_login(outsider)  # a trial manager elsewhere
    response = client.get("/audit/search", {"subject": history.code})
    assert response.status_code == 200 and _ids(response) == []
    assert client.get("/audit/search", {"trial": history.trial_id}).status_code == 200  # invalid choice: nothing


@pytest.mark.parametrize("params, actions", [
    ({"action": "deid"}, ["deid.instance_deidentified"]),
    ({"action": "qc.study_accepted"}, ["qc.study_accepted"]),
    ({"user": "coord2"}, ["intake.instance_received"]),
    ({"target_type": "intake.imagingstudy", "target_id": "5"}, ["qc.study_accepted"]),
])
def test_filters(client, auditor, history, params, actions):
    client.force_login(auditor)
    found = [e.event.action for e in client.get("/audit/search", {"subject": "102-0001", **params})
             .context["entries"]]
    assert found == actions


def test_filter_by_site_and_dates(client, auditor, history, site1, site2):
    client.force_login(auditor)
    today = AuditEvent.objects.latest("occurred_at").occurred_at.date().isoformat()
    assert len(_ids(client.get("/audit/search", {"site": site2.pk, "since": today, "until": today}))) >= 4
    assert _ids(client.get("/audit/search", {"site": site2.pk, "until": "2000-01-01"})) == []
    assert _ids(client.get("/audit/search", {"site": site1.pk, "subject": "102-0001"})) == []


def test_newest_first_and_keyset_pages(client, auditor, history):
    for n in range(60):
        record(action="intake.instance_received", subject=history, n=n)
    client.force_login(auditor)
    first = client.get("/audit/search", {"subject": "102-0001"})
    second = client.get("/audit/search", {"subject": "102-0001", "after": first.context["next_cursor"]})
    ids = _ids(first) + _ids(second)
    expected = list(AuditEvent.objects.filter(subject_id=history.pk).order_by("-occurred_at", "-id")
                    .values_list("pk", flat=True))
    assert ids == expected and len(_ids(first)) == 50


def test_csv_export_is_audited_and_carries_the_chain_head(client, auditor, history):
    client.force_login(auditor)
    response = client.get("/audit/search.csv", {"subject": "102-0001", "action": "intake"})
    text = b"".join(response.streaming_content).decode()
    data = [line for line in text.splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(data))))
    assert [r["action"] for r in rows] == ["intake.instance_received"]
    assert "# chain_head_hash" in text and "OK" in text
    event = AuditEvent.objects.get(action="audit.search_exported")
    assert event.actor == auditor and event.details["rows"] == 1
    assert event.details["filters"] == {"subject_code": "102-0001", "action": "intake"}


def test_api_search(client, auditor, history):
    client.force_login(auditor)
    data = client.get("/api/audit/events/", {"subject": "102-0001", "limit": 2}).json()
    assert len(data["results"]) == 2 and data["next"]
    rest = client.get("/api/audit/events/", {"subject": "102-0001", "after": data["next"]}).json()
    assert len(rest["results"]) == 2 and rest["next"] == ""
    assert rest["results"][-1]["action"] == "trials.subject_enrolled"


def test_trial_manager_of_two_trials_may_narrow_to_one(client, history):
    manager = UserFactory(username="two-trials")
    other = TrialFactory(protocol_number="CL-TWO")
    MembershipFactory(user=manager, trial=other, role="trial_manager")
    MembershipFactory(user=manager, trial_id=history.trial_id, role="auditor")
    with transaction.atomic():
        audit_record(actor=None, action="trials.trial_updated", trial_id=other.pk)
    chain_seal()
    client.force_login(manager)
    both = {AuditEvent.objects.get(pk=i).trial_id for i in _ids(client.get("/audit/search"))}
    assert both == {history.trial_id, other.pk}
    one = {AuditEvent.objects.get(pk=i).trial_id for i in _ids(client.get("/audit/search", {"trial": other.pk}))}
    assert one == {other.pk}
