"""A broken chain is recorded by the verification task and shown to trial managers and auditors."""

import pytest

from audit.chain import chain_seal
from audit.models import AuditEvent
from audit.tasks import chain_verify_task

from .conftest import tamper

pytestmark = pytest.mark.django_db


def test_intact_chain_records_a_verified_event_and_no_banner(client, auditor, history):
    assert chain_verify_task().startswith("OK")
    event = AuditEvent.objects.get(action="audit.chain_verified")
    assert event.details["ok"] is True
    client.force_login(auditor)
    assert b"audit-chain-alert" not in client.get("/").content


def test_broken_chain_is_recorded_and_shown_to_managers_and_auditors(client, auditor, trial_manager,
                                                                     coordinator_site1, history):
    victim = AuditEvent.objects.get(action="deid.instance_deidentified")
    tamper("UPDATE audit_auditevent SET details = '{}' WHERE id = %s", [victim.pk])

    assert chain_verify_task().startswith("BROKEN")

    alert = AuditEvent.objects.get(action="audit.chain_broken")
    assert alert.details["broken_id"] == victim.pk and alert.actor is None
    for user in (auditor, trial_manager):
        client.force_login(user)
        page = client.get("/").content.decode()
        assert 'id="audit-chain-alert"' in page and "altered" in page
    client.force_login(coordinator_site1)
    assert b"audit-chain-alert" not in client.get("/").content


def test_the_newest_verification_decides_the_banner(client, auditor, history):
    victim = AuditEvent.objects.get(action="qc.study_accepted")
    tamper("UPDATE audit_auditevent SET reason = 'edited' WHERE id = %s", [victim.pk])
    chain_verify_task()
    tamper("UPDATE audit_auditevent SET reason = '' WHERE id = %s", [victim.pk])  # restored
    chain_seal()
    chain_verify_task()
    client.force_login(auditor)
    assert b"audit-chain-alert" not in client.get("/").content


def test_nightly_verification_is_scheduled(settings):
    assert any(entry["task"] == "audit.chain_verify" for entry in settings.CELERY_BEAT_SCHEDULE.values())


def test_an_export_queues_one_chain_verification_per_window(client, auditor, history, monkeypatch,
                                                            django_capture_on_commit_callbacks):
    from django.core.cache import cache

    queued = []
    monkeypatch.setattr("audit.tasks.chain_verify_task.delay", lambda: queued.append(True))  # the broker
    cache.delete("audit.chain_verify.queued")
    client.force_login(auditor)
    with django_capture_on_commit_callbacks(execute=True):
        client.get(f"/audit/subjects/{history.pk}/timeline.csv")
        client.get(f"/audit/subjects/{history.pk}/timeline.json")
    assert queued == [True]
    cache.delete("audit.chain_verify.queued")
