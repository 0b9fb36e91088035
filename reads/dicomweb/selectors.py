"""Which archived instances a user may retrieve through DICOMweb. Every DICOMweb view asks here first.

Who sees what (anything else is 404, never 403, so existence does not leak):

- QC analysts (Perm.QC_REVIEW), trial managers and auditors (Perm.VIEW_AUDIT): every archived instance of
  their trials' studies that de-identification released, from the study's de-identification to its QC
  decision (superseded versions are left out: they are no longer the subject's images).
- Readers (Perm.READ): the accepted studies of the timepoints of their own live read tasks that are signed
  or unlocked (the earlier timepoints signed first), so a follow-up can be read beside its baseline. Their
  responses carry no site identity (``dicom.SITE_IDENTITY_TAGS``).
- Adjudicators (Perm.ADJUDICATE): the accepted studies of the timepoints compared in the adjudications
  assigned to them (open or resolved), blinded like readers, so they can see what readers A and B measured.
- Site coordinators and sponsors: nothing here.

Besides the images, those who see a study unblinded get the stored measurement reports of its signed reads
(DICOM SR, ``reads.reports``), each in a series of its own under the study, as it was stored.

The UIDs are the de-identified ones, as de-identification recorded them on the released DeidRecord;
attributes come from the archived file's header, read once and cached in Redis under its sha256 (an archived
object never changes, so the cache never goes stale).
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.cache import cache
from django.core.files.storage import storages
from django.db.models import Exists, F, OuterRef, Q, Subquery

from deid.models import DeidRecord
from deid.selectors import released_study_uids
from intake.models import ImagingStudy, Instance
from trials.models import Visit
from trials.permissions import Perm, trial_ids_by_perm

from ..blinding import reading_id_for_code
from ..models import Adjudication, MeasurementReport, Read, ReadTask
from . import dicom

S = ImagingStudy.Status
OVERSIGHT_STATUSES = (S.DEIDENTIFIED, S.QC_PENDING, S.ACCEPTED, S.REJECTED)
HEADER_CACHE_SECONDS = 30 * 24 * 3600
HEADER_CACHE_PREFIX = "dicomweb:header:v1:"
PATIENT_ID, PATIENT_NAME = "00100020", "00100010"  # a blinded reader gets the reading ID in both


@dataclass(frozen=True)
class InstanceRow:
    instance_id: int
    study_id: int
    trial_id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    key: str        # object name in archive storage
    sha256: str
    size: int | None
    blinded: bool   # seen as a reader: no site identity


def _reader_visit_ids(*, user, trial_ids: set[int]) -> set[int]:
    """Visits of the reader's live tasks they may open: signed ones, and unsigned ones no longer locked.

    ``services.lock_reason``'s rule, decided in Python from one query for all the reader's tasks (it costs
    three queries a task, and this runs on every frame the viewer fetches): an unsigned task is locked while a
    live task of the same subject and slot at an earlier visit is unsigned, or while the subject's baseline (its
    first visit) is not an earlier, signed task of that slot."""
    mine = ReadTask.objects.filter(reader__user=user, reader__active=True, trial_id__in=trial_ids,
                                   status__in=ReadTask.LIVE)
    baseline = Visit.objects.filter(subject=OuterRef("subject_id")).order_by("nominal_date", "pk").values("pk")[:1]
    rows = list(ReadTask.objects.filter(status__in=ReadTask.LIVE, subject_id__in=mine.values("subject_id"))
                .annotate(mine=Exists(mine.filter(pk=OuterRef("pk"))), baseline_id=Subquery(baseline))
                .values_list("mine", "subject_id", "slot", "status", "visit_id", "visit__nominal_date",
                             "baseline_id", named=True).order_by())
    by_slot: dict[tuple[int, str], list] = {}
    for row in rows:
        by_slot.setdefault((row.subject_id, row.slot), []).append(row)
    visits = set()
    for task in rows:
        if not task.mine:
            continue
        earlier = [row for row in by_slot[task.subject_id, task.slot]
                   if row.visit__nominal_date < task.visit__nominal_date]
        unlocked = (not any(row.status != ReadTask.Status.SIGNED for row in earlier)
                    and (task.baseline_id is None or task.visit_id == task.baseline_id
                         or any(row.visit_id == task.baseline_id and row.status == ReadTask.Status.SIGNED
                                for row in earlier)))
        if task.status == ReadTask.Status.SIGNED or unlocked:
            visits.add(task.visit_id)
    return visits


def _adjudicated_visit_ids(*, user, trial_ids: set[int]) -> set[int]:
    """Visits whose reads are compared in the adjudications assigned to the user, open or resolved."""
    read_ids = set()
    for reads_a, reads_b in (Adjudication.objects
                             .filter(adjudicator__user=user, adjudicator__active=True, trial_id__in=trial_ids)
                             .exclude(status=Adjudication.Status.SUPERSEDED).values_list("reads_a", "reads_b")):
        read_ids.update(reads_a, reads_b)
    return set(Read.objects.filter(pk__in=read_ids).values_list("task__visit_id", flat=True))


@dataclass(frozen=True)
class _Scope:
    studies: Q                  # a filter on ImagingStudy the user may see
    blinded_trials: set[int]    # the trials in which they see blinded
    unblinded_trials: set[int]  # the trials in which they see unblinded (the only ones with reports for them)


def _scope_for_user(*, user) -> _Scope:
    """The user's DICOMweb scope, from one Membership query plus the reader/adjudicator visit queries; computed
    afresh on every request (never cached: a reader's access changes the moment a task is locked or reassigned)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return _Scope(Q(pk__in=[]), set(), set())
    perms = trial_ids_by_perm(user=user, perms=(Perm.QC_REVIEW, Perm.VIEW_AUDIT, Perm.READ, Perm.ADJUDICATE))
    oversight = perms[Perm.QC_REVIEW] | perms[Perm.VIEW_AUDIT]
    reading = perms[Perm.READ] - oversight
    adjudicating = perms[Perm.ADJUDICATE] - oversight
    scope = Q(trial_id__in=oversight, status__in=OVERSIGHT_STATUSES)
    visits = set()
    if reading:
        visits |= _reader_visit_ids(user=user, trial_ids=reading)
    if adjudicating:
        visits |= _adjudicated_visit_ids(user=user, trial_ids=adjudicating)
    if visits:
        scope |= Q(trial_id__in=reading | adjudicating, visit_id__in=visits, status=S.ACCEPTED)
    return _Scope(scope, reading | adjudicating, oversight)


def _on_related(scope: Q, path: str) -> Q:
    """The same filter on the ImagingStudy at ``path``: filtered on the join the query makes anyway, where an
    ``__in`` subquery would join the study table a second time."""
    children = [_on_related(child, path) if isinstance(child, Q) else (f"{path}__{child[0]}", child[1])
                for child in scope.children]
    return Q(*children, _connector=scope.connector, _negated=scope.negated)


def study_scope_for_user(*, user) -> tuple[Q, set[int]]:
    """(a filter on ImagingStudy the user may see, the trials in which they see blinded)."""
    scope = _scope_for_user(user=user)
    return scope.studies, scope.blinded_trials


def study_uids_for_visits(*, user, visit_ids: Iterable[int]) -> dict[int, list[str]]:
    """The de-identified Study Instance UIDs of each visit's studies the user may see (the viewer's entry)."""
    scope, _ = study_scope_for_user(user=user)
    found: dict[int, list[str]] = {}
    rows = (DeidRecord.objects.filter(outcome=DeidRecord.Outcome.RELEASED, output_storage="archive",
                                      instance__study__in=ImagingStudy.objects.filter(scope, visit_id__in=visit_ids))
            .exclude(study_uid="").order_by("instance__study__visit_id", "study_uid")
            .values_list("instance__study__visit_id", "study_uid").distinct())
    for visit_id, study_uid in rows:
        found.setdefault(visit_id, []).append(study_uid)
    return found


def instance_rows_for_user(*, user, study_uid: str | None = None, series_uid: str | None = None,
                           sop_uid: str | None = None, study_uids: Iterable[str] = ()) -> list[InstanceRow]:
    """The archived instances the user may see, narrowed by de-identified UIDs, in study/series/arrival order."""
    found = _scope_for_user(user=user)
    scope, blinded_trials = found.studies, found.blinded_trials
    study_uids = [uid for uid in study_uids if uid]
    filters = {key: value for key, value in {"study_uid": study_uid, "study_uid__in": study_uids or None,
                                             "series_uid": series_uid, "sop_uid": sop_uid}.items()
               if value is not None}
    # one filter() call: building the query costs more than running it, on every frame request
    records = DeidRecord.objects.filter(
        _on_related(scope, "instance__study"), outcome=DeidRecord.Outcome.RELEASED, output_storage="archive",
        instance__status=Instance.Status.DEIDENTIFIED, instance__deid_key=F("output_key"), **filters)
    if not (study_uid or study_uids):
        records = records.exclude(study_uid="")  # implied by a UID asked for
    rows = records.order_by("study_uid", "series_uid", "instance_id").values_list(
        "instance_id", "instance__study_id", "instance__study__trial_id", "study_uid", "series_uid", "sop_uid",
        "output_key", "output_sha256", "output_size")
    seen: set[tuple[str, str]] = set()
    result = []
    for row in rows:
        if (row[3], row[5]) in seen:
            continue  # the same SOP Instance UID in two versions of a study: the first filed answers
        seen.add((row[3], row[5]))
        result.append(InstanceRow(*row, blinded=row[2] in blinded_trials))
    if not found.unblinded_trials or (sop_uid is not None and result):
        return result  # no report for a blinded user; and an image answered the one SOP Instance UID asked for
    reports = _report_rows(user=user, scope=scope, blinded_trials=blinded_trials, **filters)
    if reports:  # each in a series of its own, after the images' series of the same study
        result = sorted(result + reports, key=lambda r: (r.study_uid, r.instance_id < 0))
    return result


def _report_rows(*, user, scope: Q, blinded_trials: set[int], **filters) -> list[InstanceRow]:
    """The stored measurement reports (DICOM SR of signed reads, ``reads.reports``) of the studies in scope, for
    those who see the trial's studies unblinded (QC, managers, auditors): a reader never sees another reader's
    measurements, so readers and adjudicators get none here. Instance ids are negative (no Instance row)."""
    rows = (MeasurementReport.objects
            .filter(_on_related(scope, "study"), status=MeasurementReport.Status.STORED, **filters)
            .exclude(study__trial_id__in=blinded_trials)
            .order_by("study_uid", "series_uid", "pk")
            .values_list("pk", "study_id", "study__trial_id", "study_uid", "series_uid", "sop_uid", "archive_key",
                         "sha256", "size"))
    return [InstanceRow(-pk, *rest, blinded=False) for pk, *rest in rows]


def study_uids_for_study(*, user, study_id: int) -> list[str]:
    """The de-identified Study Instance UID(s) of one ImagingStudy the user may see (GET /dicomweb/corelab/studies/{id})."""
    scope, _ = study_scope_for_user(user=user)
    if not ImagingStudy.objects.filter(scope, pk=study_id).exists():
        return []
    return released_study_uids(study_id=study_id)


def headers_for(rows: Iterable[InstanceRow]) -> dict[str, dict]:
    """Header summaries (``dicom.read_header``) by sha256: from the cache, else read from the archive and cached."""
    rows = list(rows)
    keys = {HEADER_CACHE_PREFIX + row.sha256: row for row in rows}
    found = cache.get_many(list(keys))
    headers = {key[len(HEADER_CACHE_PREFIX):]: value for key, value in found.items()}
    missing = {}
    for key, row in keys.items():
        if key in found:
            continue
        with storages["archive"].open(row.key, "rb") as stream:
            header = dicom.read_header(stream)
        headers[row.sha256] = header
        missing[key] = header
    if missing:
        cache.set_many(missing, timeout=HEADER_CACHE_SECONDS)
    return headers


def header_json(row: InstanceRow, header: dict) -> dict:
    """The instance's DICOM JSON as this row's user may see it: a blinded reader's has no site identity, and
    names the subject by its reading ID (reads.blinding) where de-identification wrote the subject code."""
    data = header["json"]
    if not row.blinded:
        return dict(data)
    data = dicom.without_site_identity(data)
    code = (data.get(PATIENT_ID, {}).get("Value") or [""])[0]
    alias = reading_id_for_code(trial_id=row.trial_id, code=str(code))
    data[PATIENT_ID] = {"vr": "LO", "Value": [alias]}
    data[PATIENT_NAME] = {"vr": "PN", "Value": [{"Alphabetic": alias}]}
    return data
