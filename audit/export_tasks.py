"""The background PDF export's task, apart from ``audit.tasks``.

``audit.services`` imports ``audit.tasks`` (to queue a chain verification) and must reach no project app;
this task's work (``audit.exports``) asks ``trials.permissions`` through ``audit.selectors``. So it lives
here, is registered by ``AuditConfig.ready()`` (web and worker alike), and services queue it by name.
"""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from . import exports
from .services import pdf_export_fail

log = logging.getLogger(__name__)

PDF_SOFT_LIMIT = 3600  # seconds: 200,000 events at ~9 ms each would take about half of it


@shared_task(name="audit.pdf_export", acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             autoretry_for=(OSError,), retry_backoff=True, max_retries=5,
             soft_time_limit=PDF_SOFT_LIMIT, time_limit=PDF_SOFT_LIMIT + 60)
def pdf_export_task(export_id: int) -> str:
    """Make a queued patient-timeline PDF and store it (``exports.pdf_export_build``). Idempotent: a finished
    export is left alone, a redelivered one makes the same file and reuses the export's audit event."""
    try:
        export = exports.pdf_export_build(export_id=export_id)
    except OSError:
        raise  # storage or database unreachable: retried
    except SoftTimeLimitExceeded:
        export = pdf_export_fail(export_id=export_id, error="The PDF took longer than allowed: filter the timeline "
                                                           "by a family of actions, or export it as CSV or JSON.")
    except Exception as exc:  # a permanent failure (the PDF engine refused): shown to the requester, logged
        log.exception("timeline PDF export %s failed", export_id)
        export = pdf_export_fail(export_id=export_id, error=f"The PDF could not be made ({type(exc).__name__}).")
    return export.status if export is not None else "done already"
