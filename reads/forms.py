"""The read form's fields, turned into the lesions the RECIST engine takes, and back.

The form never sends the engine anything malformed: every number, choice and required field is checked
here first, and each problem comes back as a sentence naming the lesion. RECIST's own rules (how many
targets, what is measurable) are left to ``reads.recist.baseline_check``, whose codes ``explain`` puts into
words.
"""

import json
import re
from decimal import Decimal, InvalidOperation

from django import forms

from . import recist

TARGET_ROWS = 6      # one more than RECIST allows, so a sixth target is refused with its reason
NON_TARGET_ROWS = 5
ORGANS = ["LUNG", "LIVER", "LYMPH NODE", "BONE", "BRAIN", "ADRENAL", "KIDNEY", "PLEURA", "PERITONEUM", "SPLEEN",
          "PANCREAS", "SOFT TISSUE", "SKIN", "OTHER"]
TARGET_STATES = [("measured", "Measured"), ("TSTM", "Too small to measure (5 mm)"), ("ABSENT", "Absent (0 mm)"),
                 ("NE", "Not evaluated")]
NON_TARGET_STATES = [("PRESENT", "Present"), ("ABSENT", "Absent"),
                     ("UNEQUIVOCAL PROGRESSION", "Unequivocal progression"), ("NE", "Not evaluated")]
NEW_LESIONS = [("NO", "No"), ("YES", "Yes"), ("EQUIVOCAL", "Equivocal")]
MAX_MM = Decimal(1000)


def explain(code: str) -> str:
    """A RECIST baseline-check code in words."""
    kind, _, what = code.partition(":")
    return {
        "MAX_TARGETS_EXCEEDED": "More than 5 target lesions: RECIST 1.1 allows at most 5 in total.",
        "MAX_PER_ORGAN_EXCEEDED": f"More than 2 target lesions in {what.title()}: at most 2 per organ "
                                  "(all lymph nodes count as one organ).",
        "NOT_MEASURABLE": f"{what} is not measurable: non-nodal targets need a long axis of at least 10 mm "
                          "(twice the slice thickness when slices are thicker than 5 mm, 20 mm on chest X-ray, "
                          "never on ultrasound); nodal targets need a short axis of at least 15 mm on CT or MR.",
        "NORMAL_NODE": f"{what} is a normal lymph node (short axis under 10 mm): it is not a lesion at all.",
    }.get(kind, code)


def _mm(raw: str, label: str, errors: list[str], *, required: bool) -> Decimal | None:
    raw = (raw or "").strip().replace(",", ".")
    if not raw:
        if required:
            errors.append(f"{label}: enter the diameter in mm")
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        errors.append(f"{label}: {raw!r} is not a number of mm")
        return None
    if not value.is_finite() or value < 0 or value > MAX_MM:
        errors.append(f"{label}: {raw} mm is out of range (0 to 1000 mm)")
        return None
    return value


def _number(value: Decimal | None):
    """Decimal → the JSON number the engine reads through its text (12.5 stays 12.5)."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _organ(raw: str) -> str:
    return re.sub(r"\s+", " ", (raw or "").strip().upper())[:40]


def _annotation(raw: str, label: str, errors: list[str]) -> dict | None:
    """A row's measurement geometry from the viewer (hidden field, JSON); reads.services checks its shape."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        errors.append(f"{label}: the measurement drawn in the viewer is unreadable; measure it again")
        return None
    return value


def _with_annotations(lesions: dict, annotations: dict) -> dict:
    if annotations:
        lesions["annotations"] = annotations
    return lesions


def annotation_json(lesions: dict | None, lesion_id: str) -> str:
    """The stored geometry of one lesion's measurement, as the JSON the viewer reads ('' when none)."""
    annotations = lesions.get("annotations") if isinstance(lesions, dict) else None
    value = annotations.get(lesion_id) if isinstance(annotations, dict) else None
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else ""


def baseline_from_post(data) -> tuple[dict, list[str]]:
    """The baseline's target and non-target lesions from the form (empty rows skipped), and any errors."""
    errors: list[str] = []
    targets, non_targets, annotations = [], [], {}
    for i in range(TARGET_ROWS):
        def get(name: str, i: int = i) -> str:
            return (data.get(f"t-{i}-{name}") or "").strip()
        if not any(get(n) for n in ("organ", "long", "short")):
            continue
        label = f"Target {len(targets) + 1}"
        organ, nodal, modality = _organ(get("organ")), get("nodal") in ("on", "1", "true"), get("modality") or "CT"
        if not organ:
            errors.append(f"{label}: choose the organ")
        if modality not in recist.MODALITIES:
            errors.append(f"{label}: choose the modality")
        long_mm = _mm(get("long"), f"{label} long axis", errors, required=not nodal)
        short_mm = _mm(get("short"), f"{label} short axis", errors, required=nodal)
        thickness = _mm(get("slice"), f"{label} slice thickness", errors, required=False)
        mm = short_mm if nodal else long_mm
        if mm is not None and mm == 0:
            errors.append(f"{label}: a target lesion's diameter must be above 0 mm")
        geometry = _annotation(get("annotation"), label, errors)
        if geometry is not None:
            annotations[f"T{len(targets) + 1}"] = geometry
        targets.append({"id": f"T{len(targets) + 1}", "organ": organ, "nodal": nodal, "mm": _number(mm),
                        "long_axis_mm": _number(long_mm), "short_axis_mm": _number(short_mm),
                        "modality": modality, "slice_thickness_mm": _number(thickness)})
    for i in range(NON_TARGET_ROWS):
        def get(name: str, i: int = i) -> str:
            return (data.get(f"nt-{i}-{name}") or "").strip()
        if not get("organ"):
            continue
        label = f"Non-target {len(non_targets) + 1}"
        nodal, modality = get("nodal") in ("on", "1", "true"), get("modality") or "CT"
        if modality not in recist.MODALITIES:
            errors.append(f"{label}: choose the modality")
        short_mm = _mm(get("short"), f"{label} short axis", errors, required=False)
        lesion = {"id": f"NT{len(non_targets) + 1}", "organ": _organ(get("organ")), "nodal": nodal,
                  "modality": modality,
                  "slice_thickness_mm": _number(_mm(get("slice"), f"{label} slice thickness", errors,
                                                    required=False))}
        if nodal and short_mm is not None:
            lesion["mm"] = _number(short_mm)
        non_targets.append(lesion)
    if not targets and not non_targets:
        errors.append("Record at least one lesion: targets with their diameters, or non-target lesions")
    return _with_annotations({"targets": targets, "non_targets": non_targets}, annotations), errors


def _split(raw: str, label: str, errors: list[str]):
    """"12" → 12; "8 + 6" (a split lesion's parts) → [8, 6]."""
    parts = [p for p in re.split(r"[+;/]|\s{2,}", raw or "") if p.strip()]
    if len(parts) <= 1:
        return _number(_mm(raw, label, errors, required=True))
    values = [_mm(p, f"{label} (part {n})", errors, required=True) for n, p in enumerate(parts, start=1)]
    return [_number(v) for v in values]


def followup_from_post(data, *, baseline: dict, earlier_visits: list[str]) -> tuple[dict, list[str]]:
    """A follow-up's measurements of the baseline's lesions, non-target statuses and new lesions."""
    errors: list[str] = []
    targets, annotations = {}, {}
    for lesion in baseline.get("targets", []):
        lid = lesion["id"]
        state = data.get(f"fu-{lid}-state") or "measured"
        if state == "measured":
            targets[lid] = _split(data.get(f"fu-{lid}-mm", ""), f"{lid} ({lesion.get('organ', '')})", errors)
            geometry = _annotation(data.get(f"fu-{lid}-annotation", ""), lid, errors)
            if geometry is not None:
                annotations[lid] = geometry
        elif state in ("TSTM", "ABSENT"):
            targets[lid] = state
        elif state == "NE":
            targets[lid] = None
        else:
            errors.append(f"{lid}: choose how the lesion was assessed")
    lesions = {"targets": targets}
    if baseline.get("non_targets"):
        statuses = {}
        for lesion in baseline["non_targets"]:
            value = data.get(f"fu-{lesion['id']}-status") or ""
            if value not in recist.NON_TARGET_STATUSES:
                errors.append(f"{lesion['id']}: choose the non-target lesion's status")
                value = "NE"
            statuses[lesion["id"]] = value
        lesions["non_targets"] = statuses
    new = data.get("new_lesions") or ""
    if new not in recist.NEW_LESIONS:
        errors.append("New lesions: answer no, yes or equivocal")
        new = "NO"
    lesions["new_lesions"] = new
    first_seen = (data.get("first_seen") or "").strip()
    if first_seen:
        if new != "YES":
            errors.append("Only a new lesion reported as present can have been first seen at an earlier visit")
        elif first_seen not in earlier_visits:
            errors.append(f"{first_seen!r} is not one of your earlier follow-up timepoints")
        else:
            lesions["new_lesion_first_seen_visit"] = first_seen
    return _with_annotations(lesions, annotations), errors


def baseline_rows(lesions: dict | None) -> dict:
    """The baseline form's rows, filled from saved lesions (for a draft or a correction)."""
    lesions = lesions or {}

    def shown(lesion: dict) -> dict:
        nodal, mm = bool(lesion.get("nodal")), lesion.get("mm")
        long_mm = lesion.get("long_axis_mm", None if nodal else mm)
        short_mm = lesion.get("short_axis_mm", mm if nodal else None)
        blank = lambda v: "" if v is None else v  # noqa: E731
        return {"organ": lesion.get("organ", ""), "nodal": nodal, "long": blank(long_mm), "short": blank(short_mm),
                "modality": lesion.get("modality", "CT"), "slice": blank(lesion.get("slice_thickness_mm")),
                "annotation": annotation_json(lesions, lesion.get("id", ""))}

    targets = [shown(t) for t in list(lesions.get("targets", []))[:TARGET_ROWS]]
    non_targets = [shown(t) for t in list(lesions.get("non_targets", []))[:NON_TARGET_ROWS]]
    return {"targets": [(i, targets[i] if i < len(targets) else {}) for i in range(TARGET_ROWS)],
            "non_targets": [(i, non_targets[i] if i < len(non_targets) else {}) for i in range(NON_TARGET_ROWS)]}


def followup_rows(*, baseline: dict, lesions: dict | None) -> dict:
    """The follow-up form's rows: each baseline lesion with what was saved for it."""
    lesions = lesions or {}
    saved, statuses = lesions.get("targets", {}), lesions.get("non_targets", {})
    rows = []
    for lesion in baseline.get("targets", []):
        value = saved.get(lesion["id"], "")
        if value in ("TSTM", "ABSENT"):
            state, mm = value, ""
        elif value is None:
            state, mm = "NE", ""
        else:
            state = "measured"
            mm = " + ".join(str(v) for v in value) if isinstance(value, list) else ("" if value == "" else str(value))
        rows.append({"lesion": lesion, "state": state, "mm": mm,
                     "annotation": annotation_json(lesions, lesion["id"]) if state == "measured" else "",
                     "baseline_annotation": annotation_json(baseline, lesion["id"])})
    nt_rows = [{"lesion": lesion, "status": statuses.get(lesion["id"], "PRESENT")}
               for lesion in baseline.get("non_targets", [])]
    return {"targets": rows, "non_targets": nt_rows, "new_lesions": lesions.get("new_lesions", "NO"),
            "first_seen": lesions.get("new_lesion_first_seen_visit", "")}


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class ReadingRulesForm(forms.Form):
    """A trial's reading rules (reads.models.ReadSettings) and the reason for changing them."""

    adjudicate_on_overall = forms.BooleanField(required=False, label="Overall response differs at any timepoint")
    adjudicate_on_bor = forms.BooleanField(required=False, label="Best overall response differs")
    adjudicate_on_pd_date = forms.BooleanField(required=False, label="Date of progression differs")
    confirmation_required = forms.BooleanField(required=False, label="CR and PR need confirmation")
    min_confirm_days = forms.IntegerField(min_value=1, max_value=365, label="Confirmation at least (days)")
    max_ne_between = forms.IntegerField(min_value=0, max_value=10,
                                        label="Not-evaluable timepoints tolerated before the confirmation")
    min_sd_days = forms.IntegerField(min_value=0, max_value=365,
                                     label="Stable disease counts as best response from (days)")
    reason = forms.CharField(max_length=2000, label="Reason for the change",
                             widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))

    FIELDS = ("adjudicate_on_overall", "adjudicate_on_bor", "adjudicate_on_pd_date", "confirmation_required",
              "min_confirm_days", "max_ne_between", "min_sd_days")

    @classmethod
    def initial_from(cls, settings) -> dict:
        return {name: getattr(settings, name) for name in cls.FIELDS}

    def changes(self, settings) -> dict:
        """The cleaned values that differ from ``settings``."""
        return {name: self.cleaned_data[name] for name in self.FIELDS
                if self.cleaned_data[name] != getattr(settings, name)}
