"""Thin Celery wrappers around reads' services; redelivery is expected, so each service is idempotent."""

import logging

from celery import shared_task

from .reports import TASK_NAME, measurement_report_fail, measurement_report_make

log = logging.getLogger(__name__)
MAX_RETRIES = 5


@shared_task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             max_retries=MAX_RETRIES, soft_time_limit=300, time_limit=360)
def measurement_report_make_task(self, report_id: int) -> str | None:
    """Make and store a signed read's measurement report. Storage errors are retried with backoff; when the
    retries run out, the report is recorded as failed with the reason (the signature is never affected)."""
    try:
        report = measurement_report_make(report_id=report_id)
    except OSError as exc:
        if self.request.retries >= MAX_RETRIES:
            measurement_report_fail(report_id=report_id,
                                    error=f"the archive storage failed {MAX_RETRIES + 1} times: {exc}")
            return None
        log.warning("measurement report %s: storage error, retrying: %s", report_id, exc)
        raise self.retry(exc=exc, countdown=min(600, 10 * 2 ** self.request.retries)) from exc
    return report.status if report is not None else None
