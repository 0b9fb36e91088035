"""RECIST 1.1 response evaluation: a pure module (standard library only, no Django, no ORM).

Implements Eisenhauer et al., "New response evaluation criteria in solid tumours: revised RECIST
guideline (version 1.1)", Eur J Cancer 2009;45:228-247, with the RECIST working group's
clarifications (Schwartz et al., Eur J Cancer 2016;62:132-137). Every threshold is compared in
``decimal.Decimal``; input numbers are read through their decimal text, never as binary floats.

``evaluate(data)`` takes::

    {"options": {"confirmation_required": bool, "min_confirm_days": int, "max_ne_between": int,
                 "min_sd_days": int, "reference_date": "YYYY-MM-DD" | null},
     "baseline": {"date": "YYYY-MM-DD",
                  "targets": [{"id", "organ", "nodal": bool, "mm": number}],
                  "non_targets": [{"id", "organ", "nodal": bool}]},
     "followups": [{"visit": str, "date": "YYYY-MM-DD",
                    "targets": {"T1": number | [numbers] | "TSTM" | "ABSENT" | null},
                    "non_target": "CR" | "NON-CR/NON-PD" | "PD" | "NE",
                    (or "non_targets": {"NT1": "ABSENT" | "PRESENT" | "UNEQUIVOCAL PROGRESSION" | "NE"}),
                    "new_lesions": "NO" | "YES" | "EQUIVOCAL",
                    "new_lesion_first_seen_visit": str (optional)}]}

and returns::

    {"timepoints": [{"visit", "sum_mm": number | null,
                     "target": "CR" | "PR" | "SD" | "PD" | "NE" | "NA",
                     "non_target": "CR" | "NON-CR/NON-PD" | "PD" | "NE" | "NA",
                     "overall": "CR" | "PR" | "SD" | "NON-CR/NON-PD" | "PD" | "NE"}],
     "bor": "CR" | "PR" | "SD" | "NON-CR/NON-PD" | "PD" | "NE",
     "pd_visit": str | null, "pd_date": "YYYY-MM-DD" | null}

``timepoints`` has one entry per follow-up, in input order. ``baseline_check(data)`` takes
``{"targets": [...], "non_targets": [...]}`` (or a whole ``evaluate`` input, whose ``baseline`` it
checks) where every lesion also has ``"modality"`` and ``"slice_thickness_mm"`` (number or null; non-
target lesions may carry ``"mm"``) and returns ``{"valid": bool, "errors": [codes]}`` with the codes
``MAX_TARGETS_EXCEEDED``, ``MAX_PER_ORGAN_EXCEEDED:<ORGAN>``, ``NOT_MEASURABLE:<id>``, ``NORMAL_NODE:<id>``.

The rules, and the choices made where the paper leaves room:

- Sum of diameters: long axis of non-nodal targets plus short axis of nodal ones; a split lesion
  (a list) is the sum of its parts; ``"TSTM"`` (too small to measure) counts 5 mm, ``"ABSENT"`` 0 mm;
  ``null`` is not evaluated. Baseline target diameters must be positive numbers.
- Target response, checked in this order: CR when every non-nodal target is 0 mm and every nodal
  target is under 10 mm short axis; PD when the sum is at least 20 % above the nadir *and* at least
  5 mm above it (the nadir is the smallest fully evaluated sum so far, baseline included), or when a
  lesion reappears after a CR (a non-nodal target above 0 mm, a node at 10 mm or more: paper, section
  4.3.4); PR when the sum is at least 30 % below the baseline sum; SD otherwise. When any target is
  not evaluated the response is NE, unless the evaluated ones already prove PD; ``sum_mm`` is then null.
- Non-target response from the reader's summary, or from per-lesion statuses: any unequivocal
  progression is PD, else any NE makes NE, else all absent is CR, else NON-CR/NON-PD. A subject with
  no non-target lesions gets "NA" (the keys may be left out).
- New lesions: "YES" is PD; "EQUIVOCAL" is not. When a later visit confirms a lesion first seen as
  equivocal (``new_lesion_first_seen_visit``), progression is dated at that earlier visit:
  ``pd_visit`` and ``pd_date`` are that visit and its date (the per-timepoint responses stay as
  assessed then), and best overall response only looks at the timepoints before it.
- Overall response: Table 1 of the paper (targets and non-targets) and Table 2 (non-targets only).
- Best overall response over the timepoints before the first progression. Without confirmation: the
  best of CR, PR, then SD (NON-CR/NON-PD for subjects without targets), then PD, then NE. With
  confirmation (paper Table 3): a CR is confirmed by a later CR, a PR by a later PR or CR (and a CR
  followed by a PR makes a PR, footnote a), at least ``min_confirm_days`` later, with only NE
  timepoints in between, at most ``max_ne_between`` of them. Unconfirmed responses count as SD. SD
  (and NON-CR/NON-PD) counts only at a timepoint ``min_sd_days`` or more after ``reference_date``
  (the baseline date when null); otherwise the best response is PD when progression followed, else NE.

Options may be omitted; the defaults are ``DEFAULT_OPTIONS``. Malformed input raises
``RecistInputError`` (a ``ValueError``) naming the offending field.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["DEFAULT_OPTIONS", "RecistInputError", "baseline_check", "evaluate", "lesion_sum"]

DEFAULT_OPTIONS = {
    "confirmation_required": False,
    "min_confirm_days": 28,  # "no less than 4 weeks" (section 4.4.1)
    "max_ne_between": 1,
    "min_sd_days": 42,  # protocol-defined; 6 weeks is the common choice
    "reference_date": None,
}

TSTM_MM = Decimal(5)
NODE_NORMAL_MM = Decimal(10)  # short axis below this: normal node
NODE_MEASURABLE_MM = Decimal(15)
MEASURABLE_MM = Decimal(10)
CHEST_XRAY_MEASURABLE_MM = Decimal(20)
PR_FACTOR = Decimal("0.7")  # at least a 30 % decrease from baseline
PD_FACTOR = Decimal("1.2")  # at least a 20 % increase over the nadir
PD_ABSOLUTE_MM = Decimal(5)
MAX_TARGETS = 5
MAX_TARGETS_PER_ORGAN = 2
NODE_ORGAN = "LYMPH NODE"  # all lymph nodes together count as one organ

NON_TARGET_RESPONSES = ("CR", "NON-CR/NON-PD", "PD", "NE")
NON_TARGET_STATUSES = ("ABSENT", "PRESENT", "UNEQUIVOCAL PROGRESSION", "NE")
NEW_LESIONS = ("NO", "YES", "EQUIVOCAL")
MODALITIES = ("CT", "MR", "CR", "DX", "US")  # CR/DX: chest X-ray; US never measures (Appendix II)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class RecistInputError(ValueError):
    """The input is malformed; the message names the field."""


# --- reading the input -------------------------------------------------------------------------


def _require_dict(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise RecistInputError(f"{where} must be an object, not {type(value).__name__}")
    return value


def _require_list(value, where: str) -> list:
    if not isinstance(value, list):
        raise RecistInputError(f"{where} must be a list, not {type(value).__name__}")
    return value


def _no_unknown_keys(obj: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise RecistInputError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _date(value, where: str) -> datetime.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise RecistInputError(f"{where} must be a date written YYYY-MM-DD, not {value!r}")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError as exc:
        raise RecistInputError(f"{where} is not a valid date: {value!r} ({exc})") from None


def _number(value, where: str) -> Decimal:
    """A non-negative number, read through its decimal text so 12.3 is 12.3, not a binary approximation."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise RecistInputError(f"{where} must be a number of millimetres, not {value!r}")
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise RecistInputError(f"{where} must be a finite number, not {value!r}")
    if number < 0:
        raise RecistInputError(f"{where} must not be negative: {value!r}")
    return number


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RecistInputError(f"{where} must be a non-empty string, not {value!r}")
    return value


def _int_option(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecistInputError(f"{where} must be a whole number of 0 or more, not {value!r}")
    return value


@dataclass(frozen=True)
class _Lesion:
    id: str
    organ: str
    nodal: bool
    mm: Decimal | None = None


@dataclass
class _Followup:
    visit: str
    date: datetime.date
    targets: dict[str, Decimal | None]
    non_target: str
    new_lesions: str
    first_seen: str | None


def _lesion(raw, where: str, *, measured: bool) -> _Lesion:
    raw = _require_dict(raw, where)
    for key in ("id", "organ", "nodal") + (("mm",) if measured else ()):
        if key not in raw:
            raise RecistInputError(f"{where}: missing {key!r}")
    if not isinstance(raw["nodal"], bool):
        raise RecistInputError(f"{where}.nodal must be true or false, not {raw['nodal']!r}")
    mm = None
    if measured:
        mm = _number(raw["mm"], f"{where}.mm")
        if mm == 0:
            raise RecistInputError(f"{where}.mm: a baseline target must have a diameter above 0 mm")
    return _Lesion(id=_text(raw["id"], f"{where}.id"), organ=_text(raw["organ"], f"{where}.organ"),
                   nodal=raw["nodal"], mm=mm)


def _lesions(baseline: dict, where: str, *, measured_targets: bool) -> tuple[list[_Lesion], list[_Lesion]]:
    targets = [_lesion(t, f"{where}.targets[{i}]", measured=measured_targets)
               for i, t in enumerate(_require_list(baseline.get("targets", []), f"{where}.targets"))]
    non_targets = [_lesion(t, f"{where}.non_targets[{i}]", measured=False)
                   for i, t in enumerate(_require_list(baseline.get("non_targets", []), f"{where}.non_targets"))]
    seen = set()
    for lesion in targets + non_targets:
        if lesion.id in seen:
            raise RecistInputError(f"{where}: lesion id {lesion.id!r} is used twice")
        seen.add(lesion.id)
    return targets, non_targets


def _target_value(value, where: str) -> Decimal | None:
    if value is None:
        return None
    if value == "TSTM":
        return TSTM_MM
    if value == "ABSENT":
        return Decimal(0)
    if isinstance(value, str):
        raise RecistInputError(f"{where} must be a number, a list of numbers, \"TSTM\", \"ABSENT\" or null, not {value!r}")
    if isinstance(value, list):
        if not value:
            raise RecistInputError(f"{where}: a split lesion needs at least one measurement")
        return sum((_number(part, f"{where}[{i}]") for i, part in enumerate(value)), Decimal(0))
    return _number(value, where)


def _non_target_summary(raw: dict, non_targets: list[_Lesion], where: str) -> str:
    has_summary, has_lesions = "non_target" in raw, "non_targets" in raw
    if has_summary and has_lesions:
        raise RecistInputError(f"{where}: give either non_target or non_targets, not both")
    if not non_targets:
        if (has_summary and raw["non_target"] != "NA") or (has_lesions and raw["non_targets"] != {}):
            raise RecistInputError(f"{where}: the baseline has no non-target lesions, so no non-target response")
        return "NA"
    if has_summary:
        if raw["non_target"] not in NON_TARGET_RESPONSES:
            raise RecistInputError(f"{where}.non_target must be one of {', '.join(NON_TARGET_RESPONSES)}, "
                                   f"not {raw['non_target']!r}")
        return raw["non_target"]
    if not has_lesions:
        raise RecistInputError(f"{where}: missing non_target (or non_targets): the baseline has non-target lesions")
    statuses = _require_dict(raw["non_targets"], f"{where}.non_targets")
    known = {lesion.id for lesion in non_targets}
    unknown = sorted(set(statuses) - known)
    if unknown:
        raise RecistInputError(f"{where}.non_targets: unknown lesion id(s) {', '.join(unknown)}")
    missing = [lesion.id for lesion in non_targets if lesion.id not in statuses]
    if missing:
        raise RecistInputError(f"{where}.non_targets: no status for {', '.join(missing)} (use \"NE\" if not evaluated)")
    for lesion_id, status in statuses.items():
        if status not in NON_TARGET_STATUSES:
            raise RecistInputError(f"{where}.non_targets.{lesion_id} must be one of {', '.join(NON_TARGET_STATUSES)}, "
                                   f"not {status!r}")
    values = set(statuses.values())
    if "UNEQUIVOCAL PROGRESSION" in values:
        return "PD"
    if "NE" in values:  # an unassessed lesion might have progressed
        return "NE"
    return "CR" if values == {"ABSENT"} else "NON-CR/NON-PD"


FOLLOWUP_KEYS = {"visit", "date", "targets", "non_target", "non_targets", "new_lesions", "new_lesion_first_seen_visit"}


def _followups(raw_list, baseline_date, targets, non_targets) -> list[_Followup]:
    followups: list[_Followup] = []
    target_ids = [lesion.id for lesion in targets]
    for index, raw in enumerate(_require_list(raw_list, "followups")):
        where = f"followups[{index}]"
        raw = _require_dict(raw, where)
        _no_unknown_keys(raw, FOLLOWUP_KEYS, where)
        for key in ("visit", "date", "new_lesions"):
            if key not in raw:
                raise RecistInputError(f"{where}: missing {key!r}")
        visit = _text(raw["visit"], f"{where}.visit")
        where = f"followups[{index}] ({visit})"
        if any(f.visit == visit for f in followups):
            raise RecistInputError(f"{where}: visit {visit!r} appears twice")
        date = _date(raw["date"], f"{where}.date")
        if date <= baseline_date:
            raise RecistInputError(f"{where}.date {raw['date']} is not after the baseline date {baseline_date}")
        if followups and date <= followups[-1].date:
            raise RecistInputError(f"{where}.date {raw['date']} is not after the previous visit's "
                                   f"({followups[-1].visit}, {followups[-1].date}): list follow-ups in date order")
        measured = raw.get("targets", {} if not targets else None)
        if measured is None:
            raise RecistInputError(f"{where}: missing 'targets' (the baseline has target lesions)")
        measured = _require_dict(measured, f"{where}.targets")
        unknown = sorted(set(measured) - set(target_ids))
        if unknown:
            raise RecistInputError(f"{where}.targets: unknown lesion id(s) {', '.join(unknown)}")
        missing = [t for t in target_ids if t not in measured]
        if missing:
            raise RecistInputError(f"{where}.targets: no value for {', '.join(missing)} (use null if not evaluated)")
        values = {t: _target_value(measured[t], f"{where}.targets.{t}") for t in target_ids}
        new = raw["new_lesions"]
        if new not in NEW_LESIONS:
            raise RecistInputError(f"{where}.new_lesions must be one of {', '.join(NEW_LESIONS)}, not {new!r}")
        first_seen = raw.get("new_lesion_first_seen_visit")
        if first_seen is not None:
            if new != "YES":
                raise RecistInputError(f"{where}.new_lesion_first_seen_visit is only meaningful with new_lesions YES")
            earlier = {f.visit: f for f in followups}
            if first_seen != visit and first_seen not in earlier:
                raise RecistInputError(f"{where}.new_lesion_first_seen_visit {first_seen!r} is not this or an "
                                       f"earlier follow-up visit")
            if first_seen != visit and earlier[first_seen].new_lesions == "NO":
                raise RecistInputError(f"{where}.new_lesion_first_seen_visit {first_seen!r} recorded no new lesion; "
                                       f"mark it EQUIVOCAL there")
        followups.append(_Followup(visit=visit, date=date, targets=values,
                                   non_target=_non_target_summary(raw, non_targets, where),
                                   new_lesions=new, first_seen=first_seen))
    return followups


def _options(raw) -> dict:
    raw = _require_dict(raw, "options")
    _no_unknown_keys(raw, set(DEFAULT_OPTIONS), "options")
    options = {**DEFAULT_OPTIONS, **raw}
    if not isinstance(options["confirmation_required"], bool):
        raise RecistInputError(f"options.confirmation_required must be true or false, "
                               f"not {options['confirmation_required']!r}")
    for key in ("min_confirm_days", "max_ne_between", "min_sd_days"):
        _int_option(options[key], f"options.{key}")
    if options["reference_date"] is not None:
        options["reference_date"] = _date(options["reference_date"], "options.reference_date")
    return options


# --- the rules ---------------------------------------------------------------------------------


def lesion_sum(values) -> Decimal:
    """Sum of diameters of target values as the input writes them (numbers, lists, "TSTM", "ABSENT"; null adds 0)."""
    return sum((_target_value(v, "value") or Decimal(0) for v in values), Decimal(0))


def _is_cr(targets: list[_Lesion], values: dict[str, Decimal | None]) -> bool:
    return all((values[t.id] < NODE_NORMAL_MM) if t.nodal else values[t.id] == 0 for t in targets)


def _reappeared(targets: list[_Lesion], values: dict[str, Decimal | None]) -> bool:
    """After a CR: a non-nodal target is back, or a node is pathological again."""
    return any(values[t.id] is not None and (values[t.id] >= NODE_NORMAL_MM if t.nodal else values[t.id] > 0)
               for t in targets)


def _progressed(total: Decimal, nadir: Decimal) -> bool:
    return total >= nadir * PD_FACTOR and total - nadir >= PD_ABSOLUTE_MM


def _target_response(targets, values, *, baseline_sum, nadir, after_cr) -> tuple[str, Decimal | None]:
    evaluated = [v for v in values.values() if v is not None]
    total = sum(evaluated, Decimal(0))
    if len(evaluated) < len(values):
        # the missing diameters can only add to the sum, so a partial sum may already prove progression
        if _progressed(total, nadir) or (after_cr and _reappeared(targets, values)):
            return "PD", None
        return "NE", None
    if _is_cr(targets, values):
        return "CR", total
    if _progressed(total, nadir) or (after_cr and _reappeared(targets, values)):
        return "PD", total
    if total <= baseline_sum * PR_FACTOR:
        return "PR", total
    return "SD", total


def _overall(target: str, non_target: str, new_lesions: str) -> str:
    if new_lesions == "YES" or target == "PD" or non_target == "PD":
        return "PD"
    if target == "NA":  # Table 2: non-target disease only
        return non_target
    if target == "NE":
        return "NE"
    if target == "CR":
        return "CR" if non_target in ("CR", "NA") else "PR"
    return target


def _confirmed(timepoints, index: int, accepted: set[str], options) -> bool:
    """A later timepoint in `accepted`, far enough away, with only tolerated NE timepoints between."""
    first = timepoints[index]
    not_evaluable = 0
    for later in timepoints[index + 1:]:
        if later["overall"] == "NE":
            not_evaluable += 1
            if not_evaluable > options["max_ne_between"]:
                return False
            continue
        if later["overall"] not in accepted:
            return False
        if (later["_date"] - first["_date"]).days >= options["min_confirm_days"]:
            return True
    return False


def _best_overall(timepoints, *, progressed: bool, has_targets: bool, options, reference: datetime.date) -> str:
    responses = [tp["overall"] for tp in timepoints]
    if options["confirmation_required"]:
        if any(r == "CR" and _confirmed(timepoints, i, {"CR"}, options) for i, r in enumerate(responses)):
            return "CR"
        if any(r in ("CR", "PR") and _confirmed(timepoints, i, {"CR", "PR"}, options)
               for i, r in enumerate(responses)):
            return "PR"
    else:
        for best in ("CR", "PR"):
            if best in responses:
                return best
    stable = "SD" if has_targets else "NON-CR/NON-PD"
    if any(tp["overall"] in ("CR", "PR", "SD", "NON-CR/NON-PD")
           and (tp["_date"] - reference).days >= options["min_sd_days"] for tp in timepoints):
        return stable
    return "PD" if progressed else "NE"


def _number_out(value: Decimal | None):
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def evaluate(data: dict) -> dict:
    """The full RECIST 1.1 evaluation of one subject as read by one reader: see the module docstring."""
    data = _require_dict(data, "input")
    _no_unknown_keys(data, {"options", "baseline", "followups"}, "input")
    if "baseline" not in data:
        raise RecistInputError("input: missing 'baseline'")
    options = _options(data.get("options", {}))
    baseline = _require_dict(data["baseline"], "baseline")
    if "date" not in baseline:
        raise RecistInputError("baseline: missing 'date'")
    baseline_date = _date(baseline["date"], "baseline.date")
    targets, non_targets = _lesions(baseline, "baseline", measured_targets=True)
    if not targets and not non_targets:
        raise RecistInputError("baseline: no target and no non-target lesions, so there is no response to evaluate")
    followups = _followups(data.get("followups", []), baseline_date, targets, non_targets)

    baseline_sum = sum((t.mm for t in targets), Decimal(0))
    nadir, last_target = baseline_sum, None
    timepoints = []
    for followup in followups:
        if targets:
            target, total = _target_response(targets, followup.targets, baseline_sum=baseline_sum, nadir=nadir,
                                             after_cr=last_target == "CR")
            if total is not None:
                nadir = min(nadir, total)
            if target != "NE":
                last_target = target
        else:
            target, total = "NA", None
        timepoints.append({"visit": followup.visit, "sum_mm": _number_out(total), "target": target,
                           "non_target": followup.non_target,
                           "overall": _overall(target, followup.non_target, followup.new_lesions),
                           "_date": followup.date})

    pd_index = next((i for i, tp in enumerate(timepoints) if tp["overall"] == "PD"), None)
    if pd_index is not None and followups[pd_index].first_seen:
        pd_index = next(i for i, f in enumerate(followups) if f.visit == followups[pd_index].first_seen)
    reference = options["reference_date"] or baseline_date
    bor = _best_overall(timepoints[:pd_index], progressed=pd_index is not None, has_targets=bool(targets),
                        options=options, reference=reference)
    for tp in timepoints:
        del tp["_date"]
    return {
        "timepoints": timepoints,
        "bor": bor,
        "pd_visit": followups[pd_index].visit if pd_index is not None else None,
        "pd_date": followups[pd_index].date.isoformat() if pd_index is not None else None,
    }


# --- baseline selection ------------------------------------------------------------------------


def _check_lesion(raw: dict, lesion: _Lesion, where: str, *, target: bool) -> str | None:
    """The error code for one baseline lesion, or None."""
    for key in ("modality", "slice_thickness_mm"):
        if key not in raw:
            raise RecistInputError(f"{where}: missing {key!r}")
    modality = raw["modality"]
    if modality not in MODALITIES:
        raise RecistInputError(f"{where}.modality must be one of {', '.join(MODALITIES)}, not {modality!r}")
    thickness = raw["slice_thickness_mm"]
    thickness = None if thickness is None else _number(thickness, f"{where}.slice_thickness_mm")
    mm = raw.get("mm")
    if mm is None:
        if target:
            raise RecistInputError(f"{where}: missing 'mm'")
        return None  # a non-target lesion need not be measured
    mm = _number(mm, f"{where}.mm")
    if lesion.nodal:
        if mm < NODE_NORMAL_MM:
            return f"NORMAL_NODE:{lesion.id}"
        if target and (mm < NODE_MEASURABLE_MM or modality not in ("CT", "MR")):
            return f"NOT_MEASURABLE:{lesion.id}"
        return None
    if not target:
        return None
    if modality == "US":
        return f"NOT_MEASURABLE:{lesion.id}"
    minimum = CHEST_XRAY_MEASURABLE_MM if modality in ("CR", "DX") else MEASURABLE_MM
    if modality == "CT" and thickness is not None and thickness > 5:
        minimum = max(minimum, 2 * thickness)
    return f"NOT_MEASURABLE:{lesion.id}" if mm < minimum else None


def baseline_check(data: dict) -> dict:
    """Check a reader's baseline selection against the RECIST 1.1 rules: ``{"valid", "errors"}``."""
    data = _require_dict(data, "input")
    baseline = _require_dict(data["baseline"], "baseline") if "baseline" in data else data
    where = "baseline" if "baseline" in data else "input"
    if "date" in baseline:
        _date(baseline["date"], f"{where}.date")
    _no_unknown_keys(baseline, {"date", "targets", "non_targets"}, where)
    targets, non_targets = _lesions(baseline, where, measured_targets=True)
    errors = []
    if len(targets) > MAX_TARGETS:
        errors.append("MAX_TARGETS_EXCEEDED")
    per_organ: dict[str, int] = {}
    for lesion in targets:
        organ = NODE_ORGAN if lesion.nodal else lesion.organ.strip().upper()
        per_organ[organ] = per_organ.get(organ, 0) + 1
    errors += [f"MAX_PER_ORGAN_EXCEEDED:{organ}" for organ, n in per_organ.items() if n > MAX_TARGETS_PER_ORGAN]
    for kind, lesions in (("targets", targets), ("non_targets", non_targets)):
        for index, lesion in enumerate(lesions):
            code = _check_lesion(baseline[kind][index], lesion, f"{where}.{kind}[{index}]", target=kind == "targets")
            if code:
                errors.append(code)
    return {"valid": not errors, "errors": errors}
