"""De-identification reads, scoped by user: 404 for missing and forbidden alike."""

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.shortcuts import get_object_or_404
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from deid.engine.apply import DUMMY, values_of
from intake.models import ImagingStudy, Instance
from trials.models import Trial
from trials.permissions import Perm, has_perm, require, trial_ids_with

from .models import DeidProfile, DeidRecord

S, IS = ImagingStudy.Status, Instance.Status
# studies whose instances are de-identified: not waiting in the inbox, not rejected or closed
DEID_STUDY_STATUSES = (S.RECEIVED, S.DEIDENTIFYING, S.DEIDENTIFIED, S.QC_PENDING)

MAPPING_COLUMNS = ["subject_code", "patient_id_hash", "study_uid_hash", "study_uid", "series_uid_hash",
                   "series_uid", "sop_uid_hash", "sop_uid", "profile_version", "deid_sha256"]


def trial_get_for_mapping(*, user, trial_id: int) -> Trial:
    """The trial whose pseudonym mapping the user may export (trial managers)."""
    trial = get_object_or_404(Trial, pk=trial_id)
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    return trial


def profile_list_for_user(*, user, trial: Trial):
    """The trial's profile versions, newest first (trial managers)."""
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    return DeidProfile.objects.filter(trial=trial).select_related("created_by").order_by("-version")


def mapping_rows(*, user, trial: Trial) -> Iterator[dict]:
    """Original identifier hashes -> pseudonyms for every released instance of the trial (trial managers).

    Hashes are the keyed ones intake stores (no original identifier exists in the database); pseudonyms
    are the subject code and the ``2.25.`` UIDs written into the archived files.
    """
    require(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    records = (DeidRecord.objects.filter(instance__study__trial=trial, outcome=DeidRecord.Outcome.RELEASED)
               .select_related("instance__study__subject", "instance__series", "profile")
               .order_by("instance__study__subject__code", "instance__study_id", "instance__series_id",
                         "instance_id"))
    for record in records.iterator(chunk_size=2000):
        instance = record.instance
        study = instance.study
        yield {"subject_code": study.subject.code if study.subject_id else "",
               "patient_id_hash": study.patient_id_hash, "study_uid_hash": study.study_uid_hash,
               "study_uid": record.study_uid, "series_uid_hash": instance.series.series_uid_hash,
               "series_uid": record.series_uid, "sop_uid_hash": instance.sop_uid_hash, "sop_uid": record.sop_uid,
               "profile_version": record.profile.version, "deid_sha256": record.output_sha256}


# -- the profile page and its preview ------------------------------------------------------------------------

def trial_list_for_profile(*, user):
    """Trials whose de-identification profile the user may see and change (trial managers)."""
    return Trial.objects.filter(pk__in=trial_ids_with(user=user, perm=Perm.MANAGE_TRIAL)).order_by("protocol_number")


def trial_get_for_profile(*, user, trial_id: int) -> Trial:
    """The trial whose profile page the user may open (trial managers); 404 otherwise."""
    return get_object_or_404(trial_list_for_profile(user=user), pk=trial_id)


_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_DATE_VRS = frozenset({"DA", "DT"})
HIDDEN = "hidden"


@dataclass(frozen=True)
class PreviewRow:
    """One attribute, original vs. de-identified. ``original`` is HIDDEN for users without VIEW_QUARANTINE."""

    depth: int
    tag: str
    keyword: str
    vr: str
    action: str
    value: str
    original: str


def _shown(elem: DataElement | None) -> str:
    if elem is None:
        return ""
    if elem.VR == "SQ":
        return f"{len(elem.value)} item(s)"
    if elem.VR in _BINARY_VRS or isinstance(elem.value, bytes):
        return f"<{len(elem.value or b'')} bytes>"
    if elem.value is None:
        return ""
    values = values_of(elem)
    text = "\\".join(str(v) for v in values)
    return text if len(text) <= 200 else text[:200] + "…"


def _action(before: DataElement, after: DataElement) -> str:
    if before.value == after.value:
        return "kept"
    if after.is_empty:
        return "emptied"
    if after.VR == "UI":
        return "UID mapped"
    if after.VR in _DATE_VRS and str(after.value) not in (DUMMY["DA"], DUMMY["DT"]):
        return "date shifted"
    return "replaced"


def _compare(original: Dataset | None, output: Dataset | None, *, depth: int, show: bool) -> list[PreviewRow]:
    original = original if original is not None else Dataset()
    output = output if output is not None else Dataset()
    rows: list[PreviewRow] = []
    for tag in sorted(set(original.keys()) | set(output.keys())):
        before = original[tag] if tag in original else None
        after = output[tag] if tag in output else None
        elem = after if after is not None else before
        children: list[PreviewRow] = []
        if before is None:
            action = "added"
        elif after is None:
            action = "removed"
        elif elem.VR == "SQ" and before.VR == after.VR == "SQ":
            if not after.value and before.value:
                action = "emptied"
            else:
                for number in range(max(len(before.value), len(after.value))):
                    old = before.value[number] if number < len(before.value) else None
                    new = after.value[number] if number < len(after.value) else None
                    children.extend(_compare(old, new, depth=depth + 1, show=show))
                action = "kept" if all(child.action == "kept" for child in children) else "changed inside"
        else:
            action = _action(before, after)
        keyword = elem.keyword or ("private" if elem.tag.is_private else "")
        rows.append(PreviewRow(depth=depth, tag=f"({tag >> 16:04X},{tag & 0xFFFF:04X})", keyword=keyword,
                               vr=str(elem.VR), action=action, value=_shown(after),
                               original=_shown(before) if show else HIDDEN))
        rows.extend(children)
    return rows


def preview_rows(*, original: Dataset, output: Dataset, show_original: bool) -> list[PreviewRow]:
    """Every attribute of both files, file meta first, nested sequences in order: what the engine did to it.

    The engine's Report counts actions but does not say which tag got which, so the actions here come
    from comparing the two datasets: removed, emptied, replaced, UID mapped, date shifted, kept, added.
    """
    meta = _compare(getattr(original, "file_meta", None), getattr(output, "file_meta", None), depth=0,
                    show=show_original)
    return meta + _compare(original, output, depth=0, show=show_original)


@dataclass
class Preview:
    """A sample file through the engine, for the profile page; nothing of it is stored."""

    source: str  # "current" or "unsaved"
    version: int | None  # the profile version previewed (None: unsaved settings)
    options: list[str]
    size: int
    sha256: str
    show_original: bool
    subject_code: str
    rows: list[PreviewRow] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    error: str = ""
    passed: bool = False
    changes: list[str] = field(default_factory=list)  # unsaved settings against the current version


# -- held outputs, for QC review ---------------------------------------------------------------------------

def held_list_for_study(*, user, study: ImagingStudy) -> list[DeidRecord]:
    """Held and reviewed outputs of a study, the latest record per instance, for the trial's QC reviewers."""
    if not has_perm(user=user, perm=Perm.QC_REVIEW, trial_id=study.trial_id):
        return []
    records = (DeidRecord.objects.filter(instance__study=study).exclude(held_key="")
               .select_related("instance__series", "profile", "reviewed_by")
               .order_by("instance__series__series_number", "instance_id", "-profile__version"))
    latest = {}
    for record in records:
        latest.setdefault(record.instance_id, record)
    return [r for r in latest.values() if r.outcome == DeidRecord.Outcome.HELD or r.reviewed_at is not None]


def held_studies_for_user(*, user) -> list[dict]:
    """Studies of the user's QC trials with outputs still held for review: [{"study", "held"}], oldest first."""
    latest = (DeidRecord.objects.filter(instance__study__trial_id__in=trial_ids_with(user=user, perm=Perm.QC_REVIEW),
                                        instance__status=IS.FAILED, instance__study__status__in=DEID_STUDY_STATUSES)
              .select_related("instance__study__trial", "instance__study__site", "instance__study__subject",
                              "profile")
              .order_by("instance_id", "-profile__version").distinct("instance_id"))
    studies: dict[int, dict] = {}
    for record in latest:
        if record.outcome == DeidRecord.Outcome.HELD and record.held_key:
            entry = studies.setdefault(record.instance.study_id, {"study": record.instance.study, "held": 0,
                                                                  "since": record.created_at})
            entry["held"] += 1
            entry["since"] = min(entry["since"], record.created_at)
    return sorted(studies.values(), key=lambda entry: (entry["since"], entry["study"].pk))


def held_get_for_review(*, user, record_id: int) -> DeidRecord:
    """A record with a held output, for the trial's QC reviewers; 404 for missing and forbidden alike."""
    return get_object_or_404(
        DeidRecord.objects.select_related("instance__study__trial", "instance__study__site",
                                          "instance__study__subject", "instance__series", "profile", "reviewed_by")
        .exclude(held_key=""),
        pk=record_id, instance__study__trial_id__in=trial_ids_with(user=user, perm=Perm.QC_REVIEW))


def released_study_uids(*, study_id: int) -> list[str]:
    """The de-identified Study Instance UID(s) under which one ImagingStudy's released instances are archived:
    what DICOMweb serves it as. The caller has already checked the user may see the study."""
    return list(DeidRecord.objects.filter(outcome=DeidRecord.Outcome.RELEASED, instance__study_id=study_id,
                                          output_storage="archive").exclude(study_uid="")
                .order_by("study_uid").values_list("study_uid", flat=True).distinct())
