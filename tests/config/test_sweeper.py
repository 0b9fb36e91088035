import datetime
import time

import pytest
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from config import sweeper


@pytest.fixture
def registered_kind():
    seen = []
    sweeper.register(name="test.kind", find=lambda cutoff: [7, 8] if cutoff < timezone.now() else [],
                     requeue=seen.append)
    yield seen
    sweeper.unregister("test.kind")


@pytest.mark.django_db
def test_sweep_requeues_every_id_each_registered_kind_finds(registered_kind):
    counts = sweeper.sweep()
    assert counts["test.kind"] == 2 and registered_kind == [7, 8]
    assert "audit.unsealed" in sweeper.registered()


@pytest.mark.django_db
def test_registering_a_name_again_replaces_it(registered_kind):
    sweeper.register(name="test.kind", find=lambda cutoff: [], requeue=registered_kind.append)
    assert sweeper.sweep()["test.kind"] == 0


@pytest.mark.django_db(transaction=True)
def test_stuck_unsealed_events_are_requeued_and_a_real_worker_seals_them(worker):
    with transaction.atomic():
        event = audit_record(actor=None, action="test.stuck")

    assert sweeper.sweep()["audit.unsealed"] == 0  # young: not stuck yet
    counts = sweeper.sweep(now=timezone.now() + datetime.timedelta(hours=1))
    assert counts["audit.unsealed"] == 1

    deadline = time.monotonic() + 20
    while AuditEvent.objects.get(pk=event.pk).seq is None:
        assert time.monotonic() < deadline, "the worker did not seal the requeued event"
        time.sleep(0.2)
