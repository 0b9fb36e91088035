"""Table E.1-1 as data, the options a trial may switch on, and the one action each row takes under them."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

TABLE_EDITION = "2026c"  # must match deid/data/ps315_table_e11.meta.json; a test checks it
TABLE_FILE = Path(__file__).resolve().parent.parent / "data" / "ps315_table_e11.json"

PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
# Option name -> CID 7050 code and meaning (scheme DCM). The names are the table's option columns.
OPTIONS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_longitudinal_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_longitudinal_modified_dates": ("113107",
                                           "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
})
MODIFIED_DATES = "retain_longitudinal_modified_dates"
FULL_DATES = "retain_longitudinal_full_dates"
ACTIONS = frozenset("XZDKCU")

# Combined actions take the alternative that removes least (see the package docstring).
_COMBINED = {"X": "X", "Z": "Z", "D": "D", "K": "K", "C": "C", "U": "U",
             "X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}
# A Type 2 sequence may be empty, a Type 1 or 3 one needs an item: only D (items kept, their content
# replaced by dummies) is valid for all three, so every combination on a sequence becomes D.
_COMBINED_SQ = {**_COMBINED, "X/Z": "D", "X/Z/D": "D"}


@dataclass(frozen=True)
class Row:
    """One row of Table E.1-1; a tag matches when ``tag & mask == value`` (the odd-group row: ``private``)."""

    tag: str
    keyword: str
    name: str
    retired: bool
    in_std_comp_iod: bool
    basic: str
    options: Mapping[str, str]
    value: int
    mask: int
    private: bool

    def matches(self, tag: int) -> bool:
        """True when this row governs ``tag``."""
        if self.private:
            return bool(tag & 0x10000)
        return tag & self.mask == self.value


def _pattern(text: str) -> tuple[int, int, bool]:
    if "odd" in text:  # "(gggg,eeee) where gggg is odd"
        return 0, 0, True
    digits = text[1:5] + text[6:10]
    value = int("".join("0" if c == "x" else c for c in digits), 16)
    mask = int("".join("0" if c == "x" else "F" for c in digits), 16)
    return value, mask, False


@functools.cache
def _table() -> tuple[Row, ...]:
    rows = []
    for raw in json.loads(TABLE_FILE.read_text(encoding="utf-8")):
        value, mask, private = _pattern(raw["tag"])
        rows.append(Row(tag=raw["tag"], keyword=raw["keyword"], name=raw["name"], retired=raw["retired"],
                        in_std_comp_iod=raw["in_std_comp_iod"] == "Y", basic=raw["basic"],
                        options=MappingProxyType(dict(raw["options"])), value=value, mask=mask,
                        private=private))
    return tuple(rows)


def table() -> list[Row]:
    """The loaded Table E.1-1 rows, in the standard's order."""
    return list(_table())


def row_action(row: Row, *, options: frozenset[str], sequence: bool = False) -> tuple[str, str | None]:
    """The single action (one of ACTIONS) this row takes under ``options``, and the option that chose it.

    When options in force disagree, C wins over K: keeping a device's real calibration date next to
    shifted acquisition dates would undo the shift. Among several C, the dates option names the reason.
    """
    chosen = {name: act for name, act in row.options.items() if name in options}
    if chosen:
        name = min(chosen, key=lambda n: (chosen[n] != "C", n != MODIFIED_DATES, n))
        return chosen[name], name
    return (_COMBINED_SQ if sequence else _COMBINED)[row.basic], None


_ACTIONS: dict[tuple[int, frozenset[str], bool], tuple[str, str | None]] = {}


def compiled_action(row: Row, *, options: frozenset[str], sequence: bool = False) -> tuple[str, str | None]:
    """row_action(), computed once per row, option set and sequence flag (rows live as long as the table)."""
    key = (id(row), options, sequence)
    found = _ACTIONS.get(key)
    if found is None:
        found = _ACTIONS[key] = row_action(row, options=options, sequence=sequence)
    return found


@dataclass(frozen=True)
class Rules:
    """The table indexed for lookups by tag."""

    exact: Mapping[int, Row]
    patterns: tuple[Row, ...]
    private: Row

    def lookup(self, tag: int) -> Row | None:
        """The row governing a public ``tag``, or None (the attribute is kept)."""
        row = self.exact.get(int(tag))  # a plain int: BaseTag's == is slow Python
        if row is None and self.patterns:
            row = next((r for r in self.patterns if tag & r.mask == r.value), None)
        return row


@functools.cache
def rules() -> Rules:
    """The loaded table, indexed."""
    rows = _table()
    exact = MappingProxyType({r.value: r for r in rows if not r.private and r.mask == 0xFFFFFFFF})
    patterns = tuple(r for r in rows if not r.private and r.mask != 0xFFFFFFFF)
    return Rules(exact=exact, patterns=patterns, private=next(r for r in rows if r.private))
