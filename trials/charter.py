"""The imaging charter: per-procedure acquisition requirements and the visit schedule, as checkable data.

Stored as JSON on ProtocolVersion.charter; ``charter_parse`` validates it and returns frozen dataclasses
that the QC checks read. Every error is collected and keyed by its JSON path
(``procedures[0].slice_thickness_mm``), so a trial manager sees all problems at once. Unknown keys are
errors: a typo must never silently switch a check off. Pure Python, no ORM.
"""

import datetime
import difflib
import math
import re
from dataclasses import asdict, dataclass, field

from django.core.exceptions import ValidationError

# DICOM Modality (0008,0060) defined terms of image-producing equipment (PS3.3 C.7.3.1.1.1); waveform,
# document, RT and derived-object terms (SR, SEG, PR, KO, ...) are never what a charter asks sites to acquire
MODALITIES = frozenset({
    "BDUS", "BI", "BMD", "CR", "CT", "DG", "DX", "ES", "GM", "IO", "IVOCT", "IVUS", "LS", "MG", "MR", "NM", "OCT",
    "OP", "OPT", "OT", "PA", "PT", "PX", "RF", "RG", "SM", "TG", "US", "XA", "XC",
})
# X-ray modalities, whose images carry a tube voltage in KVP (0018,0060)
KVP_MODALITIES = frozenset({"BMD", "CR", "CT", "DX", "IO", "MG", "PX", "RF", "RG", "XA"})
PROCEDURE_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,31}")
VISIT_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")  # fits Visit.timepoint
BODY_PART = re.compile(r"[A-Z0-9_ ]{1,16}")  # Body Part Examined (0018,0015) is a CS: 16 characters
VISIT_LABEL_MAX = 100  # Visit.label

RANGE_UNITS = {"slice_thickness_mm": "mm", "pixel_spacing_mm": "mm", "kvp": "kV", "field_strength_t": "T"}
PROCEDURE_KEYS = ("code", "name", "modalities", "body_parts", *RANGE_UNITS, "min_slices", "contrast_required",
                  "series_patterns", "requalify")
PROCEDURE_REQUIRED = ("code", "name", "modalities")
VISIT_KEYS = ("code", "label", "day", "window_before", "window_after", "procedures")


@dataclass(frozen=True)
class Range:
    """A closed interval of a physical quantity; a bound of None is open (not checked)."""

    min: float | None = None
    max: float | None = None
    unit: str = ""

    def contains(self, value: float) -> bool:
        """True when ``value`` is within both bounds, inclusive. NaN is never contained."""
        if isinstance(value, float) and math.isnan(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        """The range for people, numbers as written: "0.5–5.0 mm", "≤ 5.0 mm", "≥ 1.5 T", or "any"."""
        unit = f" {self.unit}" if self.unit else ""
        if self.min is not None and self.max is not None:
            return f"{self.min}–{self.max}{unit}"
        if self.min is None and self.max is None:
            return "any"
        return f"≥ {self.min}{unit}" if self.max is None else f"≤ {self.max}{unit}"

    __str__ = describe

    def to_dict(self) -> dict:
        return {"min": self.min, "max": self.max}


@dataclass(frozen=True)
class SeriesPattern:
    """A series the procedure must contain, recognised by its Series Description (0008,103E)."""

    label: str
    pattern: str

    def matches(self, description: str | None) -> bool:
        """True when the pattern is found anywhere in ``description``, ignoring case; None never matches."""
        return description is not None and re.search(self.pattern, description, re.IGNORECASE) is not None


@dataclass(frozen=True)
class Procedure:
    """One imaging procedure's acquisition requirements. None or empty means "not checked".

    How QC reads them: ``modalities`` against Modality (0008,0060); ``body_parts`` against Body Part
    Examined (0018,0015); ``slice_thickness_mm`` against Slice Thickness (0018,0050); ``pixel_spacing_mm``
    against both values of Pixel Spacing (0028,0030); ``kvp`` against KVP (0018,0060); ``field_strength_t``
    against Magnetic Field Strength (0018,0087); ``min_slices`` is the image count of a qualifying series;
    ``contrast_required`` asks for Contrast/Bolus Agent (0018,0010); each of ``series_patterns`` must match
    the description of at least one series of the study. ``requalify`` marks a procedure whose sites must
    qualify again under the protocol version that sets it.
    """

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
        data = {key: getattr(self, key) for key in PROCEDURE_KEYS}
        data.update({key: data[key].to_dict() for key in RANGE_UNITS if data[key] is not None},
                    modalities=list(self.modalities), body_parts=list(self.body_parts),
                    series_patterns=[asdict(p) for p in self.series_patterns])
        return data


@dataclass(frozen=True)
class Visit:
    """A timepoint of the schedule: nominal study day (0 = enrollment), window in days, procedures needed."""

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
    """A validated charter; build it with ``charter_parse``, store it with ``to_dict``."""

    procedures: tuple[Procedure, ...]
    visits: tuple[Visit, ...]

    def procedure(self, code: str) -> Procedure | None:
        """The procedure with this code, or None."""
        return next((p for p in self.procedures if p.code == code), None)

    def visit(self, code: str) -> Visit | None:
        """The visit with this code, or None."""
        return next((v for v in self.visits if v.code == code), None)

    def to_dict(self) -> dict:
        """The canonical JSON: every key present, in a fixed order; ``charter_parse`` of it round-trips."""
        return {"procedures": [p.to_dict() for p in self.procedures], "visits": [v.to_dict() for v in self.visits]}

    def visit_window(self, *, visit_code: str, enrollment_date: datetime.date
                     ) -> tuple[datetime.date, datetime.date, datetime.date]:
        """(earliest, nominal, latest) dates of a visit, inclusive; day 0 is the enrollment date.

        Raises KeyError for a visit code the charter does not define.
        """
        visit = self.visit(visit_code)
        if visit is None:
            raise KeyError(f"the charter has no visit {visit_code!r}")
        nominal = enrollment_date + datetime.timedelta(days=visit.day)
        return (nominal - datetime.timedelta(days=visit.window_before), nominal,
                nominal + datetime.timedelta(days=visit.window_after))


@dataclass(frozen=True)
class Change:
    """One difference between two charters. ``before``/``after`` are canonical JSON values; for a whole
    procedure or visit added or removed they are its name or label. ``*_text`` render them for people."""

    kind: str  # "added", "removed" or "changed"
    path: str  # "procedures.CT_CAP", "procedures.CT_CAP.kvp", "visits.W6.window_after"
    before: object = None
    after: object = None

    @property
    def before_text(self) -> str:
        return _display(self.path, self.before)

    @property
    def after_text(self) -> str:
        return _display(self.path, self.after)


def _display(path: str, value: object) -> str:
    key = path.rsplit(".", 1)[-1]
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in RANGE_UNITS and isinstance(value, dict):
        return Range(min=value["min"], max=value["max"], unit=RANGE_UNITS[key]).describe()
    if isinstance(value, list) and value:  # codes, or series patterns as label: pattern
        items = [f"{v['label']}: {v['pattern']}" if isinstance(v, dict) else str(v) for v in value]
        return "; ".join(items) if key == "series_patterns" else ", ".join(items)
    return "—" if value in (None, []) else str(value)


# -- validation -----------------------------------------------------------------------------------------------

@dataclass
class _Errors:
    messages: dict[str, list[str]] = field(default_factory=dict)

    def add(self, path: str, message: str) -> None:
        self.messages.setdefault(path, []).append(message)

    def count(self) -> int:
        return sum(len(m) for m in self.messages.values())

    def keys(self, data: dict, path: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(allowed)}"
                self.add(f"{path}.{key}", f"unknown key ({hint})")
        for key in required:
            if key not in data:
                self.add(f"{path}.{key}", "this field is required")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _parse_range(value: object, path: str, unit: str, errors: _Errors) -> Range | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.add(path, 'give a range as {"min": number, "max": number}, or null for no check')
        return None
    errors.keys(value, path, ("min", "max"), ())
    low, high = value.get("min"), value.get("max")
    ok = not set(value) - {"min", "max"}
    for bound, number in (("min", low), ("max", high)):
        if number is None:
            continue
        if not _is_number(number):
            errors.add(path, f"{bound} must be a number, not {number!r}")
            ok = False
        elif number <= 0:
            errors.add(path, f"{bound} must be greater than 0, not {number}")
            ok = False
    if ok and low is None and high is None:
        errors.add(path, "give min, max or both (or null for no check)")
        ok = False
    if ok and low is not None and high is not None and low > high:
        errors.add(path, f"min ({low}) is greater than max ({high})")
        ok = False
    return Range(min=low, max=high, unit=unit) if ok else None


def _codes(value: object, path: str, errors: _Errors, *, what: str, example: str, valid, hint
           ) -> tuple[str, ...]:
    """A list of distinct strings, each checked by ``valid``; ``hint(item)`` says how to fix a bad one."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.add(path, f'give a list, e.g. ["{example}"]')
        return ()
    for item in value:
        if not valid(item):
            errors.add(path, f"{item!r} is not {what} ({hint(item)})")
    for item in sorted({v for v in value if value.count(v) > 1}):
        errors.add(path, f"{item!r} is listed twice")
    return tuple(value)


def _modality_hint(item: str) -> str:
    close = difflib.get_close_matches(item.upper(), MODALITIES, n=1)
    return f"did you mean {close[0]}?" if close else "use a DICOM Modality code such as CT, MR or PT"


def _parse_patterns(value: object, path: str, errors: _Errors) -> tuple[SeriesPattern, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.add(path, 'give a list of {"label": ..., "pattern": ...}')
        return ()
    before = errors.count()
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if not isinstance(item, dict):
            errors.add(item_path, 'give {"label": ..., "pattern": ...}')
            continue
        errors.keys(item, item_path, ("label", "pattern"), ("label", "pattern"))
        if "label" in item and not _text(item["label"]):
            errors.add(f"{item_path}.label", "give the series a label, e.g. Portal venous phase")
        if "pattern" in item and not (isinstance(item["pattern"], str) and item["pattern"]):
            errors.add(f"{item_path}.pattern", "give a regular expression matched against the series description")
        elif "pattern" in item:
            try:
                re.compile(item["pattern"])
            except re.error as exc:
                errors.add(f"{item_path}.pattern", f"not a valid regular expression: {exc}")
    return () if errors.count() > before else tuple(SeriesPattern(**item) for item in value)


def _parse_procedure(data: object, path: str, errors: _Errors) -> Procedure | None:
    if not isinstance(data, dict):
        errors.add(path, "each procedure is an object with code, name, modalities, ...")
        return None
    before = errors.count()
    errors.keys(data, path, PROCEDURE_KEYS, PROCEDURE_REQUIRED)
    code, name = data.get("code"), data.get("name")
    if "code" in data and not (isinstance(code, str) and PROCEDURE_CODE.fullmatch(code)):
        errors.add(f"{path}.code", "use 2–32 upper-case letters, digits or _, starting with a letter, e.g. CT_CAP")
    if "name" in data and not _text(name):
        errors.add(f"{path}.name", "give the procedure a name, e.g. CT chest/abdomen/pelvis with contrast")
    modalities = _codes(data.get("modalities"), f"{path}.modalities", errors, what="a DICOM modality code",
                        example="CT", valid=MODALITIES.__contains__, hint=_modality_hint)
    if "modalities" in data and not modalities and isinstance(data["modalities"], list | None):
        errors.add(f"{path}.modalities", "give at least one modality, e.g. CT")
    body_parts = _codes(data.get("body_parts"), f"{path}.body_parts", errors, what="a valid body part",
                        example="CHEST", valid=BODY_PART.fullmatch,
                        hint=lambda _: "upper-case letters, digits, space or _, at most 16, e.g. CHEST")
    ranges = {key: _parse_range(data.get(key), f"{path}.{key}", unit, errors) for key, unit in RANGE_UNITS.items()}
    known = [m for m in modalities if m in MODALITIES]  # a misspelt modality is reported once, above
    if data.get("field_strength_t") is not None and known and "MR" not in known:
        errors.add(f"{path}.field_strength_t", "field strength applies to MR procedures only; use null")
    if data.get("kvp") is not None and known and not set(known) & KVP_MODALITIES:
        errors.add(f"{path}.kvp", f"kVp applies to X-ray modalities only, not {', '.join(known)}; use null")
    min_slices = data.get("min_slices")
    if min_slices is not None and not (_is_int(min_slices) and min_slices > 0):
        errors.add(f"{path}.min_slices", f"give a whole number greater than 0, or null (not {min_slices!r})")
    for flag in ("contrast_required", "requalify"):
        if flag in data and not isinstance(data[flag], bool):
            errors.add(f"{path}.{flag}", f"give true or false (not {data[flag]!r})")
    patterns = _parse_patterns(data.get("series_patterns"), f"{path}.series_patterns", errors)
    if errors.count() > before:
        return None
    return Procedure(code=code, name=name.strip(), modalities=modalities, body_parts=body_parts,
                     min_slices=min_slices, contrast_required=data.get("contrast_required", False),
                     series_patterns=patterns, requalify=data.get("requalify", False), **ranges)


def _parse_visit(data: object, path: str, known: set[str], errors: _Errors) -> Visit | None:
    if not isinstance(data, dict):
        errors.add(path, "each visit is an object with code, label, day, window_before, window_after, procedures")
        return None
    before = errors.count()
    errors.keys(data, path, VISIT_KEYS, VISIT_KEYS)
    code, label, day, procedures = (data.get(k) for k in ("code", "label", "day", "procedures"))
    if "code" in data and not (isinstance(code, str) and VISIT_CODE.fullmatch(code)):
        errors.add(f"{path}.code", "use up to 32 upper-case letters, digits, _ or -, e.g. BL or W6")
    if "label" in data and not (_text(label) and len(label.strip()) <= VISIT_LABEL_MAX):
        errors.add(f"{path}.label", f"give the visit a label of at most {VISIT_LABEL_MAX} characters, e.g. Week 6")
    if "day" in data and not _is_int(day):
        errors.add(f"{path}.day", f"give the nominal study day as a whole number (not {day!r})")
    for window in ("window_before", "window_after"):
        value = data.get(window)
        if window in data and not (_is_int(value) and value >= 0):
            errors.add(f"{path}.{window}", f"give a whole number of days, 0 or more (not {value!r})")
    if "procedures" in data:
        if not isinstance(procedures, list) or not procedures or not all(isinstance(p, str) for p in procedures):
            errors.add(f"{path}.procedures", "list the procedure codes this visit needs (at least one)")
        else:
            for item in procedures:
                if item not in known:
                    errors.add(f"{path}.procedures", f"unknown procedure {item!r}")
            for item in sorted({p for p in procedures if procedures.count(p) > 1}):
                errors.add(f"{path}.procedures", f"{item!r} is listed twice")
    if errors.count() > before:
        return None
    return Visit(code=code, label=label.strip(), day=day, window_before=data["window_before"],
                 window_after=data["window_after"], procedures=tuple(procedures))


def _duplicates(items: list[tuple[str, object]], what: str, errors: _Errors) -> None:
    seen: dict[str, str] = {}
    for item_path, code in items:
        if isinstance(code, str):
            if code in seen:
                errors.add(f"{item_path}.code", f"{what} code {code} is used twice: {seen[code]} has it already")
            seen.setdefault(code, item_path)


def charter_parse(data: dict) -> Charter:
    """Validate a charter (JSON as stored on ProtocolVersion.charter) and return it.

    Raises ValidationError whose ``message_dict`` holds every problem found, keyed by JSON path
    (``procedures[0].kvp``, ``visits[2].procedures``); a bad field does not hide errors elsewhere.
    """
    if not isinstance(data, dict):
        raise ValidationError({"charter": ["the charter must be an object with procedures and visits"]})
    errors = _Errors()
    for key in data:
        if key not in ("procedures", "visits"):
            errors.add(str(key), "unknown key (a charter has only procedures and visits)")
    raw_procedures, raw_visits = data.get("procedures"), data.get("visits")
    if not isinstance(raw_procedures, list) or not raw_procedures:
        errors.add("procedures", "define at least one imaging procedure (a list)")
        raw_procedures = []
    if not isinstance(raw_visits, list) or not raw_visits:
        errors.add("visits", "define at least one visit (a list)")
        raw_visits = []
    procedures = [_parse_procedure(p, f"procedures[{i}]", errors) for i, p in enumerate(raw_procedures)]
    raw_codes = [(f"procedures[{i}]", p.get("code")) for i, p in enumerate(raw_procedures) if isinstance(p, dict)]
    _duplicates(raw_codes, "procedure", errors)
    # visits are checked against every code written down, so one bad procedure field does not cascade
    known = {code for _, code in raw_codes if isinstance(code, str)}
    visits = [_parse_visit(v, f"visits[{i}]", known, errors) for i, v in enumerate(raw_visits)]
    raw_visits_ = [(i, v) for i, v in enumerate(raw_visits) if isinstance(v, dict)]
    _duplicates([(f"visits[{i}]", v.get("code")) for i, v in raw_visits_], "visit", errors)
    days = [(i, v["day"]) for i, v in raw_visits_ if _is_int(v.get("day"))]
    for (_, earlier), (index, later) in zip(days, days[1:], strict=False):
        if later <= earlier:
            errors.add(f"visits[{index}].day",
                       f"visits must be listed in time order: day {later} is not after day {earlier}")
    if errors.messages:
        raise ValidationError(errors.messages)
    return Charter(procedures=tuple(procedures), visits=tuple(visits))


# -- versions -------------------------------------------------------------------------------------------------

def _items(charter: Charter) -> dict[str, dict]:
    items = {f"procedures.{p.code}": p.to_dict() for p in charter.procedures}
    items.update({f"visits.{v.code}": v.to_dict() for v in charter.visits})
    return items


def charter_diff(*, old: Charter, new: Charter) -> list[Change]:
    """What changed from ``old`` to ``new``: whole procedures/visits added or removed, and each changed field.

    Procedures come before visits, in charter order (removed ones where they were); fields in canonical order.
    """
    before, after = _items(old), _items(new)
    owners = list(before) + [owner for owner in after if owner not in before]
    owners.sort(key=lambda owner: not owner.startswith("procedures."))
    changes = []
    for owner in owners:
        if owner not in after:
            changes.append(Change("removed", owner, before[owner].get("name", before[owner].get("label")), None))
        elif owner not in before:
            changes.append(Change("added", owner, None, after[owner].get("name", after[owner].get("label"))))
        else:
            for key, value in after[owner].items():
                if before[owner].get(key) != value:
                    changes.append(Change("changed", f"{owner}.{key}", before[owner].get(key), value))
    return changes


def procedures_needing_requalification(*, old: Charter | None, new: Charter) -> set[str]:
    """Codes of the procedures ``new`` marks ``requalify``: their sites' qualifications must be redone.

    Only the flag counts: a procedure new in this version has no qualification to invalidate, and a
    changed requirement alone does not force requalification. ``old`` is accepted for the caller's symmetry.
    """
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
         # T1 or MPRAGE with a contrast word on either side; "pre-contrast", "PRE_GD", "non contrast" (the
         # unenhanced series) never match, while "IR PREP" (magnetisation prepared) still does
         "series_patterns": [{"label": "T1 post-contrast",
                              "pattern": "^(?!.*(?<![a-z])(pre|non)([^a-z]|$|contrast|gd|gad))"
                                         ".*((t1|mprage).*(post|\\+c|gd|gad|contrast)|(post|\\+c|gd|gad).*(t1|mprage))"}],
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
