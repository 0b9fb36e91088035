"""Reads' hooks into intake: QC acceptance creates read tasks, a superseded study sends its timepoint to be
read again. Both run after intake's transaction has committed (intake.signals.study_status_changed); the
work is small and idempotent, so it runs here rather than through a queue, and the sweeper finds any
timepoint a failure left without tasks."""

import logging
from datetime import datetime

from intake.models import ImagingStudy

from .exceptions import ReadsError

log = logging.getLogger(__name__)
S = ImagingStudy.Status


def timepoint_tasks_ensure(study_id: int) -> None:
    """Create the read tasks of the study's timepoint if every required study is now accepted."""
    from .services import tasks_create_for_timepoint

    study = ImagingStudy.objects.select_related("subject", "visit").filter(pk=study_id).first()
    if study is None or study.status != S.ACCEPTED or study.subject_id is None or study.visit_id is None:
        return
    try:
        tasks_create_for_timepoint(subject=study.subject, visit=study.visit)
    except ReadsError:
        # no two qualified readers yet, or the subject's reader left: the sweeper retries, managers see why
        log.warning("read tasks for study %s not created", study_id, exc_info=True)
    except Exception:  # noqa: BLE001 - QC's acceptance has committed; the sweeper retries this timepoint
        log.exception("read tasks for study %s failed; the sweeper will retry", study_id)


def on_study_status_changed(sender, *, study_id: int, before: str, after: str, **kwargs) -> None:
    """intake.signals.study_status_changed: accepted → tasks for its timepoint; superseded → re-reads."""
    from .services import reread_on_supersede

    if after == S.ACCEPTED:
        timepoint_tasks_ensure(study_id)
    elif after == S.SUPERSEDED:
        try:
            reread_on_supersede(study_id=study_id)
        except Exception:  # noqa: BLE001 - the supersede has committed; the failure must be seen, not raised
            log.exception("re-reads after study %s was superseded failed", study_id)


def timepoints_without_tasks(cutoff: datetime) -> list[int]:
    """Accepted studies (one per timepoint) since before ``cutoff`` whose timepoint is ready but has no task."""
    from .models import ReadTask
    from .services import timepoint_ready

    rows = (ImagingStudy.objects.filter(status=S.ACCEPTED, status_changed_at__lt=cutoff, subject__isnull=False,
                                        visit__isnull=False)
            .exclude(visit__read_tasks__status__in=ReadTask.LIVE).select_related("visit").order_by("visit_id", "pk"))
    found, seen = [], set()
    for study in rows:
        if study.visit_id not in seen and timepoint_ready(visit=study.visit):
            found.append(study.pk)
        seen.add(study.visit_id)
    return found
