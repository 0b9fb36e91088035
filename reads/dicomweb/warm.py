"""Warming the DICOMweb caches when de-identification releases a study.

The viewer's first look at a series asks for the metadata of every instance in it; a header read from the
archive costs a file open and a parse, which for a 500-slice CT is seconds, and turning 500 cached headers
into the metadata answer most of another. De-identification tells us when a study's files are final
(``deid.signals.study_deidentified``, sent on commit), so a worker does both then, and the first person to
open the study finds them in Redis.

Nothing here is regulated data: the cache is a copy of what the archive holds, keyed by the file's sha256, so
warming writes no audit event, may run any number of times, and a failure only costs the first viewer time.
"""

import dataclasses
import logging

from celery import shared_task
from django.db.models import F

from deid.models import DeidRecord
from intake.models import Instance

from .selectors import HEADER_CACHE_PREFIX, InstanceRow, headers_for
from .views import metadata_body

log = logging.getLogger(__name__)
BATCH = 100  # headers per cache write: few round trips, and a failure costs one batch re-read singly


def study_rows(*, study_id: int) -> list[InstanceRow]:
    """The study's instances as DICOMweb serves them (released into the archive, still the instance's current
    output, in the same order), whoever asks: warming is not a request, and no cache key depends on the user."""
    records = (DeidRecord.objects
               .filter(outcome=DeidRecord.Outcome.RELEASED, output_storage="archive", instance__study_id=study_id,
                       instance__status=Instance.Status.DEIDENTIFIED, instance__deid_key=F("output_key"))
               .exclude(study_uid="").exclude(output_sha256="")
               .order_by("study_uid", "series_uid", "instance_id")  # as instance_rows_for_user lists them
               .values_list("instance_id", "instance__study_id", "instance__study__trial_id", "study_uid",
                            "series_uid", "sop_uid", "output_key", "output_sha256", "output_size"))
    return [InstanceRow(*row, blinded=False) for row in records]


def study_headers_warm(*, study_id: int) -> dict:
    """Read into the header cache every released archive header of the study that is not there yet, then
    build each series' metadata answer (``views.metadata_body``) unless it is cached already.

    Idempotent; when everything is cached it costs a few Redis round trips. A file that cannot be read is
    logged and skipped, so one damaged object does not leave the rest of the study cold (its series' metadata
    is left to the first request, which then reports the damage). Returns counts for the log and the
    benchmark: ``{"instances": n, "read": headers cached now, "failed": files unreadable, "series": n}``."""
    from django.core.cache import cache

    rows = study_rows(study_id=study_id)
    cached = cache.get_many([HEADER_CACHE_PREFIX + row.sha256 for row in rows])
    missing = [row for row in rows if HEADER_CACHE_PREFIX + row.sha256 not in cached]
    read = failed = 0
    for start in range(0, len(missing), BATCH):
        batch = missing[start:start + BATCH]
        try:
            headers_for(batch)
            read += len(batch)
            continue
        except Exception:  # noqa: BLE001 - find the culprit below, one file at a time
            pass
        for row in batch:
            try:
                headers_for([row])
                read += 1
            except Exception:  # noqa: BLE001 - logged with the object's name; the viewer reports it if asked
                failed += 1
                log.exception("cannot read the header of archived %s (instance %s)", row.key, row.instance_id)
    series = 0
    if not failed:
        # each series' metadata as the viewer asks for it, as oversight and as a blinded reader see it
        by_series: dict[tuple[str, str], list[InstanceRow]] = {}
        for row in rows:
            by_series.setdefault((row.study_uid, row.series_uid), []).append(row)
        for members in by_series.values():
            for blinded in (False, True):
                metadata_body([dataclasses.replace(row, blinded=blinded) for row in members])
            series += 1
    return {"instances": len(rows), "read": read, "failed": failed, "series": series}


@shared_task(name="reads.study_headers_warm", acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             soft_time_limit=600, time_limit=660)
def study_headers_warm_task(study_id: int) -> None:
    """Warm the header cache of a released study. Failures are logged, not retried: the cache is only a
    shortcut, and a viewer that finds it cold reads the headers itself."""
    try:
        counts = study_headers_warm(study_id=study_id)
    except Exception:  # noqa: BLE001 - a missing file or a Redis hiccup must not look like lost work
        log.exception("warming the DICOMweb header cache of study %s failed", study_id)
        return
    log.info("DICOMweb cache of study %s: %s instances, %s headers read, %s unreadable, %s series", study_id,
             counts["instances"], counts["read"], counts["failed"], counts["series"])


def on_study_deidentified(sender, *, study_id: int, **kwargs) -> None:
    """deid.signals.study_deidentified (sent on commit): enqueue the warming, never fail the sender."""
    try:
        study_headers_warm_task.delay(study_id)
    except Exception:  # noqa: BLE001 - broker down: the first viewer reads the headers itself
        log.exception("could not enqueue warming the header cache of study %s", study_id)
