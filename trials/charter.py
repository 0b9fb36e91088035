"""The imaging charter: per-procedure acquisition requirements and the visit schedule, as checkable data.

Stored as JSON on ProtocolVersion.charter; ``charter_parse`` validates it and
returns frozen dataclasses the QC checks read. Every error is collected and
keyed by its JSON path (``procedures[0].slice_thickness_mm``), so a trial
manager sees all problems at once. Unknown keys are errors: a typo must never
silently switch a check off. Pure Python, no ORM.
"""

import datetime
import re
from dataclasses import asdict, dataclass, field

from django.core.exceptions import ValidationError

# DICOM Modality (0008,0060) defined terms for image-producing equipment (PS3.3 C.7.3.1.1.1)
MODALITIES = frozenset({
    "CR", "CT", "DX", "ES", "GM", "IO", "IVOCT", "IVUS", "MG", "MR", "NM", "OCT", "OP", "OPT", "OT", "PT", "PX",
    "RF", "RG", "SC", "SM", "US", "XA", "XC",
})
# modalities whose acquisitions carry a tube voltage (0018,0060) KVP
KVP_MODALITIES = frozenset({"CR", "CT", "DX", "IO", "MG", "PX", "RF", "RG", "XA"})
PROCEDURE_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
VISIT_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,31}$")
BODY_PART = re.compile(r"^[A-Z0-9_ ]{1,16}$")  # Body Part Examined (0018,0015): CS, 16 chars

RANGE_FIELDS = {"slice_thickness_mm": "mm", "pixel_spacing_mm": "mm", "kvp": "kV", "field_strength_t": "T"}
PROCEDURE_KEYS = {"code", "name", "modalities", "body_parts", *RANGE_FIELDS, "min_slices", "contrast_required",
                  "series_patterns", "requalify"}
PROCEDURE_REQUIRED = {"code", "name", "modalities"}
VISIT_KEYS = {"code", "label", "day", "window_before", "window_after", "procedures"}


@dataclass(frozen=True)
class Range:
    """A closed interval; either bound may be open (None)."""

    min: float | None = None
    max: float | None = None
    unit: str = ""

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.min is not None and self.max is not None:
            return f"{self.min:g}–{self.max:g}{unit}"
        if self.min is not None:
            return f"≥ {self.min:g}{unit}"
        return f"≤ {self.max:g}{unit}"

    def to_dict(self) -> dict:
        return {"min": self.min, "max": self.max}


@dataclass(frozen=True)
class SeriesPattern:
    label: str
    pattern: str

    def matches(self, description: str) -> bool:
        """Case-insensitive search of the pattern in a Series Description (0008,103E)."""
        return re.search(self.pattern, description or "", re.IGNORECASE) is not None


@dataclass(frozen=True)
class Procedure:
    code: str
    name: str
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...] = ()
    slice_thickness_mm: Range | None = None
    pixel_spacing_mm: Range | None = None
    kvp: Range | None = None
    field_strength_t: Range | None = None
    min_slices: int | None = None
    contrast_required: bool = False
    series_patterns: tuple[SeriesPattern, ...] = ()
    requalify: bool = False

    def to_dict(self) -> dict:
        data = {"code": self.code, "name": self.name, "modalities": list(self.modalities),
                "body_parts": list(self.body_parts)}
        for name in RANGE_FIELDS:
            value = getattr(self, name)
            data[name] = value.to_dict() if value else None
        data.update(min_slices=self.min_slices, contrast_required=self.contrast_required,
                    series_patterns=[asdict(p) for p in self.series_patterns], requalify=self.requalify)
        return data


@dataclass(frozen=True)
class Visit:
    code: str
    label: str
    day: int
    window_before: int
    window_after: int
    procedures: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"code": self.code, "label": self.label, "day": self.day, "window_before": self.window_before,
                "window_after": self.window_after, "procedures": list(self.procedures)}


@dataclass(frozen=True)
class Charter:
    procedures: tuple[Procedure, ...]
    visits: tuple[Visit, ...]

    def procedure(self, code: str) -> Procedure | None:
        return next((p for p in self.procedures if p.code == code), None)

    def visit(self, code: str) -> Visit | None:
        return next((v for v in self.visits if v.code == code), None)

    def to_dict(self) -> dict:
        return {"procedures": [p.to_dict() for p in self.procedures], "visits": [v.to_dict() for v in self.visits]}

    def visit_window(self, *, visit_code: str, enrollment_date: datetime.date
                     ) -> tuple[datetime.date, datetime.date, datetime.date]:
        """(earliest, nominal, latest) dates of a visit; day 0 is the enrollment date."""
        visit = self.visit(visit_code)
        if visit is None:
            raise KeyError(visit_code)
        nominal = enrollment_date + datetime.timedelta(days=visit.day)
        return (nominal - datetime.timedelta(days=visit.window_before), nominal,
                nominal + datetime.timedelta(days=visit.window_after))


@dataclass(frozen=True)
class Change:
    kind: str  # added, removed, changed
    path: str
    before: object = None
    after: object = None


@dataclass
class _Errors:
    messages: dict[str, list[str]] = field(default_factory=dict)

    def add(self, path: str, message: str) -> None:
        self.messages.setdefault(path, []).append(message)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_range(value, path: str, unit: str, errors: _Errors) -> Range | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.add(path, 'give a range as {"min": number, "max": number}, or null for no check')
        return None
    unknown = set(value) - {"min", "max"}
    if unknown:
        errors.add(path, f"unknown key(s) {', '.join(sorted(unknown))}; a range has only min and max")
    low, high = value.get("min"), value.get("max")
    ok = True
    for bound, number in (("min", low), ("max", high)):
        if number is not None and not _is_number(number):
            errors.add(path, f"{bound} must be a number, not {number!r}")
            ok = False
        elif number is not None and number <= 0:
            errors.add(path, f"{bound} must be greater than 0")
            ok = False
    if ok and low is None and high is None:
        errors.add(path, "give min, max or both (or null for no check)")
        ok = False
    if ok and low is not None and high is not None and low > high:
        errors.add(path, f"min ({low}) is greater than max ({high})")
        ok = False
    return Range(min=low, max=high, unit=unit) if ok else None


def _string_list(value, path: str, errors: _Errors, *, pattern: re.Pattern, what: str,
                 allowed: frozenset | None = None, required: bool = False) -> tuple[str, ...]:
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.add(path, f"give a list of {what}")
        return ()
    if required and not value:
        errors.add(path, f"give at least one {what[:-1] if what.endswith('s') else what}")
    for item in value:
        if allowed is not None and item not in allowed:
            errors.add(path, f"{item!r} is not a DICOM modality defined term")
        elif allowed is None and not pattern.match(item):
            errors.add(path, f"{item!r} is not a valid {what[:-1]} (upper case, at most 16 characters)")
    if len(set(value)) != len(value):
        errors.add(path, f"{what} are listed twice")
    return tuple(value)


def _parse_procedure(data, path: str, errors: _Errors) -> Procedure | None:
    if not isinstance(data, dict):
        errors.add(path, "each procedure is an object")
        return None
    for key in sorted(set(data) - PROCEDURE_KEYS):
        errors.add(f"{path}.{key}", "unknown key (check the spelling)")
    for key in sorted(PROCEDURE_REQUIRED - set(data)):
        errors.add(f"{path}.{key}", "this field is required")
    code = data.get("code")
    if "code" in data and not (isinstance(code, str) and PROCEDURE_CODE.match(code)):
        errors.add(f"{path}.code", "use 2–32 upper-case letters, digits or _ starting with a letter, e.g. CT_CAP")
    name = data.get("name")
    if "name" in data and not (isinstance(name, str) and name.strip()):
        errors.add(f"{path}.name", "give the procedure a name")
    modalities = _string_list(data.get("modalities"), f"{path}.modalities", errors, pattern=BODY_PART,
                              what="modalities", allowed=MODALITIES, required="modalities" in data)
    body_parts = _string_list(data.get("body_parts"), f"{path}.body_parts", errors, pattern=BODY_PART,
                              what="body parts")
    ranges = {name: _parse_range(data.get(name), f"{path}.{name}", unit, errors)
              for name, unit in RANGE_FIELDS.items()}
    if ranges["field_strength_t"] and modalities and "MR" not in modalities:
        errors.add(f"{path}.field_strength_t", "field strength applies to MR procedures only")
    if ranges["kvp"] and modalities and not set(modalities) & KVP_MODALITIES:
        errors.add(f"{path}.kvp", f"kVp does not apply to {', '.join(modalities)}")
    min_slices = data.get("min_slices")
    if min_slices is not None and not (isinstance(min_slices, int) and not isinstance(min_slices, bool)
                                       and min_slices > 0):
        errors.add(f"{path}.min_slices", "give a whole number greater than 0, or null")
    for flag in ("contrast_required", "requalify"):
        if flag in data and not isinstance(data[flag], bool):
            errors.add(f"{path}.{flag}", "give true or false")
    patterns = []
    raw_patterns = data.get("series_patterns") or []
    if not isinstance(raw_patterns, list):
        errors.add(f"{path}.series_patterns", 'give a list of {"label": ..., "pattern": ...}')
        raw_patterns = []
    for index, item in enumerate(raw_patterns):
        item_path = f"{path}.series_patterns[{index}]"
        if not isinstance(item, dict) or set(item) != {"label", "pattern"}:
            errors.add(item_path, 'give exactly {"label": ..., "pattern": ...}')
            continue
        if not (isinstance(item["label"], str) and item["label"].strip()):
            errors.add(f"{item_path}.label", "give the series a label")
        if not (isinstance(item["pattern"], str) and item["pattern"]):
            errors.add(f"{item_path}.pattern", "give a regular expression")
            continue
        try:
            re.compile(item["pattern"])
        except re.error as exc:
            errors.add(f"{item_path}.pattern", f"not a valid regular expression: {exc}")
            continue
        patterns.append(SeriesPattern(label=item["label"], pattern=item["pattern"]))
    if not isinstance(code, str) or not isinstance(name, str):
        return None
    return Procedure(code=code, name=name.strip(), modalities=modalities, body_parts=body_parts,
                     min_slices=min_slices if isinstance(min_slices, int) else None,
                     contrast_required=data.get("contrast_required") is True, series_patterns=tuple(patterns),
                     requalify=data.get("requalify") is True, **ranges)


def _parse_visit(data, path: str, known: set[str], errors: _Errors) -> Visit | None:
    if not isinstance(data, dict):
        errors.add(path, "each visit is an object")
        return None
    for key in sorted(set(data) - VISIT_KEYS):
        errors.add(f"{path}.{key}", "unknown key (check the spelling)")
    for key in sorted(VISIT_KEYS - set(data)):
        errors.add(f"{path}.{key}", "this field is required")
    code, label, day = data.get("code"), data.get("label"), data.get("day")
    if "code" in data and not (isinstance(code, str) and VISIT_CODE.match(code)):
        errors.add(f"{path}.code", "use up to 32 upper-case letters, digits, _ or -, e.g. BL or W6")
    if "label" in data and not (isinstance(label, str) and label.strip()):
        errors.add(f"{path}.label", "give the visit a label")
    if "day" in data and not (isinstance(day, int) and not isinstance(day, bool)):
        errors.add(f"{path}.day", "give the nominal study day as a whole number")
    for window in ("window_before", "window_after"):
        value = data.get(window)
        if window in data and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            errors.add(f"{path}.{window}", "give a whole number of days, 0 or more")
    procedures = data.get("procedures")
    if "procedures" in data:
        if not isinstance(procedures, list) or not procedures or not all(isinstance(p, str) for p in procedures):
            errors.add(f"{path}.procedures", "list the procedure codes this visit needs (at least one)")
            procedures = []
        for code_ in procedures:
            if code_ not in known:
                errors.add(f"{path}.procedures", f"unknown procedure {code_!r}")
    try:
        return Visit(code=code, label=label.strip(), day=int(day), window_before=int(data["window_before"]),
                     window_after=int(data["window_after"]), procedures=tuple(procedures))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def charter_parse(data) -> Charter:
    """Validate a charter and return it; raise ValidationError with every problem keyed by JSON path."""
    errors = _Errors()
    if not isinstance(data, dict):
        raise ValidationError({"charter": ["the charter must be an object with procedures and visits"]})
    for key in sorted(set(data) - {"procedures", "visits"}):
        errors.add(key, "unknown key (a charter has procedures and visits)")
    raw_procedures, raw_visits = data.get("procedures"), data.get("visits")
    if not isinstance(raw_procedures, list) or not raw_procedures:
        errors.add("procedures", "define at least one imaging procedure")
        raw_procedures = []
    if not isinstance(raw_visits, list) or not raw_visits:
        errors.add("visits", "define at least one visit")
        raw_visits = []
    procedures = [_parse_procedure(p, f"procedures[{i}]", errors) for i, p in enumerate(raw_procedures)]
    codes = [p.code for p in procedures if p]
    for duplicate in sorted({c for c in codes if codes.count(c) > 1}):
        errors.add("procedures", f"procedure code {duplicate} is used twice")
    visits = [_parse_visit(v, f"visits[{i}]", set(codes), errors) for i, v in enumerate(raw_visits)]
    visit_codes = [v.code for v in visits if v]
    for duplicate in sorted({c for c in visit_codes if visit_codes.count(c) > 1}):
        errors.add("visits", f"visit code {duplicate} is used twice")
    days = [(i, v.day) for i, v in enumerate(visits) if v]
    for (_, earlier), (index, later) in zip(days, days[1:], strict=False):
        if later <= earlier:
            errors.add(f"visits[{index}].day", f"visits must be listed in time order: day {later} is not after "
                                               f"day {earlier}")
    if errors.messages:
        raise ValidationError(errors.messages)
    return Charter(procedures=tuple(procedures), visits=tuple(visits))


def _items(charter: Charter) -> dict[str, dict]:
    items = {f"procedures.{p.code}": p.to_dict() for p in charter.procedures}
    items.update({f"visits.{v.code}": v.to_dict() for v in charter.visits})
    return items


def charter_diff(*, old: Charter, new: Charter) -> list[Change]:
    """Changes from ``old`` to ``new``: procedures/visits added or removed, and each field changed."""
    before, after = _items(old), _items(new)
    changes = []
    for owner in sorted(before.keys() | after.keys()):
        if owner not in after:
            changes.append(Change("removed", owner, before[owner].get("name", before[owner].get("label")), None))
        elif owner not in before:
            changes.append(Change("added", owner, None, after[owner].get("name", after[owner].get("label"))))
        else:
            for key in sorted(before[owner].keys() | after[owner].keys()):
                if before[owner].get(key) != after[owner].get(key):
                    changes.append(Change("changed", f"{owner}.{key}", before[owner].get(key),
                                          after[owner].get(key)))
    return changes


def procedures_needing_requalification(*, old: Charter | None, new: Charter) -> set[str]:
    """Procedure codes the new version marks for requalification (new procedures simply have none yet)."""
    return {p.code for p in new.procedures if p.requalify}


DEMO_CHARTER = {
    "procedures": [
        {"code": "CT_CAP", "name": "CT chest/abdomen/pelvis with IV contrast", "modalities": ["CT"],
         "body_parts": ["CHEST", "ABDOMEN", "PELVIS", "CHESTABDPELVIS"],
         "slice_thickness_mm": {"min": None, "max": 5.0}, "pixel_spacing_mm": {"min": 0.5, "max": 1.0},
         "kvp": {"min": 100, "max": 140}, "field_strength_t": None, "min_slices": 50, "contrast_required": True,
         "series_patterns": [{"label": "Portal venous phase", "pattern": "portal|venous|\\bPV\\b"}],
         "requalify": False},
        {"code": "MR_BRAIN", "name": "MRI brain T1 post-contrast (3D)", "modalities": ["MR"],
         "body_parts": ["BRAIN", "HEAD"], "slice_thickness_mm": {"min": None, "max": 1.5},
         "pixel_spacing_mm": {"min": None, "max": 1.2}, "kvp": None, "field_strength_t": {"min": 1.5, "max": 3.0},
         "min_slices": 100, "contrast_required": True,
         "series_patterns": [{"label": "T1 post-contrast",
                              "pattern": "t1.*(post|\\+c|gd|contrast)|mprage.*(post|gd)"}],
         "requalify": False},
    ],
    "visits": [
        {"code": "BL", "label": "Baseline", "day": 0, "window_before": 28, "window_after": 0,
         "procedures": ["CT_CAP", "MR_BRAIN"]},
        {"code": "W6", "label": "Week 6", "day": 42, "window_before": 7, "window_after": 7,
         "procedures": ["CT_CAP", "MR_BRAIN"]},
        {"code": "W12", "label": "Week 12", "day": 84, "window_before": 7, "window_after": 7,
         "procedures": ["CT_CAP", "MR_BRAIN"]},
        {"code": "W18", "label": "Week 18", "day": 126, "window_before": 7, "window_after": 7,
         "procedures": ["CT_CAP", "MR_BRAIN"]},
    ],
}
