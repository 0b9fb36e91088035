"""verify(): what is left in a de-identified dataset that the profile says must not be."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataset import Dataset

from .apply import (
    DUMMY,
    DUMMY_TEXT,
    META_AE_TITLES,
    META_PRIVATE,
    PATIENT_ID,
    PATIENT_NAME,
    TEXT_VRS,
    Profile,
    method_codes,
    values_of,
)
from .pseudonyms import matcher
from .table import compiled_action, row_action, rules

# Numbers, UIDs, codes and binary: a short forbidden ID would turn up in them by chance.
_NOT_SEARCHED = frozenset({"UI", "IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT", "CS",
                           "OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"})
SEARCHED_VRS = frozenset({"AE", "AS", "DA", "DT", "TM", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})


def verify(ds: Dataset, *, profile: Profile, subject_code: str, forbidden: Iterable[str] = ()) -> list[str]:
    """Problems left in ``ds`` after deidentify() under ``profile``; an empty list means none were found.

    Checks at every nesting level: attributes whose action is X still present, Z not empty, D not the
    dummy (inside a D sequence: any text but the dummy), U (and D on UIDs) not a ``2.25.`` UID
    (unless Retain UIDs), private attributes not on the allowlist, PatientName / PatientID other than
    ``subject_code``, any of ``forbidden`` (see identifying_strings) in text, and the de-identification
    marks. Pure: reads ``ds`` only.
    """
    return check(ds, profile=profile, subject_code=subject_code, forbidden=forbidden, marks=True)


def check(ds: Dataset, *, profile: Profile, subject_code: str, forbidden: Iterable[str], marks: bool) -> list[str]:
    """verify(), leaving out the de-identification marks unless ``marks`` (a caller that adds them itself)."""
    checker = _Checker(profile=profile, subject_code=subject_code, forbidden=matcher(forbidden))
    checker.walk(ds, path="", dummy=False)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        checker.walk(meta, path="file meta ", dummy=False)
        for tag in META_PRIVATE + (() if "retain_device_identity" in profile.options else META_AE_TITLES):
            if tag in meta:
                checker.problems.append(f"file meta {meta[tag].tag} {meta[tag].name}: present")
    problems = checker.problems
    if not marks:
        return problems
    if ds.get("PatientIdentityRemoved") != "YES":
        problems.append("PatientIdentityRemoved is not YES")
    listed = {(item.get("CodingSchemeDesignator"), item.get("CodeValue"))
              for item in ds.get("DeidentificationMethodCodeSequence", [])}
    for code, meaning in method_codes(profile):
        if ("DCM", code) not in listed:
            problems.append(f"DeidentificationMethodCodeSequence lacks {code} {meaning}")
    return problems


class _Where:
    """Where an element is, put into words only when a problem is reported."""

    __slots__ = ("path", "elem")

    def __init__(self, path: str, elem) -> None:
        self.path, self.elem = path, elem

    def __format__(self, spec: str) -> str:
        return f"{self.path}{self.elem.tag} {self.elem.keyword or self.elem.name}"


class _Checker:
    def __init__(self, *, profile: Profile, subject_code: str, forbidden):
        self.profile, self.subject_code, self.forbidden = profile, subject_code, forbidden
        self.rules = rules()
        self.private_action, _ = row_action(self.rules.private, options=profile.options)
        self.problems: list[str] = []

    def walk(self, ds: Dataset, *, path: str, dummy: bool) -> None:
        for elem in ds:
            tag = int(elem.tag)
            where = _Where(path, elem)
            action = None
            if tag >> 16 & 1:
                self._private(ds, elem, where)
            elif tag in (PATIENT_NAME, PATIENT_ID):
                if str(elem.value or "") != self.subject_code:
                    self.problems.append(f"{where}: not the subject code")
                continue
            elif (row := self.rules.lookup(tag)) is not None:
                action = self._row(elem, row, where)
            if dummy and elem.VR in TEXT_VRS and action not in ("D", "Z"):
                if any(str(v) != DUMMY_TEXT for v in values_of(elem)):
                    self.problems.append(f"{where}: not the dummy value inside a D sequence")
            if self.forbidden is not None and elem.VR not in _NOT_SEARCHED:
                if any(self.forbidden.search(str(v)) for v in values_of(elem)):
                    self.problems.append(f"{where}: holds identifying text")
            if elem.VR == "SQ":
                for number, item in enumerate(elem.value):
                    self.walk(item, path=f"{path}{elem.keyword or elem.tag}[{number}] > ",
                              dummy=dummy or action == "D")

    def _private(self, ds: Dataset, elem, where: _Where) -> None:
        tag = int(elem.tag)
        element = tag & 0xFFFF
        if self.private_action != "C":
            self.problems.append(f"{where}: private attribute")
        elif 0x10 <= element <= 0xFF:
            creator = str(elem.value or "").strip()
            if not any(creator == name for name, _ in self.profile.safe_private):
                self.problems.append(f"{where}: private creator with nothing allowed")
        else:
            creator = ds.get((tag & 0xFFFF0000) | (element >> 8))
            name = str(creator.value).strip() if creator is not None else None
            if (name, tag & 0xFF) not in self.profile.safe_private:
                self.problems.append(f"{where}: private attribute not on the allowlist")

    def _row(self, elem, row, where: _Where) -> str:
        action, _ = compiled_action(row, options=self.profile.options, sequence=elem.VR == "SQ")
        values = values_of(elem) if elem.VR != "SQ" else list(elem.value)
        if action == "X":
            self.problems.append(f"{where}: present, action X")
        elif action == "Z" and values:
            self.problems.append(f"{where}: not empty, action Z")
        elif elem.VR == "UI" and action in ("D", "U"):
            if any(not str(v).startswith("2.25.") for v in values):
                self.problems.append(f"{where}: UID not mapped, action {action}")
        elif action == "D" and elem.VR != "SQ":
            if not values:
                self.problems.append(f"{where}: empty, action D")
            elif elem.VR in DUMMY or elem.VR in TEXT_VRS or elem.VR == "CS":
                if any(str(v) != DUMMY.get(elem.VR, DUMMY_TEXT) for v in values):
                    self.problems.append(f"{where}: not the dummy value, action D")
        return action
