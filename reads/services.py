"""Every write of central reading, each audited in its own transaction.

Who may call what: the trial manager (Perm.MANAGE_TRIAL) keeps the reader pool, settings, reassignments
and explicit re-reads; a reader (Perm.READ) opens, drafts and signs only their own tasks; the adjudicator
(Perm.ADJUDICATE) resolves only the adjudications given to them. ``actor=None`` is the system itself (the
QC-acceptance receiver, the sweeper). Responses are never typed: ``reads.recist`` computes them from the
lesions at signing. Signing goes through ``audit.signatures`` (password re-entered, printed name, meaning,
content hash); a wrong password leaves nothing saved but the failed attempt's audit event.
"""

import logging
import math
import random
import re
import secrets
from datetime import date

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from audit.services import audit_record
from audit.signatures import content_sha256, signature_sign
from deid.keys import subject_keys
from intake.models import ImagingStudy
from trials.models import Membership, ProtocolVersion, Subject, Trial, Visit
from trials.permissions import Perm, ensure, has_perm, roles_with

from .exceptions import (
    AdjudicationStateError,
    InvalidAssessment,
    NotEnoughReaders,
    ReaderNotQualified,
    ReaderUnavailable,
    ReadLocked,
    ReadsError,
    ReasonRequired,
    TaskNotAvailable,
    TimepointLocked,
)
from .models import (
    RECIST_11,
    Adjudication,
    BicrResult,
    Read,
    Reader,
    ReaderTraining,
    ReadSettings,
    ReadTask,
    WorklistOrder,
    record_id_for,
)
from .reports import annotations_check_images, measurement_reports_plan

log = logging.getLogger(__name__)
T = ReadTask.Status
SLOTS = (ReadTask.Slot.A, ReadTask.Slot.B)
READ_MEANING = "Read and assessed: I confirm this timepoint assessment"
ADJUDICATION_MEANING = "Adjudicated: I select this read as the BICR result"
SETTINGS_FIELDS = ("criteria", "adjudicate_on_overall", "adjudicate_on_bor", "adjudicate_on_pd_date",
                   "confirmation_required", "min_confirm_days", "max_ne_between", "min_sd_days")


def _reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired(f"say why {what}: the reason is part of the record")
    return reason


def _where(subject: Subject) -> dict:
    return {"trial_id": subject.trial_id, "subject_id": subject.pk, "subject_code": subject.code}


def read_settings_for(*, trial: Trial) -> ReadSettings:
    """The trial's reading rules; an unsaved default when none were set (nothing is written here)."""
    return ReadSettings.objects.filter(trial=trial).first() or ReadSettings(trial=trial)


@transaction.atomic
def read_settings_update(*, actor, trial: Trial, reason: str, **changes) -> ReadSettings:
    """Change a trial's reading rules (adjudication triggers, engine options). Trial managers; a reason."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    reason = _reason(reason, "the reading rules change")
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise ReadsError(f"unknown reading settings: {', '.join(sorted(unknown))}")
    settings, _ = ReadSettings.objects.select_for_update().get_or_create(trial=trial)
    before = {name: getattr(settings, name) for name in changes}
    for name, value in changes.items():
        setattr(settings, name, value)
    settings.full_clean()
    settings._change_reason = reason
    settings.save()
    audit_record(actor=actor, action="reads.settings_changed", target=settings, trial_id=trial.pk, reason=reason,
                 details={"before": before, "after": changes})
    return settings


# -- the reader pool ----------------------------------------------------------------------------------------

def _current_version(trial: Trial) -> ProtocolVersion | None:
    return ProtocolVersion.objects.filter(trial=trial, is_current=True).first()


def qualified_readers(*, trial: Trial, perm: Perm = Perm.READ) -> list[Reader]:
    """Active readers qualified for the trial's criteria, trained on the current charter version, and
    holding a role that grants ``perm`` (READ for primary reads, ADJUDICATE for adjudication)."""
    version = _current_version(trial)
    if version is None:
        return []
    criteria = read_settings_for(trial=trial).criteria
    users = Membership.objects.filter(trial=trial, role__in=roles_with(perm)).values("user_id")
    return list(Reader.objects.filter(trial=trial, active=True, user__is_active=True, user_id__in=users,
                                      qualifications__contains=[criteria],
                                      trainings__protocol_version=version).distinct().order_by("pk"))


@transaction.atomic
def reader_add(*, actor, trial: Trial, user, qualifications: list[str] | tuple[str, ...] = (RECIST_11,)) -> Reader:
    """Put a user holding the reader or adjudicator role into the trial's pool (or back in). Trial managers."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    if not (has_perm(user=user, perm=Perm.READ, trial_id=trial.pk)
            or has_perm(user=user, perm=Perm.ADJUDICATE, trial_id=trial.pk)):
        raise ReaderNotQualified(f"{user.get_username()} holds no reader or adjudicator role in "
                                 f"{trial.protocol_number}: grant the role first")
    qualifications = sorted({str(q).strip() for q in qualifications if str(q).strip()})
    if not qualifications:
        raise ReaderNotQualified("a reader needs at least one qualification, e.g. 'RECIST 1.1'")
    reader = Reader.objects.select_for_update().filter(trial=trial, user=user).first()
    if reader is not None and reader.active:
        raise ReadsError(f"{user.get_username()} is already in the reader pool")
    if reader is None:
        reader = Reader.objects.create(trial=trial, user=user, qualifications=qualifications)
    else:
        reader.active, reader.qualifications = True, qualifications
        reader.deactivated_at, reader.deactivated_reason = None, ""
        reader._change_reason = "back in the reader pool"
        reader.save()
    audit_record(actor=actor, action="reads.reader_added", target=reader, trial_id=trial.pk,
                 details={"user": user.get_username(), "qualifications": qualifications})
    return reader


@transaction.atomic
def reader_training_add(*, actor, reader: Reader, protocol_version: ProtocolVersion, topic: str, trained_on: date,
                        trainer: str) -> ReaderTraining:
    """Record a reader's training on a protocol version's charter; only training on the current one qualifies."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=reader.trial_id)
    if protocol_version.trial_id != reader.trial_id:
        raise ReadsError("the protocol version belongs to another trial")
    if trained_on > timezone.localdate():
        raise ReadsError("training cannot be dated in the future")
    if not (topic or "").strip() or not (trainer or "").strip():
        raise ReadsError("say what was trained and who trained the reader")
    training = ReaderTraining.objects.create(reader=reader, protocol_version=protocol_version, topic=topic.strip(),
                                             trained_on=trained_on, trainer=trainer.strip(), recorded_by=actor)
    audit_record(actor=actor, action="reads.reader_trained", target=training, trial_id=reader.trial_id,
                 details={"reader": reader.user.get_username(), "protocol_version": protocol_version.label,
                          "topic": training.topic, "trained_on": trained_on.isoformat()})
    return training


@transaction.atomic
def reader_deactivate(*, actor, reader: Reader, reason: str) -> Reader:
    """Take a reader out of the pool: no new subjects. Their subjects stay theirs until reassigned
    (``task_reassign``); a new timepoint of such a subject waits with ReaderUnavailable."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=reader.trial_id)
    reason = _reason(reason, "the reader leaves the pool")
    reader = Reader.objects.select_for_update().get(pk=reader.pk)
    if not reader.active:
        raise ReadsError("the reader is already inactive")
    reader.active, reader.deactivated_at, reader.deactivated_reason = False, timezone.now(), reason
    reader._change_reason = reason
    reader.save()
    audit_record(actor=actor, action="reads.reader_deactivated", target=reader, trial_id=reader.trial_id,
                 reason=reason, details={"user": reader.user.get_username()})
    return reader


def _open_workload(readers: list[Reader]) -> dict[int, int]:
    counts = dict(ReadTask.objects.filter(reader__in=readers, status__in=[T.OPEN, T.IN_PROGRESS])
                  .values_list("reader").annotate(n=Count("pk")).values_list("reader", "n"))
    return {r.pk: counts.get(r.pk, 0) for r in readers}


def _ranked_pool(trial: Trial) -> list[Reader]:
    """Qualified primary readers, least open workload first; ties go to the longest-standing reader (pk)."""
    pool = qualified_readers(trial=trial, perm=Perm.READ)
    load = _open_workload(pool)
    return sorted(pool, key=lambda r: (load[r.pk], r.pk))


# -- tasks: creation, randomized worklists ---------------------------------------------------------------

def timepoint_ready(*, visit: Visit) -> bool:
    """Every procedure the charter requires at this timepoint has an accepted study (and at least one does)."""
    accepted = set(ImagingStudy.objects.filter(subject_id=visit.subject_id, visit=visit,
                                               status=ImagingStudy.Status.ACCEPTED)
                   .values_list("procedure", flat=True))
    return bool(accepted) and set(visit.procedures or []) <= accepted


def baseline_visit(*, subject: Subject) -> Visit | None:
    return Visit.objects.filter(subject=subject).order_by("nominal_date", "pk").first()


def shifted_date(*, subject: Subject, day: date) -> date:
    """A date as the reader's de-identified images carry it: moved by the subject's keyed offset."""
    from datetime import timedelta

    return day + timedelta(days=subject_keys(trial=subject.trial, subject_code=subject.code).date_shift_days)


def _scan_date(subject: Subject, visit: Visit) -> date:
    dates = [d for d in ImagingStudy.objects.filter(subject=subject, visit=visit, status=ImagingStudy.Status.ACCEPTED)
             .values_list("acquisition_date", flat=True) if d is not None]
    return shifted_date(subject=subject, day=min(dates) if dates else visit.nominal_date)


def _subject_readers(subject: Subject) -> dict[str, Reader]:
    readers = {}
    for task in ReadTask.objects.filter(subject=subject, status__in=ReadTask.LIVE).select_related("reader"):
        readers[task.slot] = task.reader
    return readers


def _worklist_randomize(*, actor, reader: Reader, seed: int | None = None) -> WorklistOrder:
    subjects = sorted(set(ReadTask.objects.filter(reader=reader, status__in=ReadTask.LIVE)
                          .values_list("subject_id", flat=True)))
    seed = secrets.randbits(62) if seed is None else int(seed)
    order = list(subjects)
    random.Random(seed).shuffle(order)
    record = WorklistOrder.objects.create(reader=reader, seed=seed, order=order)
    audit_record(actor=actor, action="reads.worklist_randomized", target=record, trial_id=reader.trial_id,
                 details={"reader": reader.pk, "seed": seed, "order": order})
    return record


@transaction.atomic
def worklist_randomize(*, actor, reader: Reader, seed: int | None = None) -> WorklistOrder:
    """Record a new seeded random order of the reader's subjects (seed and permutation kept and audited).

    ``random.Random(seed).shuffle(sorted subject ids)`` reproduces it. Called whenever a reader gets a new
    subject; trial managers may call it to reshuffle."""
    if actor is not None:
        ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=reader.trial_id)
    return _worklist_randomize(actor=actor, reader=reader, seed=seed)


@transaction.atomic
def tasks_create_for_timepoint(*, subject: Subject, visit: Visit, actor=None) -> list[ReadTask]:
    """Create the two independent primary read tasks of a timepoint once every required study is accepted.

    Idempotent: a timepoint that has its tasks, or is not ready, gives back what exists (possibly nothing).
    A subject keeps the same two readers for every timepoint; a new subject gets the two qualified active
    readers with the least open workload (ties: the earlier reader). Raises NotEnoughReaders or
    ReaderUnavailable when that cannot be done; the system (actor None) or a trial manager may call it.
    """
    if actor is not None:
        ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=subject.trial_id)
    subject = Subject.objects.select_for_update().select_related("trial").get(pk=subject.pk)
    if visit.subject_id != subject.pk:
        raise ReadsError("the visit belongs to another subject")
    live = list(ReadTask.objects.filter(visit=visit, status__in=ReadTask.LIVE).order_by("slot"))
    if live or not timepoint_ready(visit=visit):
        return live
    readers = _subject_readers(subject)
    new_subject = not readers
    if new_subject:
        pool = _ranked_pool(subject.trial)
        if len(pool) < 2:
            raise NotEnoughReaders(f"{subject.trial.protocol_number} has {len(pool)} qualified active reader(s); "
                                   "two are needed (criteria, training on the current charter, active)")
        readers = {ReadTask.Slot.A: pool[0], ReadTask.Slot.B: pool[1]}
    else:
        qualified = {r.pk for r in qualified_readers(trial=subject.trial)}
        for slot in SLOTS:
            reader = readers.get(slot)
            if reader is None or reader.pk not in qualified:
                raise ReaderUnavailable(f"reader {slot} of {subject.code} is no longer a qualified active reader: "
                                        "reassign the subject first")
    scan_date = _scan_date(subject, visit)
    created = []
    for slot in SLOTS:
        task = ReadTask.objects.create(trial=subject.trial, subject=subject, visit=visit, reader=readers[slot],
                                       slot=slot, scan_date=scan_date)
        audit_record(actor=actor, action="reads.task_created", target=task, **_where(subject),
                     details={"visit": visit.timepoint, "slot": slot, "reader": readers[slot].pk,
                              "new_subject": new_subject})
        created.append(task)
    if new_subject:
        for slot in SLOTS:
            _worklist_randomize(actor=actor, reader=readers[slot])
    return created


# -- reading: open, draft, sign, correct ----------------------------------------------------------------

def _own_task(*, task: ReadTask, user) -> ReadTask:
    if task.reader.user_id != getattr(user, "pk", None) or not has_perm(user=user, perm=Perm.READ,
                                                                         trial_id=task.trial_id):
        raise TaskNotAvailable("this read task is not assigned to you")
    if not task.live:
        raise TaskNotAvailable(f"this read task was {task.get_status_display().lower()} "
                               f"({task.replaced_reason}); your worklist has its replacement if any")
    return task


def lock_reason(*, task: ReadTask) -> str:
    """Why the reader may not open this task yet ("" when they may): earlier timepoints come first.

    DICOMweb decides the same rule for all of a reader's tasks in one query (``dicomweb.selectors.
    _reader_visit_ids``); tests/reads/test_dicomweb_queries.py keeps the two in step."""
    baseline = baseline_visit(subject=task.subject)
    earlier = ReadTask.objects.filter(subject_id=task.subject_id, slot=task.slot, status__in=ReadTask.LIVE,
                                      visit__nominal_date__lt=task.visit.nominal_date)
    unsigned = [t.visit.label for t in earlier.exclude(status=T.SIGNED).select_related("visit")]
    if unsigned:
        return f"sign the earlier timepoint(s) first: {', '.join(unsigned)}"
    if baseline is not None and task.visit_id != baseline.pk and not earlier.filter(
            visit=baseline, status=T.SIGNED).exists():
        return f"the baseline ({baseline.label}) is read and signed first"
    return ""


def _ensure_unlocked(task: ReadTask) -> None:
    reason = lock_reason(task=task)
    if reason:
        raise TimepointLocked(f"{task.visit.label} is locked: {reason}")


def _locked_task(task: ReadTask) -> ReadTask:
    return (ReadTask.objects.select_for_update(of=("self",))
            .select_related("reader", "visit", "subject__trial").get(pk=task.pk))


@transaction.atomic
def task_open(*, task: ReadTask, user) -> ReadTask:
    """The reader opens their task: refused (TimepointLocked) until every earlier timepoint, baseline first,
    is signed by them. Opening a signed task again changes nothing."""
    task = _own_task(task=_locked_task(task), user=user)
    if task.status == T.SIGNED:
        return task
    _ensure_unlocked(task)
    if task.status == T.OPEN:
        task.status, task.opened_at = T.IN_PROGRESS, timezone.now()
        task.save(update_fields=["status", "opened_at"])
        audit_record(actor=user, action="reads.task_opened", target=task, **_where(task.subject),
                     details={"visit": task.visit.timepoint, "slot": task.slot})
    return task


def _ensure_writable(task: ReadTask) -> None:
    if task.status == T.SIGNED:
        raise ReadLocked("this timepoint is signed and locked: make a correction with a reason instead")
    if task.status != T.IN_PROGRESS:
        raise TaskNotAvailable("open the task before entering the assessment")
    _ensure_unlocked(task)


UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
ANNOTATION_TOOLS = {"length": 2, "bidirectional": 4}  # tool → how many points it draws
ANNOTATION_KEYS = {"study_uid", "series_uid", "sop_uid", "frame", "tool", "points", "long_mm", "short_mm"}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _annotation_problem(geometry) -> str:
    """What is wrong with one lesion's measurement geometry ('' when nothing). Points are image coordinates:
    [column, row] in pixels of the referenced frame."""
    if not isinstance(geometry, dict):
        return "it must be an object"
    unknown = set(geometry) - ANNOTATION_KEYS
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}"
    for key in ("study_uid", "series_uid", "sop_uid"):
        uid = geometry.get(key)
        if not isinstance(uid, str) or len(uid) > 64 or not UID_RE.match(uid):
            return f"{key} must be a DICOM UID"
    frame = geometry.get("frame")
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 1:
        return "frame must be a frame number from 1"
    tool = geometry.get("tool")
    if tool not in ANNOTATION_TOOLS:
        return "tool must be length or bidirectional"
    points = geometry.get("points")
    if (not isinstance(points, list) or len(points) != ANNOTATION_TOOLS[tool]
            or not all(isinstance(p, list) and len(p) == 2 and all(_finite(v) and abs(v) <= 100_000 for v in p)
                       for p in points)):
        return f"a {tool} measurement has {ANNOTATION_TOOLS[tool]} points, each [column, row] in image pixels"
    long_mm, short_mm = geometry.get("long_mm"), geometry.get("short_mm")
    if not _finite(long_mm) or not 0 < long_mm <= 1000:
        return "long_mm must be above 0 and at most 1000 mm"
    if tool == "bidirectional":
        if not _finite(short_mm) or not 0 < short_mm <= long_mm:
            return "short_mm must be above 0 and at most the long axis"
    elif "short_mm" in geometry:
        return "a length measurement has no short axis"
    return ""


def _check_annotations(lesions: dict, *, baseline: bool) -> None:
    """``lesions["annotations"]``: where each target lesion was measured in the viewer, keyed by lesion id."""
    annotations = lesions.get("annotations")
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        raise InvalidAssessment("annotations must be an object keyed by target lesion id")
    targets = lesions["targets"]
    ids = ({t.get("id") for t in targets if isinstance(t, dict)} if baseline
           else {k for k, v in targets.items() if _finite(v) or isinstance(v, list)})
    for lesion_id, geometry in annotations.items():
        if lesion_id not in ids:
            raise InvalidAssessment(f"the measurement of {lesion_id} belongs to no measured target lesion of this read")
        problem = _annotation_problem(geometry)
        if problem:
            raise InvalidAssessment(f"the measurement of {lesion_id} is malformed: {problem}")
        problem = _annotation_disagrees(geometry, targets, lesion_id, baseline=baseline)
        if problem:
            raise InvalidAssessment(f"{lesion_id}: {problem}")


MM_TOLERANCE = 0.05  # the viewer gives diameters to 0.1 mm


def _annotation_disagrees(geometry: dict, targets, lesion_id: str, *, baseline: bool) -> str:
    """Why the diameter recorded for the lesion is not the one its viewer measurement gives ('' when it is): the
    signed read and its measurement report (DICOM SR, made from the geometry) must never disagree. A diameter
    typed over a measurement replaces it (the read form drops the measurement then)."""
    def same(recorded, measured) -> bool:
        return _finite(recorded) and abs(recorded - measured) <= MM_TOLERANCE

    again = "measure again, or record the value without the viewer measurement"
    measured = [geometry["long_mm"]] + ([geometry["short_mm"]] if "short_mm" in geometry else [])
    if baseline:
        # the first lesion of that id (two of one id are refused with the RECIST checks, as a clear error)
        target = next(t for t in targets if isinstance(t, dict) and t.get("id") == lesion_id)
        value = target.get("mm")
        axes = [("long", target.get("long_axis_mm"), geometry["long_mm"])]
        if "short_mm" in geometry:
            axes.append(("short", target.get("short_axis_mm"), geometry["short_mm"]))
        for axis, recorded, mm in axes:
            if recorded is not None and not same(recorded, mm):
                return f"the {axis} axis {recorded} mm is not the {mm} mm measured in the viewer: {again}"
    else:
        value = targets[lesion_id]
    if _finite(value) and not any(same(value, mm) for mm in measured):
        return (f"the diameter {value} mm is not the {' × '.join(f'{mm} mm' for mm in measured)} measured in the "
                f"viewer: {again}")
    return ""


def _check_shape(lesions, *, baseline: bool) -> dict:
    if not isinstance(lesions, dict):
        raise InvalidAssessment("the assessment must be an object of lesions")
    if baseline:
        if not isinstance(lesions.get("targets"), list) or not isinstance(lesions.get("non_targets", []), list):
            raise InvalidAssessment("a baseline lists its target and non-target lesions")
    elif not isinstance(lesions.get("targets"), dict) or lesions.get("new_lesions") not in ("NO", "YES", "EQUIVOCAL"):
        raise InvalidAssessment("a follow-up measures every target lesion and says whether new lesions are "
                                "present (NO, YES or EQUIVOCAL)")
    _check_annotations(lesions, baseline=baseline)
    return lesions


@transaction.atomic
def read_save_draft(*, task: ReadTask, user, lesions: dict) -> Read:
    """Save the reader's unsigned assessment of an opened task (creates or replaces the draft)."""
    task = _own_task(task=_locked_task(task), user=user)
    _ensure_writable(task)
    baseline = baseline_visit(subject=task.subject)
    lesions = _check_shape(lesions, baseline=baseline is not None and task.visit_id == baseline.pk)
    annotations_check_images(task=task, lesions=lesions)
    draft = Read.objects.select_for_update().filter(task=task, status=Read.Status.DRAFT).first()
    if draft is None:
        last = task.reads.order_by("-version").values_list("version", flat=True).first() or 0
        draft = Read.objects.create(task=task, version=last + 1, lesions=lesions, created_by=user)
    else:
        draft.lesions = lesions
        draft.save(update_fields=["lesions"])
    audit_record(actor=user, action="reads.read_draft_saved", target=draft, **_where(task.subject),
                 details={"visit": task.visit.timepoint, "version": draft.version})
    return draft


def signed_history(*, subject: Subject, slot: str) -> list[tuple[ReadTask, Read]]:
    """The current signed read of each live task of one slot, in visit order."""
    reads = (Read.objects.filter(task__subject=subject, task__slot=slot, task__status__in=ReadTask.LIVE,
                                 status=Read.Status.SIGNED)
             .select_related("task__visit").order_by("task__visit__nominal_date", "task__visit_id"))
    return [(r.task, r) for r in reads]


def _engine_input(*, subject: Subject, entries: list[tuple[ReadTask, dict]]) -> dict:
    baseline_task, baseline = entries[0]
    followups = []
    for task, lesions in entries[1:]:
        followups.append({**{k: v for k, v in lesions.items() if k not in ("visit", "date", "annotations")},
                          "visit": task.visit.timepoint, "date": task.scan_date.isoformat()})
    return {"options": read_settings_for(trial=subject.trial).engine_options(),
            "baseline": {"date": baseline_task.scan_date.isoformat(), "targets": baseline.get("targets", []),
                         "non_targets": baseline.get("non_targets", [])},
            "followups": followups}


def _evaluate(data: dict) -> dict:
    from . import recist

    try:
        return recist.evaluate(data)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidAssessment(f"the assessment cannot be evaluated: {exc}") from exc


def _assess(*, task: ReadTask, lesions: dict) -> tuple[dict, str]:
    """The engine's responses over the reader's signed history up to this timepoint, with ``lesions`` here."""
    from . import recist

    subject = task.subject
    baseline = baseline_visit(subject=subject)
    is_baseline = baseline is not None and task.visit_id == baseline.pk
    _check_shape(lesions, baseline=is_baseline)
    if is_baseline:
        try:
            check = recist.baseline_check({"targets": lesions.get("targets", []),
                                           "non_targets": lesions.get("non_targets", [])})
        except recist.RecistInputError as exc:  # a malformed lesion must be a clear error, not a 500
            raise InvalidAssessment(f"the baseline lesions are malformed: {exc}") from exc
        if not check.get("valid"):
            raise InvalidAssessment("the baseline breaks RECIST 1.1 target selection: "
                                    + ", ".join(check.get("errors", [])), errors=check.get("errors", []))
        entries = [(task, lesions)]
    else:
        history = [(t, r.lesions) for t, r in signed_history(subject=subject, slot=task.slot)
                   if t.visit.nominal_date < task.visit.nominal_date]
        if not history or history[0][0].visit_id != getattr(baseline, "pk", None):
            raise TimepointLocked("the baseline is read and signed first")
        entries = [*history, (task, lesions)]
    responses = _evaluate(_engine_input(subject=subject, entries=entries))
    overall = next((tp.get("overall", "") for tp in responses.get("timepoints", [])
                    if tp.get("visit") == task.visit.timepoint), "")
    return responses, overall or ""


def read_preview(*, task: ReadTask, user, lesions: dict) -> tuple[dict, str]:
    """What the engine computes for ``lesions`` at this task, over the reader's signed earlier timepoints,
    without writing anything: the live responses of the read form. Only the task's reader; raises
    InvalidAssessment (with the RECIST codes) or TimepointLocked like signing would."""
    task = _own_task(task=ReadTask.objects.select_related("reader", "visit", "subject__trial").get(pk=task.pk),
                     user=user)
    return _assess(task=task, lesions=lesions)


def read_content(*, task: ReadTask, version: int, lesions: dict, responses: dict, corrects: int | None = None,
                 reason: str = "") -> dict:
    """What a read's signature covers: the assessment, the computed responses and where they belong."""
    return {"record": "reads.read", "trial": task.trial_id, "subject": task.subject.code,
            "timepoint": task.visit.timepoint, "task": task.pk, "slot": task.slot, "version": version,
            "scan_date": task.scan_date.isoformat(), "lesions": lesions, "responses": responses,
            "corrects": corrects, "reason": reason}


def read_signed_content(*, read: Read) -> dict:
    """The content a signed read's signature was made over, rebuilt from the stored row (for verification)."""
    return read_content(task=read.task, version=read.version, lesions=read.lesions, responses=read.responses,
                        corrects=read.corrects_id, reason=read.correction_reason)


def read_sign(*, task: ReadTask, user, password: str, meaning: str = READ_MEANING, request=None) -> Read:
    """Sign the draft of an opened task: responses computed by the engine, a Part 11 signature, then locked.

    The password is checked before anything is written; a wrong one raises audit's SignatureError and leaves
    the draft as it was. After signing, the subject is checked for adjudication.
    """
    task = _own_task(task=ReadTask.objects.select_related("reader", "visit", "subject__trial").get(pk=task.pk),
                     user=user)
    _ensure_writable(task)
    draft = Read.objects.filter(task=task, status=Read.Status.DRAFT).first()
    if draft is None:
        raise ReadsError("there is no saved assessment to sign: save the lesions first")
    responses, overall = _assess(task=task, lesions=draft.lesions)
    annotations_check_images(task=task, lesions=draft.lesions)
    content = read_content(task=task, version=draft.version, lesions=draft.lesions, responses=responses)
    signature = signature_sign(user=user, password=password, meaning=meaning, record_type="reads.read",
                               record_id=draft.record_id, content=content, trial_id=task.trial_id,
                               subject_id=task.subject_id, request=request)
    with transaction.atomic():
        task = _locked_task(task)
        read = Read.objects.select_for_update().get(pk=draft.pk)
        if (task.status != T.IN_PROGRESS or read.status != Read.Status.DRAFT
                or content_sha256(read_content(task=task, version=read.version, lesions=read.lesions,
                                               responses=responses)) != signature.content_sha256):
            raise ReadsError("the assessment changed while it was being signed: review it and sign again")
        now = timezone.now()
        read.status, read.responses, read.overall, read.signature, read.signed_at = (
            Read.Status.SIGNED, responses, overall, signature, now)
        read.save()
        task.status, task.signed_at = T.SIGNED, now
        task.save(update_fields=["status", "signed_at"])
        audit_record(actor=user, action="reads.read_signed", target=read, **_where(task.subject),
                     details={"visit": task.visit.timepoint, "slot": task.slot, "version": read.version,
                              "overall": overall, "signature": signature.pk,
                              "content_sha256": signature.content_sha256})
        _measurement_reports_after_sign(read=read)
        _adjudication_check_after_sign(subject=task.subject)
    return read


def read_correct(*, read: Read, user, lesions: dict, reason: str, password: str, meaning: str = READ_MEANING,
                 request=None) -> Read:
    """Correct a signed read: a new signed version naming the one it corrects and why; the earlier one is
    kept, marked corrected. Only the reader of a live task; wrong password: nothing saved."""
    reason = _reason(reason, "the read is corrected")
    read = Read.objects.select_related("task__reader", "task__visit", "task__subject__trial").get(pk=read.pk)
    task = _own_task(task=read.task, user=user)
    if read.status != Read.Status.SIGNED:
        raise ReadLocked("only the current signed version of a read can be corrected")
    version = read.version + 1
    responses, overall = _assess(task=task, lesions=lesions)
    annotations_check_images(task=task, lesions=lesions)
    content = read_content(task=task, version=version, lesions=lesions, responses=responses, corrects=read.pk,
                           reason=reason)
    signature = signature_sign(user=user, password=password, meaning=meaning, record_type="reads.read",
                               record_id=record_id_for(task_id=task.pk, version=version), content=content,
                               trial_id=task.trial_id, subject_id=task.subject_id, request=request)
    with transaction.atomic():
        task = _locked_task(task)
        old = Read.objects.select_for_update().get(pk=read.pk)
        if old.status != Read.Status.SIGNED or not task.live:
            raise ReadsError("the read changed while the correction was being signed: review it and try again")
        old.status = Read.Status.CORRECTED
        old._change_reason = reason
        old.save(update_fields=["status"])
        new = Read.objects.create(task=task, version=version, status=Read.Status.SIGNED, lesions=lesions,
                                  responses=responses, overall=overall, corrects=old, correction_reason=reason,
                                  signature=signature, created_by=user, signed_at=timezone.now())
        audit_record(actor=user, action="reads.read_corrected", target=new, reason=reason, **_where(task.subject),
                     details={"visit": task.visit.timepoint, "slot": task.slot, "version": version,
                              "corrects": old.pk, "overall": overall, "previous_overall": old.overall,
                              "signature": signature.pk})
        _measurement_reports_after_sign(read=new)
        _adjudication_check_after_sign(subject=task.subject)
    return new


def _measurement_reports_after_sign(*, read: Read) -> None:
    # the DICOM SR of the read's measurements is made after commit; planning it must not undo a signature
    try:
        with transaction.atomic():
            measurement_reports_plan(read=read)
    except Exception:  # noqa: BLE001 - logged; the read stays signed, its report can be planned again
        log.exception("measurement reports of read %s could not be planned", read.pk)


def _adjudication_check_after_sign(*, subject: Subject) -> None:
    # the signature is made: a comparison the engine cannot run must not undo it (a manager re-runs the check)
    try:
        with transaction.atomic():
            adjudication_check(subject=subject)
    except ReadsError:
        log.exception("adjudication check of subject %s failed after a signature", subject.pk)


# -- reassignment and re-reads ----------------------------------------------------------------------------

def _supersede_open_adjudication(*, actor, subject: Subject, reason: str) -> None:
    for adj in Adjudication.objects.select_for_update().filter(subject=subject, status=Adjudication.Status.OPEN):
        adj.status = Adjudication.Status.SUPERSEDED
        adj._change_reason = reason
        adj.save(update_fields=["status"])
        audit_record(actor=actor, action="reads.adjudication_superseded", target=adj, reason=reason,
                     **_where(subject), details={"triggers": adj.triggers})


def _replace(*, actor, task: ReadTask, reader: Reader, status: str, reason: str, action: str) -> ReadTask:
    """Mark ``task`` replaced (its reads kept, marked) and create its successor for ``reader``."""
    marked = []
    for read in Read.objects.select_for_update().filter(task=task, status__in=[Read.Status.DRAFT,
                                                                                 Read.Status.SIGNED]):
        read.status = Read.Status.SUPERSEDED
        read._change_reason = reason
        read.save(update_fields=["status"])
        marked.append(read.pk)
    task.status, task.replaced_at, task.replaced_reason = status, timezone.now(), reason
    task._change_reason = reason
    task.save(update_fields=["status", "replaced_at", "replaced_reason"])
    successor = ReadTask.objects.create(trial_id=task.trial_id, subject=task.subject, visit=task.visit,
                                        reader=reader, slot=task.slot,
                                        scan_date=_scan_date(task.subject, task.visit))
    task.replaced_by = successor
    task.save(update_fields=["replaced_by"])
    audit_record(actor=actor, action=action, target=task, reason=reason, **_where(task.subject),
                 details={"visit": task.visit.timepoint, "slot": task.slot, "new_task": successor.pk,
                          "from_reader": task.reader_id, "to_reader": reader.pk, "reads_kept": marked})
    return successor


@transaction.atomic
def task_reassign(*, actor, task: ReadTask, new_reader: Reader, reason: str) -> list[ReadTask]:
    """Give the task's reader slot of its subject to another reader (the reader left): every live task of that
    slot is replaced, so the new reader reads the subject from baseline (RECIST needs one reader's baseline).
    Earlier reads are kept, marked superseded. Trial managers; a reason. Returns the new tasks."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=task.trial_id)
    reason = _reason(reason, "the subject is reassigned")
    task = _locked_task(task)
    if not task.live:
        raise TaskNotAvailable("this task was already replaced; reassign its live successor")
    if new_reader.trial_id != task.trial_id:
        raise ReaderNotQualified("the new reader belongs to another trial")
    if new_reader.pk not in {r.pk for r in qualified_readers(trial=task.subject.trial)}:
        raise ReaderNotQualified(f"{new_reader.user.get_username()} is not a qualified active reader "
                                 "(criteria, training on the current charter, reader role)")
    others = {r.pk for s, r in _subject_readers(task.subject).items() if s != task.slot}
    if new_reader.pk in others or new_reader.pk == task.reader_id:
        raise ReadsError("the new reader already reads this subject: the two reads must stay independent")
    tasks = (ReadTask.objects.select_for_update().filter(subject=task.subject, slot=task.slot,
                                                          status__in=ReadTask.LIVE)
             .select_related("visit", "subject__trial").order_by("visit__nominal_date"))
    successors = [_replace(actor=actor, task=t, reader=new_reader, status=T.REASSIGNED, reason=reason,
                           action="reads.task_reassigned") for t in tasks]
    _supersede_open_adjudication(actor=actor, subject=task.subject, reason=f"reader {task.slot} reassigned")
    _worklist_randomize(actor=actor, reader=new_reader)
    return successors


@transaction.atomic
def task_reread(*, actor, task: ReadTask, reason: str) -> ReadTask:
    """Have a timepoint read again by the same reader (a correction is needed on new grounds, or the images
    changed): the task and its reads are kept, marked superseded; a new open task replaces it.
    Trial managers, or the system (actor None)."""
    if actor is not None:
        ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=task.trial_id)
    reason = _reason(reason, "the timepoint is read again")
    task = _locked_task(task)
    if not task.live:
        raise TaskNotAvailable("this task was already replaced")
    successor = _replace(actor=actor, task=task, reader=task.reader, status=T.SUPERSEDED, reason=reason,
                         action="reads.task_reread")
    _supersede_open_adjudication(actor=actor, subject=task.subject, reason=reason)
    return successor


@transaction.atomic
def reread_on_supersede(*, study_id: int) -> list[ReadTask]:
    """A study of a timepoint already opened or read was superseded by a new version: each such task is read
    again on the new images. Idempotent (unopened tasks simply show the new version)."""
    study = ImagingStudy.objects.select_related("visit").filter(pk=study_id).first()
    if study is None or study.status != ImagingStudy.Status.SUPERSEDED or study.visit_id is None:
        return []
    tasks = ReadTask.objects.filter(visit_id=study.visit_id, status__in=[T.IN_PROGRESS, T.SIGNED]).order_by("slot")
    reason = f"study {study.procedure} version {study.version} was superseded by a new version"
    return [task_reread(actor=None, task=t, reason=reason) for t in tasks]


# -- adjudication and the BICR result ----------------------------------------------------------------------

def _compare(*, subject: Subject) -> tuple[list[dict], dict[str, list[tuple[ReadTask, Read]]], list[str]] | None:
    """Disagreements between A and B over the timepoints both signed (baseline included), per trial settings."""
    histories = {slot: signed_history(subject=subject, slot=slot) for slot in SLOTS}
    common = [t.visit_id for t, _ in histories["A"]] if histories["A"] else []
    common = [v for v in common if v in {t.visit_id for t, _ in histories["B"]}]
    baseline = baseline_visit(subject=subject)
    if not common or baseline is None or common[0] != baseline.pk:
        return None
    entries = {slot: [(t, r) for t, r in histories[slot] if t.visit_id in common] for slot in SLOTS}
    results = {slot: _evaluate(_engine_input(subject=subject, entries=[(t, r.lesions) for t, r in entries[slot]]))
               for slot in SLOTS}
    settings = read_settings_for(trial=subject.trial)
    triggers = []
    if settings.adjudicate_on_overall:
        by_visit = {slot: {tp.get("visit"): tp.get("overall") for tp in results[slot].get("timepoints", [])}
                    for slot in SLOTS}
        for task, _ in entries["A"][1:]:
            code = task.visit.timepoint
            if by_visit["A"].get(code) != by_visit["B"].get(code):
                triggers.append({"kind": "overall", "visit": code, "A": by_visit["A"].get(code),
                                 "B": by_visit["B"].get(code)})
    for kind, key, on in (("bor", "bor", settings.adjudicate_on_bor),
                          ("pd_date", "pd_date", settings.adjudicate_on_pd_date)):
        if on and results["A"].get(key) != results["B"].get(key):
            triggers.append({"kind": kind, "visit": "", "A": results["A"].get(key), "B": results["B"].get(key)})
    visits = [t.visit.timepoint for t, _ in entries["A"]]
    return triggers, entries, visits


def _trigger_keys(triggers: list[dict]) -> set[tuple]:
    return {(t["kind"], t["visit"], str(t["A"]), str(t["B"])) for t in triggers}


def _pick_adjudicator(subject: Subject) -> Reader | None:
    readers = {r.pk for r in _subject_readers(subject).values()}
    pool = [r for r in qualified_readers(trial=subject.trial, perm=Perm.ADJUDICATE) if r.pk not in readers]
    if not pool:
        return None
    load = dict(Adjudication.objects.filter(adjudicator__in=pool, status=Adjudication.Status.OPEN)
                .values_list("adjudicator").annotate(n=Count("pk")).values_list("adjudicator", "n"))
    return min(pool, key=lambda r: (load.get(r.pk, 0), r.pk))


def _bicr_set(*, actor, subject: Subject, entries: list[tuple[ReadTask, Read]], source: str,
              adjudication: Adjudication | None = None) -> list[BicrResult]:
    changed = []
    for task, read in entries:
        current = BicrResult.objects.select_for_update().filter(visit=task.visit).first()
        if current is not None and current.read_id == read.pk and current.source == source:
            continue
        if current is None:
            current = BicrResult(trial_id=subject.trial_id, subject=subject, visit=task.visit)
        current.read, current.source, current.adjudication, current.overall = (
            read, source, adjudication, read.overall or "")
        current.save()
        changed.append(current)
    if changed:
        audit_record(actor=actor, action="reads.bicr_result_set", target=subject, **_where(subject),
                     details={"source": source, "adjudication": adjudication.pk if adjudication else None,
                              "results": {r.visit.timepoint: {"read": r.read_id, "overall": r.overall}
                                          for r in changed}})
    return changed


def _carried_slot(subject: Subject) -> str:
    last = (Adjudication.objects.filter(subject=subject, status=Adjudication.Status.RESOLVED)
            .order_by("-resolved_at", "-pk").first())
    return last.selected if last is not None else ReadTask.Slot.A


@transaction.atomic
def adjudication_check(*, subject: Subject, actor=None) -> Adjudication | None:
    """After a timepoint is signed: compare the two readers over the timepoints both signed.

    Disagreement (per the trial's settings: overall response at any timepoint, best overall response, date of
    progression) that an earlier resolved adjudication did not already settle opens an adjudication for the
    least-loaded qualified adjudicator who does not read the subject. Agreement sets the BICR result from
    read A (or the slot the last adjudication selected). Idempotent; the system's act.
    """
    subject = Subject.objects.select_related("trial").get(pk=subject.pk)
    compared = _compare(subject=subject)
    if compared is None:
        return None
    triggers, entries, visits = compared
    reads = {slot: [r.pk for _, r in entries[slot]] for slot in SLOTS}
    current = Adjudication.objects.select_for_update().filter(subject=subject, status=Adjudication.Status.OPEN).first()
    if current is not None and current.reads_a == reads["A"] and current.reads_b == reads["B"]:
        return current
    last = (Adjudication.objects.filter(subject=subject, status=Adjudication.Status.RESOLVED)
            .order_by("-resolved_at", "-pk").first())
    settled = last is not None and _trigger_keys(triggers) <= _trigger_keys(last.triggers)
    if current is not None:
        _supersede_open_adjudication(actor=actor, subject=subject, reason="the compared reads changed")
    if not triggers or settled:
        slot = _carried_slot(subject)
        _bicr_set(actor=actor, subject=subject, entries=entries[slot],
                  source=BicrResult.Source.ADJUDICATION if settled and triggers else BicrResult.Source.AGREEMENT,
                  adjudication=last if settled and triggers else None)
        return None
    adjudication = Adjudication.objects.create(trial=subject.trial, subject=subject, triggers=triggers,
                                               reads_a=reads["A"], reads_b=reads["B"], visits=visits,
                                               adjudicator=_pick_adjudicator(subject))
    audit_record(actor=actor, action="reads.adjudication_created", target=adjudication, **_where(subject),
                 details={"triggers": triggers, "visits": visits, "reads_a": reads["A"], "reads_b": reads["B"],
                          "adjudicator": adjudication.adjudicator_id})
    return adjudication


@transaction.atomic
def adjudication_assign(*, actor, adjudication: Adjudication, adjudicator: Reader) -> Adjudication:
    """Give an open adjudication to a qualified adjudicator who does not read the subject. Trial managers."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=adjudication.trial_id)
    adjudication = Adjudication.objects.select_for_update().select_related("subject__trial").get(pk=adjudication.pk)
    if adjudication.status != Adjudication.Status.OPEN:
        raise AdjudicationStateError("the adjudication is not open")
    if adjudicator.pk not in {r.pk for r in qualified_readers(trial=adjudication.subject.trial,
                                                              perm=Perm.ADJUDICATE)}:
        raise ReaderNotQualified(f"{adjudicator.user.get_username()} is not a qualified active adjudicator")
    if adjudicator.pk in {r.pk for r in _subject_readers(adjudication.subject).values()}:
        raise ReadsError("an adjudicator never adjudicates a subject they read")
    adjudication.adjudicator = adjudicator
    adjudication.save(update_fields=["adjudicator"])
    audit_record(actor=actor, action="reads.adjudication_assigned", target=adjudication,
                 **_where(adjudication.subject), details={"adjudicator": adjudicator.pk})
    return adjudication


def adjudication_content(*, adjudication: Adjudication, selected: str, rationale: str) -> dict:
    """What the adjudicator's signature covers."""
    return {"record": "reads.adjudication", "adjudication": adjudication.pk, "trial": adjudication.trial_id,
            "subject": adjudication.subject.code, "triggers": adjudication.triggers, "visits": adjudication.visits,
            "reads_a": adjudication.reads_a, "reads_b": adjudication.reads_b, "selected": selected,
            "rationale": rationale}


def adjudication_resolve(*, adjudication: Adjudication, user, selected: str, rationale: str, password: str,
                         meaning: str = ADJUDICATION_MEANING, request=None) -> Adjudication:
    """The adjudicator selects read A or B with a rationale and signs; the selected read becomes the BICR
    result for every timepoint compared. Only the assigned adjudicator; wrong password: nothing saved."""
    adjudication = Adjudication.objects.select_related("subject__trial", "adjudicator").get(pk=adjudication.pk)
    if (adjudication.adjudicator is None or adjudication.adjudicator.user_id != getattr(user, "pk", None)
            or not has_perm(user=user, perm=Perm.ADJUDICATE, trial_id=adjudication.trial_id)):
        raise AdjudicationStateError("this adjudication is not assigned to you")
    if adjudication.status != Adjudication.Status.OPEN:
        raise AdjudicationStateError(f"this adjudication is {adjudication.get_status_display().lower()}")
    selected = (selected or "").strip().upper()
    if selected not in SLOTS:
        raise ReadsError("select read A or read B")
    rationale = _reason(rationale, "this read is selected")
    content = adjudication_content(adjudication=adjudication, selected=selected, rationale=rationale)
    signature = signature_sign(user=user, password=password, meaning=meaning, record_type="reads.adjudication",
                               record_id=adjudication.pk, content=content, trial_id=adjudication.trial_id,
                               subject_id=adjudication.subject_id, request=request)
    with transaction.atomic():
        adj = Adjudication.objects.select_for_update().select_related("subject__trial").get(pk=adjudication.pk)
        if adj.status != Adjudication.Status.OPEN or adj.reads_a != adjudication.reads_a:
            raise AdjudicationStateError("the adjudication changed while it was being signed")
        adj.status, adj.selected, adj.rationale, adj.signature, adj.resolved_at = (
            Adjudication.Status.RESOLVED, selected, rationale, signature, timezone.now())
        adj.save()
        audit_record(actor=user, action="reads.adjudication_resolved", target=adj, **_where(adj.subject),
                     details={"selected": selected, "signature": signature.pk, "visits": adj.visits,
                              "triggers": adj.triggers},
                     reason=rationale)
        ids = adj.reads_a if selected == ReadTask.Slot.A else adj.reads_b
        chosen = list(Read.objects.filter(pk__in=ids).select_related("task__visit")
                      .order_by("task__visit__nominal_date"))
        _bicr_set(actor=user, subject=adj.subject, entries=[(r.task, r) for r in chosen],
                  source=BicrResult.Source.ADJUDICATION, adjudication=adj)
    return adj

