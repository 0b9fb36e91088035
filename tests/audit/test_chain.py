"""The audit trail is append-only and hash-chained; tampering is found."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.chain import GENESIS, chain_head, chain_seal, verify_chain, verify_events
from audit.models import AuditEvent
from audit.services import audit_record
from audit.tasks import chain_seal_task, chain_verify_task

from ..conftest import database_url_for_children

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys, django
django.setup()
from django.db import transaction
from audit.services import audit_record
for n in range(int(sys.argv[1])):
    with transaction.atomic():
        audit_record(actor=None, action="test.concurrent", details={"writer": sys.argv[2], "n": n})
"""

SEALER = """
import sys, time, django
django.setup()
from audit.chain import chain_seal
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    chain_seal(batch=7)
"""


def _record(action="test.event", **details):
    with transaction.atomic():
        return audit_record(actor=None, action=action, details=details)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writer_processes_make_one_unbroken_chain():
    env = {**os.environ, "DATABASE_URL": database_url_for_children(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, "60", str(w)], cwd=ROOT, env=env)
               for w in range(4)]
    sealers = [subprocess.Popen([sys.executable, "-c", SEALER, "4"], cwd=ROOT, env=env) for _ in range(2)]
    for process in writers + sealers:
        assert process.wait(60) == 0

    chain_seal()

    assert AuditEvent.objects.count() == 240
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()
    assert sorted(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, 241))
    result = verify_chain()
    assert result.ok, result.summary()
    assert result.count == 240 and result.head_hash == chain_head()[1]
    per_writer = {str(w): sorted(e.details["n"] for e in AuditEvent.objects.filter(details__writer=str(w)))
                  for w in range(4)}
    assert all(ns == list(range(60)) for ns in per_writer.values())


@pytest.mark.django_db(transaction=True)
def test_audit_record_refuses_to_run_outside_a_transaction():
    from audit.exceptions import AuditOutsideTransaction

    with pytest.raises(AuditOutsideTransaction):
        audit_record(actor=None, action="test.loose")
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_seal_links_each_event_to_the_previous_one():
    first, second = _record(n=1), _record(n=2)

    assert chain_seal() == 2

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.seq, first.prev_hash) == (1, GENESIS)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert chain_seal() == 0  # idempotent


@pytest.mark.django_db
def test_the_database_refuses_update_and_delete():
    event = _record(n=1)
    chain_seal()
    for sql in ["UPDATE audit_auditevent SET action = 'x' WHERE id = %s",
                "DELETE FROM audit_auditevent WHERE id = %s",
                "UPDATE audit_auditevent SET seq = 99, hash = 'f' WHERE id = %s"]:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, [event.pk])
    event.refresh_from_db()
    assert event.action == "test.event" and event.seq == 1


@pytest.mark.django_db
def test_an_unsealed_event_cannot_change_content_while_being_sealed():
    event = _record(n=1)
    with pytest.raises(DatabaseError, match="only sealing"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE audit_auditevent SET seq = 1, hash = 'f', sealed_at = now(), reason = 'edited' "
                    "WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()


def _tamper(sql, params):
    """What a database superuser could do: switch the trigger off, edit, switch it on."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses while deferred checks are pending
        cur.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cur.execute(sql, params)
        cur.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


@pytest.mark.django_db
def test_verify_audit_chain_finds_an_altered_event(capsys):
    events = [_record(n=n) for n in range(5)]
    chain_seal()
    call_command("verify_audit_chain")
    assert capsys.readouterr().out.startswith("OK: 5 events, head ")

    _tamper("UPDATE audit_auditevent SET details = '{\"n\": 99}' WHERE id = %s", [events[2].pk])

    with pytest.raises(CommandError, match=rf"BROKEN at seq 3 \(event id {events[2].pk}\): content does not match"):
        call_command("verify_audit_chain")
    assert verify_events(events=AuditEvent.objects.filter(action="test.event")) == [events[2].pk]


@pytest.mark.django_db
def test_verify_audit_chain_finds_a_removed_event():
    events = [_record(n=n) for n in range(4)]
    chain_seal()

    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])

    with pytest.raises(CommandError, match=rf"BROKEN at seq 3 \(event id {events[2].pk}\): seq 2 is missing"):
        call_command("verify_audit_chain")


@pytest.mark.django_db
def test_verify_reports_unsealed_events_and_seal_first_seals_them(capsys):
    _record(n=1)
    assert verify_chain().unsealed == 1
    call_command("verify_audit_chain", "--seal-first")
    assert "OK: 1 events" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_seal_task_is_a_thin_wrapper():
    _record(n=1)
    assert chain_seal_task() == 1
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()


@pytest.mark.django_db
def test_the_verify_task_logs_a_broken_chain_as_an_error(caplog):
    events = [_record(n=n) for n in range(2)]
    chain_seal()
    _tamper("UPDATE audit_auditevent SET reason = 'edited' WHERE id = %s", [events[0].pk])

    chain_verify_task()

    assert [r.levelname for r in caplog.records if "audit chain" in r.getMessage()] == ["ERROR"]


@pytest.mark.django_db
def test_the_admin_shows_events_but_offers_no_add_change_or_delete(admin_client):
    event = _record(n=1)
    assert admin_client.get("/admin/audit/auditevent/").status_code == 200
    assert admin_client.get("/admin/audit/auditevent/add/").status_code == 403
    page = admin_client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_a_late_committing_writer_does_not_break_the_chain():
    """A transaction that started first but commits last is sealed after the others."""
    env = {**os.environ, "DATABASE_URL": database_url_for_children(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    slow = subprocess.Popen([sys.executable, "-c", """
import time, django
django.setup()
from django.db import transaction
from audit.services import audit_record
with transaction.atomic():
    audit_record(actor=None, action="test.slow")
    print("inserted", flush=True)
    time.sleep(4)
"""], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    # the slow writer has its id but has not committed (waiting on it, not a guess: Django's start-up
    # takes seconds on a loaded machine)
    assert slow.stdout.readline().strip() == "inserted"
    _record("test.fast")
    assert chain_seal() == 1
    assert slow.wait(30) == 0
    assert chain_seal() == 1

    slow_event = AuditEvent.objects.get(action="test.slow")
    fast_event = AuditEvent.objects.get(action="test.fast")
    assert slow_event.id < fast_event.id and slow_event.seq > fast_event.seq
    assert verify_chain().ok
