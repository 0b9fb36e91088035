"""Every de-identification write: profile versions, one instance through the engine, the quarantine purge.

An instance goes RECEIVED (or FAILED, or DEIDENTIFYING left by a killed worker) -> DEIDENTIFYING ->
DEIDENTIFIED (released to the archive) or FAILED (held: the output stays in quarantine, out of the
archive). Three short steps, none holding a transaction while the engine runs:

1. claim (transaction): status moves, the profile version is fixed;
2. engine (no transaction): read quarantine, de-identify, verify, write the output under a
   deterministic key (an existing identical object is accepted, a different one refused);
3. record (transaction): DeidRecord, Instance output fields, status, audit event, and the study moves
   forward when it was the last one.

A session-level advisory lock per instance keeps two workers off the same file; PostgreSQL drops it
when a killed worker's connection goes, so the redelivered task (or the sweeper's) simply starts again
at step 1. The unique (instance, profile) constraint backs up "one record".
"""

import hashlib
import io
import logging
from collections import Counter
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime, timedelta

import pydicom
from django.core.files.storage import storages
from django.db import connection, transaction
from django.utils import timezone

from audit.services import audit_record
from config.errors import ConflictError, DomainError
from config.objects import ObjectConflict, sha256_of, store_once
from deid.engine import OPTIONS, Profile
from intake.models import ImagingStudy, Instance
from intake.services import instance_transition, study_transition
from trials.models import Trial
from trials.permissions import Perm, ensure, has_perm, require

from . import pipeline, signals
from .exceptions import ArchiveConflict, ProfileInvalid
from .keys import subject_keys
from .models import DeidProfile, DeidRecord
from .selectors import DEID_STUDY_STATUSES, Preview, preview_rows

log = logging.getLogger(__name__)

S, IS = ImagingStudy.Status, Instance.Status
# a study in these moves back to DEIDENTIFYING when another of its instances is claimed
_REOPEN = (S.RECEIVED, S.DEIDENTIFIED, S.QC_PENDING)
_PROFILE_LOCK = 0x6465_6964_0100_0000  # + trial id: numbering a trial's profile versions
_INSTANCE_LOCK = 0x6465_6964_0000_0000  # + instance id: one worker per instance


# -- profiles -----------------------------------------------------------------------------------------------

def engine_profile(profile: DeidProfile) -> Profile:
    """The engine's Profile for a stored version."""
    return Profile(options=frozenset(profile.options),
                   safe_private=frozenset((creator, int(offset)) for creator, offset in profile.safe_private))


def _element(value) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip().lower().removeprefix("0x")
    try:
        return int(text, 16)
    except ValueError:
        raise ProfileInvalid(f"safe-private element {value!r} is not a number (0x00-0xFF)") from None


def _clean_regions(regions: Iterable[dict]) -> list[dict]:
    cleaned = []
    for number, region in enumerate(regions):
        where = f"pixel region {number + 1}"
        if not isinstance(region, dict) or set(region) - {"manufacturer", "model", "rows", "columns", "boxes"}:
            raise ProfileInvalid(f"{where}: keys are manufacturer, model, rows, columns and boxes")
        boxes = region.get("boxes") or []
        if not boxes:
            raise ProfileInvalid(f"{where}: give at least one box [x, y, width, height]")
        for box in boxes:
            if (not isinstance(box, list | tuple) or len(box) != 4 or any(not isinstance(v, int) for v in box)
                    or box[0] < 0 or box[1] < 0 or box[2] <= 0 or box[3] <= 0):
                raise ProfileInvalid(f"{where}: a box is [x, y, width, height] in pixels, not {box!r}")
        for size in ("rows", "columns"):
            if region.get(size) is not None and (not isinstance(region[size], int) or region[size] <= 0):
                raise ProfileInvalid(f"{where}: {size} is a positive number of pixels")
        cleaned.append({"manufacturer": str(region.get("manufacturer") or "").strip(),
                        "model": str(region.get("model") or "").strip(),
                        "rows": region.get("rows"), "columns": region.get("columns"),
                        "boxes": [list(box) for box in boxes]})
    return cleaned


def profile_ocr(profile: DeidProfile) -> pipeline.Ocr | None:
    """The pipeline's OCR settings for a stored version; None when the version switches OCR off."""
    return pipeline.Ocr(min_confidence=float(profile.ocr_min_confidence)) if profile.ocr_text_review else None


def _lock_trial_profiles(trial_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PROFILE_LOCK + trial_id])


@transaction.atomic
def profile_create_version(*, actor, trial, options: Iterable[str] = (), safe_private: Iterable = (),
                           pixel_regions: Iterable[dict] = (), purge_raw_after_days: int | None = None,
                           ocr_text_review: bool | None = None, ocr_min_confidence: int | None = None,
                           note: str = "") -> DeidProfile:
    """Make version n+1 the trial's profile (trial managers; None: the system). Audited; never edits one.

    The OCR settings left as None carry over from the previous version (version 1: on, confidence 70),
    so an editor that does not show them never switches OCR back on or off by accident.
    """
    if actor is not None:
        ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    options = sorted(set(options))
    unknown = [name for name in options if name not in OPTIONS]
    if unknown:
        raise ProfileInvalid(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}")
    allow = sorted({(str(creator).strip(), _element(element)) for creator, element in safe_private})
    regions = _clean_regions(pixel_regions)
    if regions and "clean_pixel_data" not in options:
        raise ProfileInvalid("pixel regions are blanked only under the clean_pixel_data option: switch it on")
    if purge_raw_after_days is not None and (not isinstance(purge_raw_after_days, int) or purge_raw_after_days < 0):
        raise ProfileInvalid("purge_raw_after_days is a number of days (0 or more), or empty to keep raw files")
    if ocr_text_review is not None and not isinstance(ocr_text_review, bool):
        raise ProfileInvalid("ocr_text_review is true or false")
    if ocr_min_confidence is not None and (isinstance(ocr_min_confidence, bool) or not isinstance(
            ocr_min_confidence, int) or not 0 <= ocr_min_confidence <= 100):
        raise ProfileInvalid("ocr_min_confidence is a Tesseract confidence from 0 to 100")
    try:
        Profile(options=frozenset(options), safe_private=frozenset(allow))
    except ValueError as exc:
        raise ProfileInvalid(str(exc)) from None
    _lock_trial_profiles(trial.pk)
    previous = DeidProfile.objects.filter(trial=trial).order_by("-version").first()
    if ocr_text_review is None:
        ocr_text_review = previous.ocr_text_review if previous else True
    if ocr_min_confidence is None:
        ocr_min_confidence = previous.ocr_min_confidence if previous else 70
    profile = DeidProfile.objects.create(
        trial=trial, version=previous.version + 1 if previous else 1, options=options,
        safe_private=[list(entry) for entry in allow], pixel_regions=regions,
        purge_raw_after_days=purge_raw_after_days, ocr_text_review=ocr_text_review,
        ocr_min_confidence=ocr_min_confidence, note=note.strip(), created_by=actor)
    settings = {"options": options, "safe_private": profile.safe_private, "pixel_regions": regions,
                "purge_raw_after_days": purge_raw_after_days, "ocr_text_review": ocr_text_review,
                "ocr_min_confidence": ocr_min_confidence}
    changed = sorted(name for name, value in settings.items()
                     if previous is None or getattr(previous, name) != value)
    audit_record(actor=actor, action="deid.profile_version_created", target=profile, trial_id=trial.pk,
                 reason=note.strip() or None,
                 details={"version": profile.version, "previous": previous.version if previous else None,
                          "changed": changed, **settings})
    return profile


def profile_current(*, trial) -> DeidProfile:
    """The trial's current profile version; the first time it is needed, version 1: the Basic Profile."""
    profile = DeidProfile.objects.filter(trial=trial).order_by("-version").first()
    if profile is not None:
        return profile
    with transaction.atomic():
        _lock_trial_profiles(trial.pk)
        profile = DeidProfile.objects.filter(trial=trial).order_by("-version").first()
        if profile is None:
            profile = profile_create_version(
                actor=None, trial=trial,
                note="default: Basic Application Level Confidentiality Profile, no options; raw files kept")
    return profile


# -- one instance -------------------------------------------------------------------------------------------

@contextmanager
def _lease(instance_id: int):
    """True while this connection holds the instance's lock, False when another live worker has it."""
    key = _INSTANCE_LOCK + instance_id
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def archive_key(*, instance: Instance, profile: DeidProfile) -> str:
    """Where an instance's released output lives: one object per instance and profile version."""
    return f"{instance.study.trial_id}/{instance.study_id}/{instance.series_id}/{instance.pk}.v{profile.version}.dcm"


def held_key(*, instance: Instance, profile: DeidProfile) -> str:
    """Where a held output waits for QC: in quarantine, since verification found something left in it."""
    return f"held/{archive_key(instance=instance, profile=profile)}"


def _store(storage, key: str, data: bytes, sha256: str) -> str:
    """Write a new object under ``key``; an identical one already there (an earlier attempt) is kept."""
    try:
        return store_once(storage, key, data, sha256)
    except ObjectConflict as exc:
        raise ArchiveConflict(f"{key} already holds other bytes; outputs are never overwritten") from exc


def _claim(instance_id: int) -> tuple[Instance, DeidProfile] | DeidRecord | None:
    """Step 1: what to de-identify with which profile, or the record that already answers, or None."""
    with transaction.atomic():
        instance = (Instance.objects.select_related("study__subject", "study__trial", "series")
                    .filter(pk=instance_id).first())
        if instance is None:
            return None
        study = instance.study
        if instance.status == IS.DEIDENTIFIED:
            return instance.deid_records.filter(outcome=DeidRecord.Outcome.RELEASED).first()
        if study.subject_id is None or study.status not in DEID_STUDY_STATUSES:
            return None  # unassigned studies wait for their subject; closed ones are not reopened
        profile = profile_current(trial=study.trial)
        existing = DeidRecord.objects.filter(instance=instance, profile=profile).first()
        if existing is not None:
            return existing  # held or refused under this version: a new version or QC decides, not a retry
        study = ImagingStudy.objects.select_for_update().get(pk=study.pk)  # study before instance, always
        if study.status not in DEID_STUDY_STATUSES:
            return None  # rejected a moment ago
        if study.status in _REOPEN:
            study_transition(actor=None, study=study, to=S.DEIDENTIFYING,
                             reason="instances to de-identify" if study.status == S.RECEIVED
                             else "more instances arrived")
        if instance.status in (IS.RECEIVED, IS.FAILED):
            instance = instance_transition(actor=None, instance=instance, to=IS.DEIDENTIFYING,
                                           details={"profile_version": profile.version})
        return instance, profile


def instance_deidentify(*, instance_id: int) -> DeidRecord | None:
    """De-identify one received instance with its trial's current profile; the system's act.

    Idempotent: an instance done under the current version returns its record; one another worker is
    on returns None. Storage errors propagate (the task retries them); a file the engine refuses or
    that fails verification is recorded and held, never retried under the same profile version.
    """
    with _lease(instance_id) as held:
        if not held:
            return None
        claimed = _claim(instance_id)
        if not isinstance(claimed, tuple):
            return claimed
        instance, profile = claimed
        study = instance.study
        with storages["quarantine"].open(instance.raw_key, "rb") as stream:
            raw = stream.read()
        raw_sha256 = hashlib.sha256(raw).hexdigest()
        if raw_sha256 != instance.raw_sha256:
            result = pipeline.Result(error="the raw object in quarantine does not match its recorded sha256")
        else:
            result = pipeline.run(raw, profile=engine_profile(profile),
                                  keys=subject_keys(trial=study.trial, subject_code=study.subject.code),
                                  subject_code=study.subject.code, pixel_regions=profile.pixel_regions,
                                  ocr=profile_ocr(profile))
        del raw
        storage_name, key = "", ""
        if result.output is not None:
            storage_name = "archive" if result.passed else "quarantine"
            key = (archive_key if result.passed else held_key)(instance=instance, profile=profile)
            _store(storages[storage_name], key, result.output, result.sha256)
        return _record(instance=instance, profile=profile, result=result, raw_sha256=raw_sha256,
                       storage_name=storage_name, key=key)


def _record(*, instance: Instance, profile: DeidProfile, result: pipeline.Result, raw_sha256: str,
            storage_name: str, key: str) -> DeidRecord:
    """Step 3: the record, the instance's output fields and status, the audit event, the study's move."""
    outcome = (DeidRecord.Outcome.RELEASED if result.passed
               else DeidRecord.Outcome.HELD if result.output is not None else DeidRecord.Outcome.ERROR)
    with transaction.atomic():
        study = (ImagingStudy.objects.select_for_update(of=("self",)).select_related("subject")
                 .get(pk=instance.study_id))
        record, created = DeidRecord.objects.get_or_create(
            instance=instance, profile=profile,
            defaults={"outcome": outcome, "action_counts": result.action_counts,
                      "removed_private": result.removed_private, "uids_mapped": result.uids_mapped,
                      "dates_shifted": result.dates_shifted, "pixel_boxes": result.pixel_boxes,
                      "duration_ms": result.duration_ms,
                      "verification_passed": None if result.output is None else result.passed,
                      "findings": result.error or "\n".join(result.findings), "raw_sha256": raw_sha256,
                      "output_storage": storage_name, "output_key": key, "output_sha256": result.sha256,
                      "output_size": len(result.output) if result.output is not None else None,
                      "study_uid": result.uids[0], "series_uid": result.uids[1], "sop_uid": result.uids[2],
                      "text_boxes": result.text_boxes,
                      "held_key": key if outcome == DeidRecord.Outcome.HELD else ""})
        if not created:
            return record
        details = {"profile_version": profile.version, "record": record.pk, "raw_sha256": raw_sha256,
                   "deid_sha256": result.sha256, "size": record.output_size, "verification": outcome,
                   "actions": result.action_counts, "removed_private": result.removed_private,
                   "duration_ms": result.duration_ms}
        where = {"target": instance, "trial_id": study.trial_id, "site_id": study.site_id,
                 "subject_id": study.subject_id, "subject_code": study.subject.code}
        if outcome == DeidRecord.Outcome.RELEASED:
            _release(actor=None, record=record, study=study)
            audit_record(actor=None, action="deid.instance_deidentified", details=details, **where)
        else:
            reason = result.error or f"verification failed: {len(result.findings)} finding(s)"
            instance_transition(actor=None, instance=instance, to=IS.FAILED,
                                details={"profile_version": profile.version, "reason": reason[:300]})
            audit_record(actor=None, action="deid.instance_held",
                         details={**details, "reason": reason[:300], "findings": result.findings[:50],
                                  "pixel_review": result.pixel_review, "text_boxes": len(result.text_boxes)},
                         **where)
            transaction.on_commit(lambda: signals.instance_held.send(sender=DeidRecord, record_id=record.pk))
    return record


def _release(*, actor, record: DeidRecord, study: ImagingStudy) -> None:
    """The one way an output becomes the instance's: fields, status, and the study forward when complete.

    Inside the caller's transaction, with the study locked; ``record`` already names the archive object.
    A held instance (FAILED) goes through DEIDENTIFYING, the only road the status machine has.
    """
    row = Instance.objects.select_for_update().get(pk=record.instance_id)
    row.deid_key, row.deid_sha256, row.deid_size = record.output_key, record.output_sha256, record.output_size
    row.save(update_fields=["deid_key", "deid_sha256", "deid_size"])
    moved = {"profile_version": record.profile.version, "deid_sha256": record.output_sha256}
    if row.status == IS.FAILED:
        row = instance_transition(actor=actor, instance=row, to=IS.DEIDENTIFYING,
                                  details={**moved, "reason": "released by QC review"})
    instance_transition(actor=actor, instance=row, to=IS.DEIDENTIFIED, details=moved)
    if study.status == S.DEIDENTIFYING and not study.instances.exclude(status=IS.DEIDENTIFIED).exists():
        study_transition(actor=actor, study=study, to=S.DEIDENTIFIED,
                         reason="every instance de-identified and verified" if actor is None
                         else "every instance de-identified; held files released by QC review",
                         details={"profile_version": record.profile.version})
        transaction.on_commit(lambda: signals.study_deidentified.send(sender=ImagingStudy, study_id=study.pk))


def series_pending(*, series_id: int) -> list[int]:
    """Instances of the series still to de-identify (their study assigned and open), oldest first."""
    return list(Instance.objects.filter(
        series_id=series_id, status__in=(IS.RECEIVED, IS.DEIDENTIFYING, IS.FAILED),
        study__subject__isnull=False, study__status__in=DEID_STUDY_STATUSES,
    ).order_by("pk").values_list("pk", flat=True))


def series_deidentify(*, series_id: int) -> dict[str, int]:
    """De-identify every pending instance of a series, one short transaction pair each; idempotent.

    Returns counts by outcome of the records made or found ("skipped": another worker's, or waiting).
    """
    counts = {"released": 0, "held": 0, "error": 0, "skipped": 0}
    for instance_id in series_pending(series_id=series_id):
        record = instance_deidentify(instance_id=instance_id)
        counts[record.outcome if record is not None else "skipped"] += 1
    return counts


# -- QC review of held outputs ------------------------------------------------------------------------------
# A held output waits in quarantine under held_key. A QC reviewer of the trial looks at it (the de-identified
# output, never the raw file) with OCR's boxes drawn on it and releases it (no PHI: the same release as the
# engine's, through _release) or rejects it (it stays out of the archive; the site's PHI query stays open).
# The reads the QC pages need are here too, beside the writes that share their rules.

class HeldReviewError(DomainError):
    """A held output cannot be reviewed as asked; the message says why."""


class HeldReviewConflict(ConflictError):
    """The held output is no longer in a state that allows this act (released, rejected, superseded)."""


REVIEW_REASON_MAX = 2000


def held_output_read(*, record: DeidRecord) -> bytes:
    """The held (de-identified) output's bytes from quarantine, checked against the recorded sha256."""
    if not record.held_key:
        raise HeldReviewError("no output was kept for this file: there is no image to review")
    with storages["quarantine"].open(record.held_key, "rb") as stream:
        data = stream.read()
    if hashlib.sha256(data).hexdigest() != record.output_sha256:
        raise HeldReviewError("the held output in quarantine does not match its recorded sha256; it cannot be "
                              "reviewed or released")
    return data


def _review_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise HeldReviewError("give a reason: it is recorded with the decision in the audit trail")
    if len(reason) > REVIEW_REASON_MAX:
        raise HeldReviewError(f"keep the reason under {REVIEW_REASON_MAX} characters")
    return reason


def _check_held(record: DeidRecord, *, releasing: bool) -> None:
    if record.outcome != DeidRecord.Outcome.HELD:
        raise HeldReviewConflict(f"this file is {record.get_outcome_display().lower()}: there is nothing to review")
    newer = DeidRecord.objects.filter(instance_id=record.instance_id, profile__version__gt=record.profile.version)
    if newer.exists():
        raise HeldReviewConflict("a newer profile version has de-identified this file since; review that record")
    if not releasing:
        return
    findings = [line for line in record.findings.splitlines() if line.strip()]
    if not pipeline.reviewable(findings):
        raise HeldReviewError("this file was held for what its header holds, not only for its pixels; a look at "
                              "the image cannot clear that. Reject it, or change the profile and de-identify again")
    instance = Instance.objects.only("status").get(pk=record.instance_id)
    if instance.status != IS.FAILED:
        raise HeldReviewConflict(f"the instance is {instance.get_status_display().lower()}: it cannot be released")


def _review(record: DeidRecord, *, reviewer, reason: str, outcome: str, **fields) -> None:
    record.outcome, record.reviewed_by, record.reviewed_at, record.review_reason = (
        outcome, reviewer, timezone.now(), reason)
    for name, value in fields.items():
        setattr(record, name, value)
    record.save(update_fields=["outcome", "reviewed_by", "reviewed_at", "review_reason", *fields])


def held_release(*, reviewer, record: DeidRecord, reason: str) -> DeidRecord:
    """A QC reviewer confirms a held output shows no PHI: it is archived and released like any other. Audited.

    QC reviewers of the trial only; a reason is required. Only outputs held for their pixels alone
    (OCR text, an uncleaned burned-in annotation) can be released: a header finding is a leak that a
    look at the image cannot clear. The output is copied (never rewritten) to its archive key with its
    sha256 checked; the held copy stays in quarantine. A second call is refused: the record is released.
    """
    reason = _review_reason(reason)
    study = record.instance.study
    ensure(user=reviewer, perm=Perm.QC_REVIEW, trial_id=study.trial_id)
    _check_held(record, releasing=True)
    if study.status not in DEID_STUDY_STATUSES:
        raise HeldReviewConflict(f"the study is {study.get_status_display().lower()}: nothing is released into it")
    data = held_output_read(record=record)
    key = archive_key(instance=record.instance, profile=record.profile)
    _store(storages["archive"], key, data, record.output_sha256)  # an identical object there is accepted
    del data
    with transaction.atomic():
        study = ImagingStudy.objects.select_for_update(of=("self",)).get(pk=study.pk)  # study before record
        record = (DeidRecord.objects.select_for_update(of=("self",)).select_related("profile", "instance")
                  .get(pk=record.pk))
        _check_held(record, releasing=True)
        if study.status not in DEID_STUDY_STATUSES:
            raise HeldReviewConflict(f"the study is {study.get_status_display().lower()}: nothing is released "
                                     "into it")
        _review(record, reviewer=reviewer, reason=reason, outcome=DeidRecord.Outcome.RELEASED,
                output_storage="archive", output_key=key)
        _release(actor=reviewer, record=record, study=study)
        audit_record(actor=reviewer, action="deid.held_released", target=record.instance,
                     trial_id=study.trial_id, site_id=study.site_id, subject_id=study.subject_id, reason=reason,
                     details={"record": record.pk, "profile_version": record.profile.version,
                              "deid_sha256": record.output_sha256, "archive_key": key, "held_key": record.held_key,
                              "text_boxes": len(record.text_boxes),
                              "findings": record.findings.splitlines()[:50]})
    return record


@transaction.atomic
def held_reject(*, reviewer, record: DeidRecord, reason: str) -> DeidRecord:
    """A QC reviewer confirms a held output is not fit to release: it stays out of the archive. Audited.

    QC reviewers of the trial only; a reason is required. The instance stays failed and the output stays
    in quarantine; the PHI query raised to the site when the file was held stays open for a resend.
    """
    reason = _review_reason(reason)
    ensure(user=reviewer, perm=Perm.QC_REVIEW, trial_id=record.instance.study.trial_id)
    record = (DeidRecord.objects.select_for_update(of=("self",)).select_related("profile", "instance__study")
              .get(pk=record.pk))
    _check_held(record, releasing=False)
    _review(record, reviewer=reviewer, reason=reason, outcome=DeidRecord.Outcome.REJECTED)
    study = record.instance.study
    audit_record(actor=reviewer, action="deid.held_rejected", target=record.instance, trial_id=study.trial_id,
                 site_id=study.site_id, subject_id=study.subject_id, reason=reason,
                 details={"record": record.pk, "profile_version": record.profile.version,
                          "deid_sha256": record.output_sha256, "held_key": record.held_key,
                          "text_boxes": len(record.text_boxes), "findings": record.findings.splitlines()[:50]})
    return record


# -- quarantine purge ---------------------------------------------------------------------------------------

def quarantine_purge(*, now: datetime | None = None) -> int:
    """Delete raw files whose verified output is in the archive once each trial's retention allows; audited.

    Retention is the trial's current profile's ``purge_raw_after_days`` (empty: keep). The archive
    object is re-hashed first: the original's only copy never goes unless its output is really there.
    Returns the number of raw files deleted. Safe to run concurrently (rows are taken with SKIP LOCKED).
    """
    now = now or timezone.now()
    purged = 0
    current = DeidProfile.objects.order_by("trial_id", "-version").distinct("trial_id")
    for profile in current:
        if profile.purge_raw_after_days is None:
            continue
        cutoff = now - timedelta(days=profile.purge_raw_after_days)
        due = DeidRecord.objects.filter(
            instance__study__trial_id=profile.trial_id, outcome=DeidRecord.Outcome.RELEASED,
            verification_passed=True, raw_purged_at__isnull=True, instance__status=IS.DEIDENTIFIED,
            created_at__lte=cutoff).order_by("pk").values_list("pk", flat=True)
        for record_id in list(due):
            purged += _purge_one(record_id=record_id, now=now, retention_days=profile.purge_raw_after_days)
    return purged


def _purge_one(*, record_id: int, now: datetime, retention_days: int) -> int:
    with transaction.atomic():
        record = (DeidRecord.objects.select_for_update(skip_locked=True, of=("self",))
                  .select_related("instance__study", "profile").filter(pk=record_id, raw_purged_at__isnull=True)
                  .first())
        if record is None:
            return 0
        instance = record.instance
        try:
            intact = sha256_of(storages["archive"], record.output_key) == record.output_sha256
        except OSError:
            intact = False
        if not intact:
            log.error("not purging the raw file of instance %s: its archived output is missing or altered",
                      instance.pk)
            return 0
        record.raw_purged_at = now
        record.save(update_fields=["raw_purged_at"])
        audit_record(actor=None, action="deid.raw_purged", target=instance, trial_id=instance.study.trial_id,
                     site_id=instance.study.site_id, subject_id=instance.study.subject_id,
                     details={"raw_sha256": instance.raw_sha256, "raw_size": instance.raw_size,
                              "deid_sha256": record.output_sha256, "profile_version": record.profile.version,
                              "retention_days": retention_days})
        # last, inside the transaction: if the commit fails the row says "not purged" and the next run
        # deletes again (deleting a missing object is a no-op), so a purge is never left unrecorded
        storages["quarantine"].delete(instance.raw_key)
    return 1


# -- mapping export -----------------------------------------------------------------------------------------

@transaction.atomic
def mapping_export(*, user, trial) -> list[dict]:
    """The trial's original-hash -> pseudonym rows for its managers; the export itself is audited."""
    from .selectors import mapping_rows

    rows = list(mapping_rows(user=user, trial=trial))
    audit_record(actor=user, action="deid.mapping_exported",
                 target=("deid.mapping", trial.pk, f"{trial.protocol_number} pseudonym mapping"),
                 trial_id=trial.pk, details={"rows": len(rows)})
    return rows


# -- the profile page's preview ------------------------------------------------------------------------

@transaction.atomic
def profile_preview(*, user, trial: Trial, raw: bytes, source: str, options: Iterable[str],
                    safe_private: Iterable, pixel_regions: list[dict], version: int | None,
                    subject_code: str) -> Preview:
    """Run ``raw`` through the engine with the trial's real keys and show it tag by tag (trial managers).

    An audited read, like the mapping export: the event (deid.profile_previewed) holds the file's size,
    sha256 and counts, never a value from it. The original column is filled only for VIEW_QUARANTINE.
    """
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    options = sorted(options)
    profile = Profile(options=frozenset(options),
                      safe_private=frozenset((str(c), int(e)) for c, e in safe_private))
    result = pipeline.run(raw, profile=profile, keys=subject_keys(trial=trial, subject_code=subject_code),
                          subject_code=subject_code, pixel_regions=pixel_regions)
    preview = Preview(source=source, version=version, options=options, size=len(raw),
                      sha256=hashlib.sha256(raw).hexdigest(),
                      show_original=has_perm(user=user, perm=Perm.VIEW_QUARANTINE, trial_id=trial.pk),
                      subject_code=subject_code, findings=result.findings, error=result.error,
                      passed=result.passed)
    if result.output is not None:
        try:
            preview.rows = preview_rows(original=pydicom.dcmread(io.BytesIO(raw)),
                                        output=pydicom.dcmread(io.BytesIO(result.output)),
                                        show_original=preview.show_original)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # a malformed element pydicom can copy but not decode: the verification result still stands
            preview.error = f"the files cannot be compared tag by tag ({type(exc).__name__})"
        preview.counts = dict(sorted(Counter(row.action for row in preview.rows).items()))
    outcome = "error" if result.output is None else "passed" if result.passed else "failed"
    current = DeidProfile.objects.filter(trial=trial).order_by("-version").first()
    audit_record(actor=user, action="deid.profile_previewed",
                 target=current or ("deid.profile", trial.pk, f"{trial.protocol_number} de-identification profile"),
                 trial_id=trial.pk,
                 details={"source": source, "profile_version": version, "options": options, "size": len(raw),
                          "sha256": preview.sha256, "attributes": len(preview.rows), "actions": preview.counts,
                          "findings": len(result.findings), "verification": outcome,
                          "original_shown": preview.show_original})
    return preview
