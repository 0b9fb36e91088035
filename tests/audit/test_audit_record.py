import pytest
from django.db import transaction

from audit.exceptions import ReasonRequired
from audit.models import AuditEvent
from audit.services import audit_record, history_save

pytestmark = pytest.mark.django_db


def test_an_event_carries_actor_role_target_and_trial(trial, trial_manager):
    with transaction.atomic():
        event = audit_record(actor=trial_manager, action="test.looked", target=trial, trial_id=trial.pk,
                             details={"why": "because"}, reason="checking")

    event.refresh_from_db()
    assert (event.actor, event.actor_label, event.actor_role) == (trial_manager, "manager", "trial_manager")
    assert (event.target_type, event.target_id, event.target_label) == ("trials.trial", str(trial.pk), str(trial))
    assert event.details == {"why": "because"} and event.reason == "checking"
    assert event.ip_address is None and event.occurred_at.utcoffset().total_seconds() == 0
    assert event.seq is None  # sealed later, by the sealer


def test_a_user_with_several_roles_is_recorded_with_all_of_them(trial, qc_analyst):
    from trials.models import Membership, Role

    Membership.objects.create(user=qc_analyst, trial=trial, role=Role.AUDITOR)
    with transaction.atomic():
        event = audit_record(actor=qc_analyst, action="test.multi", trial_id=trial.pk)
    assert event.actor_role == "qc_analyst,auditor"


def test_login_logout_and_failed_login_are_events_with_the_ip(client, trial_manager):
    client.post("/accounts/login/", {"username": "manager", "password": "wrong-password"},
                REMOTE_ADDR="203.0.113.9")
    client.post("/accounts/login/", {"username": "manager", "password": "correct-horse-battery"},
                REMOTE_ADDR="203.0.113.9")
    client.post("/accounts/logout/", REMOTE_ADDR="203.0.113.9")

    events = list(AuditEvent.objects.order_by("id"))
    assert [e.action for e in events] == ["auth.login_failed", "auth.login", "auth.logout"]
    assert all(e.ip_address == "203.0.113.9" for e in events)
    assert events[0].details["username"] == "manager" and events[0].actor is None
    assert "wrong-password" not in str(events[0].details)
    assert events[1].actor == trial_manager


def test_history_save_needs_a_reason(trial):
    trial.title = "changed"
    with pytest.raises(ReasonRequired):
        history_save(instance=trial, reason="", update_fields=["title"])
    history_save(instance=trial, reason="typo in the title", update_fields=["title"])
    assert trial.history.first().history_change_reason == "typo in the title"
