"""Re-enqueue background work stuck in an intermediate state.

A lost broker message or a killed worker must delay work, never lose it. Each app
registers, in its AppConfig.ready(), a *finder* returning the ids of its objects
stuck past ``settings.STUCK_WORK_AFTER`` and a *requeue* callable that enqueues
the (idempotent) task for one id again. The beat schedule runs ``sweep_stuck``.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StuckWork:
    name: str
    find: Callable[[datetime], Iterable[int]]  # ids stuck since before the cutoff
    requeue: Callable[[int], None]


_registry: dict[str, StuckWork] = {}


def register(*, name: str, find: Callable[[datetime], Iterable[int]], requeue: Callable[[int], None]) -> None:
    """Register a stuck-state query; registering the same name again replaces it."""
    _registry[name] = StuckWork(name=name, find=find, requeue=requeue)


def unregister(name: str) -> None:
    _registry.pop(name, None)


def registered() -> list[str]:
    return sorted(_registry)


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Requeue every registered kind of stuck work; returns how many ids per kind."""
    cutoff = (now or timezone.now()) - settings.STUCK_WORK_AFTER
    counts = {}
    for work in _registry.values():
        ids = list(work.find(cutoff))
        for obj_id in ids:
            work.requeue(obj_id)
        counts[work.name] = len(ids)
        if ids:
            log.warning("sweeper re-enqueued %d stuck %s", len(ids), work.name)
    return counts


@shared_task(name="config.sweep_stuck", acks_late=True, ignore_result=True)
def sweep_stuck_task() -> dict[str, int]:
    """Beat task: re-enqueue stuck work. Safe to run concurrently: the tasks it enqueues are idempotent."""
    return sweep()
