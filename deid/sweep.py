"""Stuck-work finders for config.sweeper: series with instances left RECEIVED or DEIDENTIFYING."""

from datetime import datetime

from intake.models import Instance

from .services import DEID_STUDY_STATUSES


def stuck_series(cutoff: datetime) -> list[int]:
    """Series with an instance RECEIVED or DEIDENTIFYING since before ``cutoff``, their study assigned and open."""
    return sorted(set(Instance.objects.filter(
        status__in=(Instance.Status.RECEIVED, Instance.Status.DEIDENTIFYING), status_changed_at__lt=cutoff,
        study__subject__isnull=False, study__status__in=DEID_STUDY_STATUSES,
    ).values_list("series_id", flat=True)))


def requeue_series(series_id: int) -> None:
    """Enqueue the series again even if its coalescing flag is still set (the flag may be stale)."""
    from .queue import series_enqueue

    series_enqueue(series_id=series_id, force=True)
