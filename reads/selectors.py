"""What reading pages and API responses may show, scoped by user. Blinding is enforced here.

A reader's rows carry only what the reader may know: the subject's pseudonym, the timepoint, the scan date
as their de-identified images carry it (shifted), pseudonymous study UIDs, and their own reads. Never the
site or its country, the treatment arm, the other reader's work or identity, or how adjudication of their
subjects came out. Rows are plain dataclasses, so a page cannot reach a related object by accident.
The adjudicator sees the two reads labelled A and B, never who made them.
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from django.http import Http404

from deid.models import DeidRecord
from intake.models import ImagingStudy
from trials.models import Trial
from trials.permissions import Perm, has_perm, require

from .blinding import reading_id
from .exceptions import TimepointLocked
from .models import Adjudication, BicrResult, Read, Reader, ReadTask, WorklistOrder
from .services import lock_reason, shifted_date


@dataclass(frozen=True)
class StudyRow:
    study_uid: str          # pseudonymous (de-identified) Study Instance UID
    procedure: str
    modality: str
    scan_date: date | None  # shifted


@dataclass(frozen=True)
class ReadRow:
    version: int
    status: str
    lesions: dict
    responses: dict
    overall: str
    signed_at: object = None
    correction_reason: str = ""


@dataclass(frozen=True)
class WorklistRow:
    task_id: int
    reading_id: str  # reads.blinding: never the subject code, which can name the site
    timepoint: str
    timepoint_label: str
    scan_date: date
    status: str
    locked: bool
    lock_reason: str
    position: int  # the subject's place in the reader's recorded random order
    order: int     # then timepoints in visit order
    stale_because: str = ""  # see stale_reasons()


@dataclass(frozen=True)
class TaskView:
    task_id: int
    reading_id: str  # reads.blinding: never the subject code, which can name the site
    timepoint: str
    timepoint_label: str
    scan_date: date
    status: str
    is_baseline: bool
    studies: list[StudyRow]
    current: ReadRow | None
    versions: list[ReadRow]
    # the reader's own signed earlier timepoints of this subject, in order: lesions to follow up
    earlier: list[tuple[str, ReadRow]] = field(default_factory=list)
    stale_because: str = ""  # see stale_reasons()


def _reader(*, user, trial_id: int) -> Reader | None:
    return Reader.objects.filter(trial_id=trial_id, user=user).first() if getattr(user, "pk", None) else None


def _read_row(read: Read) -> ReadRow:
    return ReadRow(version=read.version, status=read.status, lesions=read.lesions, responses=read.responses,
                   overall=read.overall, signed_at=read.signed_at, correction_reason=read.correction_reason)


def stale_reasons(tasks: list[ReadTask]) -> dict[int, str]:
    """Why signed tasks' responses are out of date, by task id (tasks whose responses are current are absent).

    A read's responses are computed over the reader's history (against the baseline sum, the nadir, an earlier
    progression) when it is signed. When an earlier timepoint of the same subject and slot is signed again
    later (corrected, or read again after a rescan), the stored responses came from that timepoint's previous
    version. Signed records are never recomputed silently: correcting the read recomputes them."""
    signed = [t for t in tasks if t.status == ReadTask.Status.SIGNED]
    if not signed:
        return {}
    rows = (Read.objects.filter(task__subject_id__in={t.subject_id for t in signed}, status=Read.Status.SIGNED,
                                task__status__in=ReadTask.LIVE, signed_at__isnull=False)
            .values_list("task_id", "task__subject_id", "task__slot", "task__visit__nominal_date",
                         "task__visit__label", "signed_at", "version")
            .order_by("task__visit__nominal_date", "signed_at"))
    rows = list(rows)
    own = {row[0]: row for row in rows}
    reasons = {}
    for task in signed:
        mine = own.get(task.pk)
        if mine is None:
            continue
        _, subject_id, slot, day, _, signed_at, _ = mine
        newer = next((row for row in rows if row[1] == subject_id and row[2] == slot and row[3] < day
                      and row[5] > signed_at), None)
        if newer is not None:
            what = "corrected" if newer[6] > 1 else "read again"
            reasons[task.pk] = (f"{newer[4]} was {what} on {newer[5]:%Y-%m-%d %H:%M} UTC, after this read was "
                                "signed: its responses were computed from the earlier version. Correct this read "
                                "to recompute them.")
    return reasons


def worklist_for(*, user, trial: Trial) -> list[WorklistRow]:
    """The reader's live tasks in the trial, subjects in their recorded random order, timepoints in order."""
    require(user=user, perm=Perm.READ, trial_id=trial.pk)
    reader = _reader(user=user, trial_id=trial.pk)
    if reader is None:
        return []
    order = WorklistOrder.objects.filter(reader=reader).order_by("-created_at", "-pk").first()
    position = {subject_id: i for i, subject_id in enumerate(order.order if order else [])}
    tasks = (ReadTask.objects.filter(reader=reader, status__in=ReadTask.LIVE)
             .select_related("subject__trial", "visit").order_by("visit__nominal_date", "pk"))
    tasks = list(tasks)
    stale = stale_reasons(tasks)
    rows = []
    for n, task in enumerate(tasks):
        reason = "" if task.status == ReadTask.Status.SIGNED else lock_reason(task=task)
        rows.append(WorklistRow(task_id=task.pk, reading_id=reading_id(subject=task.subject),
                                timepoint=task.visit.timepoint,
                                timepoint_label=task.visit.label, scan_date=task.scan_date, status=task.status,
                                locked=bool(reason), lock_reason=reason,
                                position=position.get(task.subject_id, len(position)), order=n,
                                stale_because=stale.get(task.pk, "")))
    return sorted(rows, key=lambda r: (r.position, r.order))


def _studies(task: ReadTask) -> list[StudyRow]:
    rows = []
    for study in ImagingStudy.objects.filter(visit_id=task.visit_id, status=ImagingStudy.Status.ACCEPTED
                                             ).order_by("procedure"):
        uid = (DeidRecord.objects.filter(instance__study=study, outcome=DeidRecord.Outcome.RELEASED)
               .exclude(study_uid="").values_list("study_uid", flat=True).first() or "")
        day = shifted_date(subject=task.subject, day=study.acquisition_date) if study.acquisition_date else None
        rows.append(StudyRow(study_uid=uid, procedure=study.procedure, modality=study.modality, scan_date=day))
    return rows


def task_for_reader(*, user, task_id: int) -> TaskView:
    """One of the reader's own live tasks. Http404 when it is not theirs (or not live: replaced tasks are gone
    from the reader's view); TimepointLocked (with what to sign first) when an earlier timepoint is unsigned."""
    task = (ReadTask.objects.select_related("subject__trial", "visit", "reader")
            .filter(pk=task_id, status__in=ReadTask.LIVE).first())
    if task is None or task.reader.user_id != getattr(user, "pk", None) or not has_perm(
            user=user, perm=Perm.READ, trial_id=task.trial_id):
        raise Http404("No such read task")
    if task.status != ReadTask.Status.SIGNED:
        reason = lock_reason(task=task)
        if reason:
            raise TimepointLocked(f"{task.visit.label} is locked: {reason}")
    reads = list(task.reads.order_by("version"))
    current = next((r for r in reads if r.status in (Read.Status.DRAFT, Read.Status.SIGNED)), None)
    earlier = (Read.objects.filter(task__subject_id=task.subject_id, task__slot=task.slot,
                                   task__status__in=ReadTask.LIVE, status=Read.Status.SIGNED,
                                   task__visit__nominal_date__lt=task.visit.nominal_date)
               .select_related("task__visit").order_by("task__visit__nominal_date"))
    first_visit = task.subject.visits.order_by("nominal_date", "pk").values_list("pk", flat=True).first()
    return TaskView(task_id=task.pk, reading_id=reading_id(subject=task.subject), timepoint=task.visit.timepoint,
                    timepoint_label=task.visit.label, scan_date=task.scan_date, status=task.status,
                    is_baseline=task.visit_id == first_visit, studies=_studies(task),
                    current=_read_row(current) if current else None, versions=[_read_row(r) for r in reads],
                    earlier=[(r.task.visit.timepoint, _read_row(r)) for r in earlier],
                    stale_because=stale_reasons([task]).get(task.pk, ""))


def baseline_study_uids_for_reader(*, user, task: ReadTask) -> list[str]:
    """The de-identified Study UIDs of the reader's own signed baseline of the task's subject (the viewer's left
    pane at a follow-up), fetched as that reader so they stay blinded; [] when someone else read the baseline."""
    first = (ReadTask.objects.filter(subject_id=task.subject_id, slot=task.slot, status=ReadTask.Status.SIGNED)
             .order_by("visit__nominal_date", "visit_id").first())
    if first is None:
        return []
    try:
        studies = task_for_reader(user=user, task_id=first.pk).studies
    except Http404:  # the baseline was read by someone else (a reassigned subject): not shown
        return []
    return [s.study_uid for s in studies if s.study_uid]


@dataclass(frozen=True)
class AdjudicationView:
    adjudication_id: int
    reading_id: str  # reads.blinding: never the subject code, which can name the site
    status: str
    triggers: list[dict]
    visits: list[str]
    # {"A": [(timepoint, scan_date, ReadRow)], "B": [...]}: reader identities never included
    reads: dict[str, list[tuple[str, date, ReadRow]]]
    selected: str
    rationale: str


def _slot_reads(ids: list[int]) -> list[tuple[str, date, ReadRow]]:
    reads = Read.objects.filter(pk__in=ids).select_related("task__visit").order_by("task__visit__nominal_date")
    return [(r.task.visit.timepoint, r.task.scan_date, _read_row(r)) for r in reads]


def adjudication_list_for(*, user, trial: Trial) -> list[AdjudicationView]:
    """The adjudicator's own adjudications in the trial, open first."""
    require(user=user, perm=Perm.ADJUDICATE, trial_id=trial.pk)
    reader = _reader(user=user, trial_id=trial.pk)
    if reader is None:
        return []
    adjs = Adjudication.objects.filter(adjudicator=reader).exclude(status=Adjudication.Status.SUPERSEDED)
    return sorted((adjudication_for(user=user, adj_id=a.pk) for a in adjs),
                  key=lambda v: (v.status != Adjudication.Status.OPEN, v.adjudication_id))


def adjudication_for(*, user, adj_id: int) -> AdjudicationView:
    """An adjudication assigned to the user, reads labelled A/B only. Http404 for anyone else."""
    adj = Adjudication.objects.select_related("subject__trial", "adjudicator").filter(pk=adj_id).first()
    if adj is None or adj.adjudicator is None or adj.adjudicator.user_id != getattr(user, "pk", None) or not has_perm(
            user=user, perm=Perm.ADJUDICATE, trial_id=adj.trial_id):
        raise Http404("No such adjudication")
    return AdjudicationView(adjudication_id=adj.pk, reading_id=reading_id(subject=adj.subject), status=adj.status,
                            triggers=adj.triggers, visits=adj.visits,
                            reads={"A": _slot_reads(adj.reads_a), "B": _slot_reads(adj.reads_b)},
                            selected=adj.selected, rationale=adj.rationale)


def _require_oversight(*, user, trial: Trial) -> None:
    if user is not None and not (has_perm(user=user, perm=Perm.VIEW_DASHBOARDS, trial_id=trial.pk)
                                 or has_perm(user=user, perm=Perm.VIEW_AUDIT, trial_id=trial.pk)):
        raise Http404("No such trial")


def bicr_results(*, trial: Trial, user=None) -> list[dict]:
    """The BICR result per subject timepoint (for managers, sponsors, auditors and exports; ``user=None`` is
    the system, e.g. the SDTM export)."""
    _require_oversight(user=user, trial=trial)
    rows = (BicrResult.objects.filter(trial=trial).select_related("subject", "visit", "read__task")
            .order_by("subject__code", "visit__nominal_date"))
    return [{"subject_code": r.subject.code, "subject_id": r.subject_id, "visit": r.visit.timepoint,
             "visit_id": r.visit_id, "overall": r.overall, "source": r.source, "read_id": r.read_id,
             "slot": r.read.task.slot, "responses": r.read.responses, "adjudication_id": r.adjudication_id}
            for r in rows]


def agreement_inputs(*, trial: Trial, user=None) -> list[dict]:
    """Pairs of overall responses per reader pair and month, for kappa: both readers' current signed reads of
    the same timepoint. ``readers`` is the pair ordered by reader id; each rating pair follows that order;
    the month is when the later of the two was signed."""
    _require_oversight(user=user, trial=trial)
    reads = (Read.objects.filter(task__trial=trial, task__status__in=ReadTask.LIVE, status=Read.Status.SIGNED)
             .exclude(overall="").select_related("task__reader__user"))
    by_visit: dict[int, dict[str, Read]] = defaultdict(dict)
    for read in reads:
        by_visit[read.task.visit_id][read.task.slot] = read
    groups: dict[tuple, list] = defaultdict(list)
    names = {}
    for pair in by_visit.values():
        if len(pair) != 2:
            continue
        first, second = sorted(pair.values(), key=lambda r: r.task.reader_id)
        month = max(first.signed_at, second.signed_at).strftime("%Y-%m")
        key = (first.task.reader_id, second.task.reader_id, month)
        names[key[:2]] = (first.task.reader.user.get_username(), second.task.reader.user.get_username())
        groups[key].append((first.overall, second.overall))
    return [{"reader_ids": key[:2], "readers": names[key[:2]], "month": key[2], "ratings": ratings}
            for key, ratings in sorted(groups.items())]


def adjudication_inputs(*, trial: Trial, user=None) -> list[dict]:
    """Adjudications of the trial with which reader's read was selected: for adjudication rate and
    adjudicator agreement per reader."""
    _require_oversight(user=user, trial=trial)
    rows = []
    for adj in Adjudication.objects.filter(trial=trial).exclude(status=Adjudication.Status.SUPERSEDED).order_by("pk"):
        slots = dict(Read.objects.filter(pk__in=adj.reads_a[:1] + adj.reads_b[:1])
                     .values_list("task__slot", "task__reader_id"))
        rows.append({"adjudication_id": adj.pk, "subject_id": adj.subject_id, "month": adj.created_at.strftime("%Y-%m"),
                     "status": adj.status, "readers": slots, "selected": adj.selected,
                     "selected_reader": slots.get(adj.selected) if adj.selected else None})
    return rows


# -- what the reading pages act on (models for the services, after the same checks as the views above) ------

def task_get_for_reader(*, user, task_id: int) -> ReadTask:
    """The reader's own live task as a model, for the services (which check locking themselves). Http404 else."""
    task = (ReadTask.objects.select_related("subject__trial", "visit", "reader")
            .filter(pk=task_id, status__in=ReadTask.LIVE).first())
    if task is None or task.reader.user_id != getattr(user, "pk", None) or not has_perm(
            user=user, perm=Perm.READ, trial_id=task.trial_id):
        raise Http404("No such read task")
    return task


def read_signed_for_reader(*, user, task_id: int) -> Read | None:
    """The current signed version of the reader's own task (what a correction corrects), or None."""
    task = task_get_for_reader(user=user, task_id=task_id)
    return task.reads.filter(status=Read.Status.SIGNED).select_related("task__subject__trial", "task__visit").first()


def read_signatures_for_reader(*, user, task_id: int) -> dict[int, list]:
    """The signatures on each version of the reader's own task, each checked against the stored read."""
    from audit.signatures import signature_list_for_record

    from .services import read_signed_content

    task = task_get_for_reader(user=user, task_id=task_id)
    return {read.version: signature_list_for_record(record_type="reads.read", record_id=read.record_id,
                                                    content=read_signed_content(read=read))
            for read in task.reads.exclude(signature=None).select_related("task__subject", "task__visit")}


@dataclass(frozen=True)
class AdjudicationImages:
    """What the adjudication page's viewer shows: the baseline's studies on the left, the later timepoints'
    (latest first) on the right, and both readers' signed measurements, labelled by slot only."""
    baseline_uids: list[str]
    later_uids: list[str]
    annotations: list[tuple[str, str, str]]  # (key, label, geometry as JSON)


def adjudication_images(*, user, adj_id: int) -> AdjudicationImages:
    from .dicomweb.selectors import study_uids_for_visits

    view = adjudication_for(user=user, adj_id=adj_id)
    adj = Adjudication.objects.get(pk=view.adjudication_id)
    reads = list(Read.objects.filter(pk__in=[*adj.reads_a, *adj.reads_b]).select_related("task__visit")
                 .order_by("task__visit__nominal_date", "task__visit_id", "task__slot"))
    visit_ids = list(dict.fromkeys(r.task.visit_id for r in reads))
    uids = study_uids_for_visits(user=user, visit_ids=visit_ids)
    later = [uid for visit_id in reversed(visit_ids[1:]) for uid in uids.get(visit_id, [])]
    annotations = []
    for read in reads:
        measured = read.lesions.get("annotations") if isinstance(read.lesions, dict) else None
        for lesion_id, geometry in sorted((measured or {}).items()):
            if isinstance(geometry, dict):
                label = f"{read.task.slot} · {read.task.visit.timepoint} · {lesion_id}"
                annotations.append((f"{read.task.slot}:{read.task.visit.timepoint}:{lesion_id}", label,
                                    json.dumps(geometry, separators=(",", ":"))))
    return AdjudicationImages(baseline_uids=uids.get(visit_ids[0], []) if visit_ids else [], later_uids=later,
                              annotations=annotations)


def adjudication_get_for_adjudicator(*, user, adj_id: int) -> Adjudication:
    """The adjudication as a model for adjudication_resolve, after adjudication_for's check."""
    view = adjudication_for(user=user, adj_id=adj_id)
    return Adjudication.objects.get(pk=view.adjudication_id)


def adjudication_signatures(*, user, adj_id: int) -> list:
    """The adjudicator's signature on a resolved adjudication (their own), checked against the record."""
    from audit.signatures import signature_list_for_record

    from .services import adjudication_content

    adj = adjudication_get_for_adjudicator(user=user, adj_id=adj_id)
    if adj.signature_id is None:
        return []
    return signature_list_for_record(record_type="reads.adjudication", record_id=adj.pk,
                                     content=adjudication_content(adjudication=adj, selected=adj.selected,
                                                                  rationale=adj.rationale))


@dataclass(frozen=True)
class PoolTaskRow:
    task: ReadTask
    subject_code: str
    reading_id: str  # what the readers know the subject by
    timepoint: str
    slot: str
    reader: str
    status: str


def reading_trials_for(*, user) -> list[dict]:
    """The trials where the user reads, adjudicates or manages the reader pool, with what they may open."""
    from trials.permissions import trial_ids_with

    perms = {p: trial_ids_with(user=user, perm=p) for p in (Perm.READ, Perm.ADJUDICATE, Perm.MANAGE_TRIAL)}
    ids = set().union(*perms.values())
    return [{"trial": trial, "reads": trial.pk in perms[Perm.READ], "adjudicates": trial.pk in perms[Perm.ADJUDICATE],
             "manages": trial.pk in perms[Perm.MANAGE_TRIAL]}
            for trial in Trial.objects.filter(pk__in=ids).order_by("protocol_number")]


def reader_pool_for(*, user, trial: Trial) -> dict:
    """The trial's reader pool for its manager: readers with their trainings and open workload, the members
    who could join, every task (live and replaced) and the current protocol version. Http404 for others."""
    from django.db.models import Count, Q

    from trials.models import Membership, ProtocolVersion
    from trials.permissions import roles_with

    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    open_statuses = [ReadTask.Status.OPEN, ReadTask.Status.IN_PROGRESS]
    readers = list(Reader.objects.filter(trial=trial).select_related("user")
                   .prefetch_related("trainings__protocol_version")
                   .annotate(open_tasks=Count("tasks", filter=Q(tasks__status__in=open_statuses)))
                   .order_by("-active", "user__username"))
    in_pool = {r.user_id for r in readers}
    roles = set(roles_with(Perm.READ)) | set(roles_with(Perm.ADJUDICATE))
    candidates = (Membership.objects.filter(trial=trial, role__in=roles).exclude(user_id__in=in_pool)
                  .select_related("user").order_by("user__username"))
    tasks = (ReadTask.objects.filter(trial=trial).select_related("subject__trial", "visit", "reader__user")
             .order_by("subject__code", "visit__nominal_date", "slot", "pk"))
    return {"readers": readers,
            "candidates": sorted({m.user for m in candidates}, key=lambda u: u.get_username()),
            "tasks": [PoolTaskRow(task=t, subject_code=t.subject.code, reading_id=reading_id(subject=t.subject),
                                  timepoint=t.visit.timepoint, slot=t.slot,
                                  reader=t.reader.user.get_username(), status=t.get_status_display())
                      for t in tasks],
            "version": ProtocolVersion.objects.filter(trial=trial, is_current=True).first()}


def reader_get_for_manager(*, user, trial: Trial, reader_id: int) -> Reader:
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    reader = Reader.objects.select_related("user").filter(trial=trial, pk=reader_id).first()
    if reader is None:
        raise Http404("No such reader")
    return reader


def task_get_for_manager(*, user, trial: Trial, task_id: int) -> ReadTask:
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    task = ReadTask.objects.select_related("subject__trial", "visit", "reader").filter(trial=trial, pk=task_id).first()
    if task is None:
        raise Http404("No such read task")
    return task


def member_get_for_pool(*, user, trial: Trial, user_id: int):
    """A member of the trial holding the reader or adjudicator role, for reader_add (which checks again)."""
    from trials.models import Membership
    from trials.permissions import roles_with

    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    roles = set(roles_with(Perm.READ)) | set(roles_with(Perm.ADJUDICATE))
    membership = Membership.objects.filter(trial=trial, user_id=user_id, role__in=roles).select_related("user").first()
    if membership is None:
        raise Http404("No such member")
    return membership.user
