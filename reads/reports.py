"""Measurement reports: a signed read's viewer measurements as DICOM SR (``reads.sr``), stored with the study.

When a read is signed or corrected, ``measurement_reports_plan`` (inside the signing transaction) records one
pending MeasurementReport per study its target lesions were measured on, with its UIDs fixed, and queues
``reads.measurement_report_make`` after commit. ``measurement_report_make`` (the system's act, idempotent)
reads the headers of the archived de-identified images measured on, builds the report, writes it to the
archive storage as a new object (never over another), and records ``reads.measurement_report_stored`` with
its sha256 and SOP Instance UID. A report that cannot be made (a source image missing from the archive, bytes
of another report under its key) is marked failed with the reason and ``reads.measurement_report_failed``;
the signature it came from is never touched. Storage errors are retried by the task; the sweeper re-enqueues
reports left pending.

Also here: which archived images belong to a read task's timepoint (the annotation integrity check of
``reads.services``), and the audited download.
"""

import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import pydicom
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import F
from django.http import Http404
from django.utils import timezone

from audit.services import audit_record
from config.errors import ConflictError
from config.objects import ObjectConflict, store_once
from deid.engine.pseudonyms import map_uid
from deid.models import DeidRecord
from intake.models import ImagingStudy, Instance
from trials.keys import trial_key
from trials.permissions import Perm, has_perm

from . import sr
from .exceptions import InvalidAssessment
from .models import MeasurementReport, Read, ReadTask

log = logging.getLogger(__name__)
R = MeasurementReport.Status
TASK_NAME = "reads.measurement_report_make"
# the SDTM evaluator of each slot, as reads.sdtm abbreviates it in link ids (TULNKID "R1-T1")
SLOT_TAGS = {ReadTask.Slot.A: "R1", ReadTask.Slot.B: "R2"}


def lesion_link_id(*, slot: str, lesion_id: str) -> str:
    """The lesion's SDTM link id (TULNKID/TRLNKID), which is also its SR Tracking Identifier."""
    return f"{SLOT_TAGS[slot]}-{lesion_id}"


def _uid(*, trial, name: str) -> str:
    # keyed by the deployment's secret through the trial key: unique to this installation, stable for a name
    return map_uid(f"corelab:{name}", key=trial_key(trial=trial, purpose="measurement-report"))


def tracking_uid(*, task: ReadTask, lesion_id: str) -> str:
    """The lesion's Tracking UID: the same for one reader's lesion at every timepoint and in every version."""
    return _uid(trial=task.trial, name=f"tracking:{task.subject_id}:{task.reader_id}:{task.slot}:{lesion_id}")


# -- the archived images of a timepoint ----------------------------------------------------------------------

@dataclass(frozen=True)
class ArchivedImage:
    study_id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    key: str
    sha256: str


def _archived(**filters) -> list[ArchivedImage]:
    """Released de-identified instances whose current archive object is the record's output."""
    rows = (DeidRecord.objects
            .filter(outcome=DeidRecord.Outcome.RELEASED, output_storage="archive",
                    instance__status=Instance.Status.DEIDENTIFIED, instance__deid_key=F("output_key"), **filters)
            .exclude(sop_uid="").order_by("instance_id")
            .values_list("instance__study_id", "study_uid", "series_uid", "sop_uid", "output_key", "output_sha256"))
    return [ArchivedImage(*row) for row in rows]


def timepoint_images(*, task: ReadTask, sop_uids) -> dict[str, ArchivedImage]:
    """The archived images among ``sop_uids`` of the task's subject and visit's accepted studies."""
    studies = ImagingStudy.objects.filter(subject_id=task.subject_id, visit_id=task.visit_id,
                                          status=ImagingStudy.Status.ACCEPTED).values("pk")
    found = {}
    for image in _archived(instance__study__in=studies, sop_uid__in=list(sop_uids)):
        found.setdefault(image.sop_uid, image)
    return found


def annotations_check_images(*, task: ReadTask, lesions: dict) -> dict[str, ArchivedImage]:
    """Every measurement drawn in the viewer is on an image of this timepoint (the visit's accepted studies of
    this subject), with the study and series it names. Raises InvalidAssessment naming the lesion."""
    annotations = lesions.get("annotations") if isinstance(lesions, dict) else None
    if not isinstance(annotations, dict) or not annotations:
        return {}
    images = timepoint_images(task=task, sop_uids={g["sop_uid"] for g in annotations.values()})
    for lesion_id in sorted(annotations):
        geometry = annotations[lesion_id]
        image = images.get(geometry["sop_uid"])
        if image is None or (image.study_uid, image.series_uid) != (geometry["study_uid"], geometry["series_uid"]):
            raise InvalidAssessment(f"the measurement of {lesion_id} is not on an image of this timepoint "
                                    f"({task.visit.label}): measure it again on this timepoint's images")
    return images


# -- planning (inside the signing transaction) ---------------------------------------------------------------

def measurement_reports_plan(*, read: Read) -> list[MeasurementReport]:
    """Record a pending report per study the signed ``read`` was measured on and queue each after commit.
    A read without geometry gets none. Called inside the transaction that signs or corrects the read."""
    task = read.task
    images = annotations_check_images(task=task, lesions=read.lesions)
    study_ids = sorted({image.study_id for image in images.values()})
    planned = []
    for study_id in study_ids:
        study_uid = next(i.study_uid for i in images.values() if i.study_id == study_id)
        report, created = MeasurementReport.objects.get_or_create(
            read=read, study_id=study_id,
            defaults={"study_uid": study_uid,
                      "series_uid": _uid(trial=task.trial, name=f"sr-series:{read.pk}:{study_id}"),
                      "sop_uid": _uid(trial=task.trial, name=f"sr:{read.pk}:{study_id}")})
        if created:
            transaction.on_commit(partial(measurement_report_enqueue, report.pk), robust=True)
        planned.append(report)
    return planned


def measurement_report_enqueue(report_id: int) -> None:
    from celery import current_app

    try:
        current_app.send_task(TASK_NAME, args=[report_id])
    except Exception:  # noqa: BLE001 - broker down: the report stays pending and the sweeper queues it again
        log.exception("could not enqueue measurement report %s; the sweeper will", report_id)


def reports_stuck(cutoff: datetime) -> list[int]:
    """Reports still pending since before ``cutoff``: their task was lost."""
    return list(MeasurementReport.objects.filter(status=R.PENDING, created_at__lt=cutoff)
                .order_by("pk").values_list("pk", flat=True))


# -- making one report (the task's service) ------------------------------------------------------------------

class ReportFailed(Exception):
    """A report that cannot be made as things are: recorded as failed, not retried."""


class ReportConflict(ConflictError):
    """The report is not in a state the action applies to."""


def _where(read: Read) -> dict:
    subject = read.task.subject
    return {"trial_id": subject.trial_id, "subject_id": subject.pk, "subject_code": subject.code}


def _content(report: MeasurementReport) -> tuple[sr.ReportContent, list[ArchivedImage]]:
    read = report.read
    task = read.task
    annotations = {lid: g for lid, g in (read.lesions.get("annotations") or {}).items()
                   if g.get("study_uid") == report.study_uid}
    if not annotations:
        raise ReportFailed("the read has no measurement on this study")
    organs = {t.get("id"): t.get("organ", "") for t in _baseline_targets(task)}
    lesions = [sr.LesionMeasurement(lesion_id=lid, tracking_id=lesion_link_id(slot=task.slot, lesion_id=lid),
                                    tracking_uid=tracking_uid(task=task, lesion_id=lid), geometry=annotations[lid],
                                    organ=organs.get(lid, ""))
               for lid in sorted(annotations)]
    found = {i.sop_uid: i for i in _archived(instance__study_id=report.study_id,
                                              sop_uid__in=[g["sop_uid"] for g in annotations.values()])}
    missing = sorted(lid for lid, g in annotations.items() if g["sop_uid"] not in found)
    if missing:
        raise ReportFailed(f"the image(s) {', '.join(missing)} were measured on are no longer released to the archive")
    content = sr.ReportContent(observer=task.get_slot_display(), timepoint=task.visit.timepoint,
                               signed_at=read.signed_at, series_uid=report.series_uid, sop_uid=report.sop_uid,
                               lesions=lesions)
    return content, [found[uid] for uid in sorted({g["sop_uid"] for g in annotations.values()})]


def _baseline_targets(task: ReadTask) -> list[dict]:
    """The target lesions (organ, nodal) of the reader's signed baseline of this subject."""
    baseline = (Read.objects.filter(task__subject_id=task.subject_id, task__slot=task.slot,
                                    task__status__in=ReadTask.LIVE, status=Read.Status.SIGNED)
                .order_by("task__visit__nominal_date", "task__visit_id").first())
    if baseline is None or not isinstance(baseline.lesions.get("targets"), list):
        return []
    return [t for t in baseline.lesions["targets"] if isinstance(t, dict)]


def _header(image: ArchivedImage) -> pydicom.Dataset:
    archive = storages["archive"]
    if not archive.exists(image.key):
        raise ReportFailed(f"the archived image {image.sop_uid} ({image.key}) is missing from the archive")
    with archive.open(image.key, "rb") as stream:
        try:
            return pydicom.dcmread(stream, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError as exc:
            raise ReportFailed(f"the archived image {image.sop_uid} is not readable DICOM: {exc}") from exc


def report_key(report: MeasurementReport) -> str:
    """Beside the study's archived instances (``<trial>/<study>/...``), one object per report."""
    return f"{report.read.task.trial_id}/{report.study_id}/measurement-reports/{report.pk}.dcm"


def _store(key: str, data: bytes, sha256: str) -> None:
    """A new object under ``key``; an identical one (an earlier attempt) is kept, different bytes refused."""
    try:
        store_once(storages["archive"], key, data, sha256)
    except ObjectConflict as exc:
        raise ReportFailed(f"{key} already holds other bytes; archived objects are never overwritten") from exc


def _encode(document: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    document.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def measurement_report_make(*, report_id: int) -> MeasurementReport | None:
    """Make and store one planned report; the system's act. Idempotent: a stored report is returned as it
    is, a retried one writes the same bytes under the same key. A report that cannot be made is recorded as
    failed (with the reason); storage errors (OSError) propagate for the task to retry."""
    with transaction.atomic():
        report = (MeasurementReport.objects.select_for_update(of=("self",))
                  .select_related("read__task__subject", "read__task__visit", "read__task__trial")
                  .filter(pk=report_id).first())
        if report is None or report.status == R.STORED:
            return report
        report.attempts += 1
        report.save(update_fields=["attempts"])
    try:
        content, images = _content(report)
        document = sr.measurement_report(content=content, images=[_header(image) for image in images])
        data = _encode(document)
        sha256 = hashlib.sha256(data).hexdigest()
        key = report_key(report)
        _store(key, data, sha256)
    except (ReportFailed, sr.ReportError, ValueError, KeyError, TypeError) as exc:
        return measurement_report_fail(report_id=report_id, error=str(exc) or exc.__class__.__name__)
    with transaction.atomic():
        report = MeasurementReport.objects.select_for_update(of=("self",)).select_related(
            "read__task__subject").get(pk=report_id)
        if report.status == R.STORED:
            return report
        report.status, report.archive_key, report.sha256, report.size = R.STORED, key, sha256, len(data)
        report.error, report.stored_at = "", timezone.now()
        report.save()
        audit_record(actor=None, action="reads.measurement_report_stored", target=report, **_where(report.read),
                     details={"read": report.read_id, "version": report.read.version, "slot": report.read.task.slot,
                              "study": report.study_id, "study_uid": report.study_uid,
                              "sop_instance_uid": report.sop_uid, "series_instance_uid": report.series_uid,
                              "archive_key": key, "sha256": sha256, "bytes": len(data),
                              "lesions": [lesion.tracking_id for lesion in content.lesions]})
    return report


def measurement_report_fail(*, report_id: int, error: str) -> MeasurementReport | None:
    """Record that a report could not be made, with the reason (logged too). A stored report stays stored."""
    log.error("measurement report %s could not be made: %s", report_id, error)
    with transaction.atomic():
        report = (MeasurementReport.objects.select_for_update(of=("self",)).select_related("read__task__subject")
                  .filter(pk=report_id).first())
        if report is None or report.status == R.STORED:
            return report
        report.status, report.error = R.FAILED, error[:2000]
        report.save(update_fields=["status", "error"])
        audit_record(actor=None, action="reads.measurement_report_failed", target=report, **_where(report.read),
                     details={"read": report.read_id, "study": report.study_id, "error": report.error,
                              "attempts": report.attempts})
    return report


# -- who sees a report, and the audited download --------------------------------------------------------------

def measurement_reports_for_task(*, task_id: int) -> list[MeasurementReport]:
    """Every report of the task's read versions, newest version first (the page has already checked the
    user may see the task)."""
    return list(MeasurementReport.objects.filter(read__task_id=task_id).select_related("read")
                .order_by("-read__version", "study_uid"))


def measurement_report_get_for_user(*, user, report_id: int) -> MeasurementReport:
    """A stored report, for the reader of its read (their own task) and the trial's managers and auditors;
    Http404 for anyone else and for a report not stored (missing and forbidden alike)."""
    report = (MeasurementReport.objects.select_related("read__task__reader", "read__task__subject")
              .filter(pk=report_id, status=R.STORED).first())
    if report is None or user is None or not user.is_authenticated:
        raise Http404("No such measurement report")
    from .metrics import oversight_allowed  # metrics → selectors → services → here: imported when asked

    task = report.read.task
    own = task.reader.user_id == user.pk and has_perm(user=user, perm=Perm.READ, trial_id=task.trial_id)
    if not (own or oversight_allowed(user=user, trial_id=task.trial_id)):
        raise Http404("No such measurement report")
    return report


def _blinded_copy(data: bytes, *, report: MeasurementReport) -> bytes:
    """The reader's copy: the report copies patient and study attributes from the de-identified images, which
    carry the subject code (it names the site); a reader gets the reading ID instead, as DICOMweb serves them
    the images, and no site identity."""
    from .blinding import reading_id
    from .dicomweb.dicom import SITE_IDENTITY_TAGS

    ds = pydicom.dcmread(io.BytesIO(data))
    for tag in SITE_IDENTITY_TAGS:
        ds.pop(int(tag, 16), None)
    alias = reading_id(subject=report.read.task.subject)
    ds.PatientID, ds.PatientName = alias, alias
    return _encode(ds)


@transaction.atomic
def measurement_report_download(*, user, report: MeasurementReport) -> bytes:
    """The stored report's bytes, checked against its sha256; the download is an audit event
    (``reads.measurement_report_downloaded``). Who may ask is measurement_report_get_for_user's check; the
    task's reader gets the blinded copy (``_blinded_copy``), the trial's managers and auditors the stored one."""
    from .metrics import oversight_allowed

    archive = storages["archive"]
    with archive.open(report.archive_key, "rb") as stream:
        data = stream.read()
    if hashlib.sha256(data).hexdigest() != report.sha256:
        raise ReportFailed(f"the stored report {report.archive_key} no longer matches its sha256")
    blinded = not oversight_allowed(user=user, trial_id=report.read.task.trial_id)
    audit_record(actor=user, action="reads.measurement_report_downloaded", target=report, **_where(report.read),
                 details={"read": report.read_id, "sop_instance_uid": report.sop_uid, "sha256": report.sha256,
                          "blinded_copy": blinded})
    return _blinded_copy(data, report=report) if blinded else data


# -- the trial's reports, for its managers and auditors --------------------------------------------------------

def measurement_reports_for_trial(*, user, trial_id: int) -> list[MeasurementReport]:
    """Every report of the trial, newest first, with its read and task; Http404 unless the user may oversee the
    trial's reads (managers and auditors)."""
    from .metrics import oversight_trial_get_for_user

    oversight_trial_get_for_user(user=user, trial_id=trial_id)
    return list(MeasurementReport.objects.filter(read__task__trial_id=trial_id)
                .select_related("read__task__subject", "read__task__visit").order_by("-created_at", "-pk"))


def measurement_report_retry(*, actor, report: MeasurementReport, reason: str) -> MeasurementReport:
    """Make a failed report again (after its cause was fixed, e.g. the archived image restored): it goes back
    to pending and is queued after commit. Managers of the trial; a reason is required; audited."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAssessment("say why the report is made again")
    with transaction.atomic():
        report = (MeasurementReport.objects.select_for_update(of=("self",))
                  .select_related("read__task__subject").get(pk=report.pk))
        if not has_perm(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=report.read.task.trial_id):
            raise Http404("No such measurement report")
        if report.status != R.FAILED:
            raise ReportConflict(f"the report is {report.get_status_display().lower()}: only a failed one is "
                                 "made again")
        previous = report.error
        report.status, report.error = R.PENDING, ""
        report._change_reason = reason
        report.save(update_fields=["status", "error"])
        audit_record(actor=actor, action="reads.measurement_report_retried", target=report, reason=reason,
                     **_where(report.read), details={"read": report.read_id, "previous_error": previous,
                                                     "attempts": report.attempts})
        transaction.on_commit(partial(measurement_report_enqueue, report.pk), robust=True)
    return report
