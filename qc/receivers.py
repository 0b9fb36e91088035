"""QC's hooks into lower apps: receivers only enqueue; the sweeper finds studies whose run was lost."""

import logging
from datetime import datetime

from intake.models import ImagingStudy

log = logging.getLogger(__name__)


def qc_enqueue(*, study_id: int, trigger: str) -> None:
    from .tasks import qc_run_task

    try:
        qc_run_task.delay(study_id, trigger)
    except Exception:  # noqa: BLE001 - broker down: the sweeper re-enqueues the study later
        log.exception("could not enqueue QC for study %s; the sweeper will", study_id)


def on_study_status_changed(sender, *, study_id: int, before: str, after: str, **kwargs) -> None:
    """intake.signals.study_status_changed (sent on commit): a study just de-identified gets its checks."""
    if after == ImagingStudy.Status.DEIDENTIFIED:
        qc_enqueue(study_id=study_id, trigger="deidentified")


def on_instance_held(sender, *, record_id: int, **kwargs) -> None:
    """deid.signals.instance_held (sent on commit): a held file becomes a query to its site."""
    from .tasks import query_raise_for_held_task

    try:
        query_raise_for_held_task.delay(record_id)
    except Exception:  # noqa: BLE001 - broker down: the held record stays; QC sees it on the study page
        log.exception("could not enqueue the query for held de-identification record %s", record_id)


def stuck_studies(cutoff: datetime) -> list[int]:
    """Studies de-identified since before ``cutoff`` and still not queued for review: their run was lost."""
    return list(ImagingStudy.objects.filter(status=ImagingStudy.Status.DEIDENTIFIED, status_changed_at__lt=cutoff)
                .order_by("pk").values_list("pk", flat=True))


def requeue_study(study_id: int) -> None:
    qc_enqueue(study_id=study_id, trigger="sweeper")
