"""Thin Celery wrappers around deid.services; redelivery is expected, so every service is idempotent."""

import logging

from celery import shared_task

from . import queue
from .services import quarantine_purge, series_deidentify

log = logging.getLogger(__name__)


@shared_task(name="deid.series_deidentify", acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             autoretry_for=(OSError,), retry_backoff=True, max_retries=5, soft_time_limit=1800, time_limit=1900)
def series_deidentify_task(series_id: int) -> dict:
    """De-identify every pending instance of a series. Clears the series' coalescing flag first, so an
    instance committed from now on enqueues a new task, and one committed before is seen by the query."""
    queue.series_flag_clear(series_id=series_id)
    return series_deidentify(series_id=series_id)


@shared_task(name="deid.quarantine_purge", acks_late=True, ignore_result=True, autoretry_for=(OSError,),
             retry_backoff=True, max_retries=3)
def quarantine_purge_task() -> int:
    """Beat task: delete raw files whose retention has run out (audited, one per file)."""
    return quarantine_purge()
