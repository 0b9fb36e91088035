"""deidentify(): walk a dataset and its sequences, applying each row's action, then mark what was done."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .pixels import Box, clean_pixels
from .pseudonyms import ae_pseudonym, identifying_strings, map_uid, matcher, shift_date
from .table import (
    FULL_DATES,
    MODIFIED_DATES,
    OPTIONS,
    PROFILE_CODE,
    TABLE_EDITION,
    Row,
    compiled_action,
    row_action,
    rules,
)

PATIENT_NAME, PATIENT_ID = 0x00100010, 0x00100020
_PATIENT = frozenset({PATIENT_NAME, PATIENT_ID})
_OVERLAY_DATA = 0x60003000
META_AE_TITLES = (0x00020016, 0x00020017, 0x00020018)  # Source, Sending, Receiving AE Title
META_PRIVATE = (0x00020100, 0x00020102)  # Private Information Creator UID, Private Information
TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
DUMMY_TEXT = "ANONYMIZED"
DUMMY = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000Y", "IS": "0", "DS": "0",
         "UR": "urn:uuid:00000000-0000-0000-0000-000000000000"}


@dataclass(frozen=True)
class Profile:
    """The Basic Profile plus the options a trial switches on; safe_private holds (creator, offset 0x00-0xFF)."""

    options: frozenset[str] = frozenset()
    safe_private: frozenset[tuple[str, int]] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.options) - set(OPTIONS)
        if unknown:
            raise ValueError(f"unknown de-identification options: {sorted(unknown)}")
        if {MODIFIED_DATES, FULL_DATES} <= self.options:
            raise ValueError("full dates and modified dates are exclusive options")
        if self.safe_private and "retain_safe_private" not in self.options:
            raise ValueError("a safe-private allowlist needs the retain_safe_private option")
        for creator, offset in self.safe_private:
            if not creator.strip() or not 0 <= offset <= 0xFF:
                raise ValueError(f"bad safe-private entry {(creator, offset)!r}")


@dataclass(frozen=True)
class Keys:
    """Secrets the caller derives: the trial's UID key (16+ bytes) and the subject's date offset in days."""

    uid_key: bytes
    date_shift_days: int

    def __post_init__(self) -> None:
        if len(self.uid_key) < 16:
            raise ValueError("uid_key must be at least 16 bytes")


@dataclass
class Report:
    """What deidentify() did: table actions applied, by letter, and the counts a verification records."""

    actions: Counter = field(default_factory=Counter)
    removed_private: int = 0  # private elements removed, creators included
    uids_mapped: int = 0  # UID values replaced, file meta included
    dates_shifted: int = 0  # DA/DT values moved by the subject's offset


def vr_of(ds: Dataset, tag: int) -> str:
    """The VR of ``ds[tag]`` without decoding its value (the dictionary's when the file did not say)."""
    vr = ds.get_item(tag).VR
    if vr in (None, "UN"):
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = vr or "UN"
    return vr


def values_of(elem: DataElement) -> list:
    """The element's values as a list (empty for an empty element)."""
    if elem.value is None or elem.value == "":
        return []
    return list(elem.value) if elem.VM > 1 else [elem.value]


def _set(elem: DataElement, values: list) -> None:
    elem.value = values if len(values) > 1 else (values[0] if values else "")


def empty_value(vr: str):
    """The zero-length value for ``vr``."""
    if vr == "SQ":
        return Sequence()
    if vr in _BINARY_VRS:
        return b""
    return None if vr in _NUMBER_VRS else ""


# How text is treated inside a sequence: as is, scrubbed of identifiers (under a C), or replaced (under a D).
KEEP, SCRUB, DUMMY_MODE = "keep", "scrub", "dummy"


class _Run:
    def __init__(self, *, profile: Profile, keys: Keys, subject_code: str, scrubber: re.Pattern | None):
        self.profile, self.keys, self.subject_code, self.scrubber = profile, keys, subject_code, scrubber
        self.rules = rules()
        self.private_action, _ = row_action(self.rules.private, options=profile.options)
        self.report = Report()

    def walk(self, ds: Dataset, *, mode: str = KEEP) -> None:
        drop_groups: set[int] = set()
        kept_blocks: set[tuple[int, int]] = set()
        creators = []
        for tag in list(ds.keys()):
            group, element = tag >> 16, tag & 0xFFFF
            if element == 0 and group != 0x0002:
                del ds[tag]  # group lengths no longer match what is left of the group
            elif group & 1:
                if 0x10 <= element <= 0xFF:
                    creators.append(tag)
                elif self._private(ds, tag, mode=mode):
                    kept_blocks.add((group, element >> 8))
            elif tag in _PATIENT:
                ds[tag].value = self.subject_code
                self.report.actions["D"] += 1
            elif (row := self.rules.lookup(tag)) is not None:
                self._apply(ds, tag, row, mode=mode, drop_groups=drop_groups)
            else:
                self._keep(ds, tag, mode=mode)
        for tag in creators:
            if (tag >> 16, tag & 0xFF) not in kept_blocks:
                del ds[tag]
                self.report.removed_private += 1
        for tag in [t for t in ds.keys() if t >> 16 in drop_groups]:
            del ds[tag]

    def _keep(self, ds: Dataset, tag: int, *, mode: str) -> None:
        vr = vr_of(ds, tag)
        if vr == "SQ" and ds[tag].VR == "SQ":
            for item in ds[tag].value:
                self.walk(item, mode=mode)
        elif mode == SCRUB and vr in TEXT_VRS:
            self._scrub(ds[tag])
        elif mode == DUMMY_MODE and vr in TEXT_VRS and not ds[tag].is_empty:
            self._dummy(ds[tag], mode=mode)

    def _private(self, ds: Dataset, tag: int, *, mode: str) -> bool:
        creator = ds.get((tag & 0xFFFF0000) | ((tag & 0xFFFF) >> 8))
        allowed = (self.private_action == "C" and (tag & 0xFFFF) > 0xFF and creator is not None
                   and (str(creator.value).strip(), tag & 0xFF) in self.profile.safe_private)
        if not allowed:
            del ds[tag]
            self.report.removed_private += 1
            return False
        self._keep(ds, tag, mode=mode)
        return True

    def _apply(self, ds: Dataset, tag: int, row: Row, *, mode: str, drop_groups: set[int]) -> None:
        elem = ds[tag]
        vr = elem.VR
        action, reason = compiled_action(row, options=self.profile.options, sequence=vr == "SQ")
        if action == "C" and not self._clean(elem, reason, mode=mode):
            action, _ = compiled_action(row, options=frozenset(), sequence=vr == "SQ")  # not cleanable: basic
        self.report.actions[action] += 1
        if action == "X":
            del ds[tag]
            if tag & 0xFF00FFFF == _OVERLAY_DATA:
                drop_groups.add(tag >> 16)  # an overlay plane without its data would break the IOD
        elif action == "Z":
            elem.value = empty_value(vr)
        elif action == "D":
            self._dummy(elem, mode=mode)
        elif action == "U" and vr == "UI":
            self._map_uids(elem)
        elif action == "U" and vr != "SQ":
            elem.value = empty_value(vr)
        elif action in ("K", "U"):
            self._keep(ds, tag, mode=mode)
        elif mode == DUMMY_MODE and vr in TEXT_VRS and not elem.is_empty:
            self._dummy(elem, mode=mode)  # inside a D sequence an option keeps structure, not text

    def _dummy(self, elem: DataElement, *, mode: str) -> None:
        vr = elem.VR
        if vr == "SQ":
            for item in elem.value:
                self.walk(item, mode=DUMMY_MODE)
        elif vr == "UI":
            self._map_uids(elem)
        elif vr in _BINARY_VRS:
            elem.value = b"\0" * 8
        elif vr in _NUMBER_VRS:
            elem.value = 0.0 if vr in ("FL", "FD") else 0
        else:
            elem.value = DUMMY.get(vr, DUMMY_TEXT)

    def _map_uids(self, elem: DataElement) -> None:
        uids = [map_uid(str(v), key=self.keys.uid_key) for v in values_of(elem)]
        self.report.uids_mapped += len(uids)
        _set(elem, uids)

    def _clean(self, elem: DataElement, reason: str | None, *, mode: str) -> bool:
        """Apply C in place; False when this element cannot be cleaned and takes the basic action instead."""
        vr = elem.VR
        if reason == MODIFIED_DATES:
            if vr == "TM":
                return True
            if vr not in ("DA", "DT"):
                return False  # e.g. a binary timestamp: there is no defined way to shift it
            try:
                shifted = [shift_date(str(v), days=self.keys.date_shift_days, vr=vr) for v in values_of(elem)]
            except ValueError:
                return False
            _set(elem, shifted)
            self.report.dates_shifted += len(shifted)
        elif vr == "AE":
            _set(elem, [ae_pseudonym(str(v), key=self.keys.uid_key) for v in values_of(elem)])
        elif vr == "SQ":
            for item in elem.value:
                self.walk(item, mode=DUMMY_MODE if mode == DUMMY_MODE else SCRUB)
        elif vr in TEXT_VRS:
            self._scrub(elem)
        return True

    def _scrub(self, elem: DataElement) -> None:
        if self.scrubber is None:
            return
        values = [str(v) for v in values_of(elem)]
        cleaned = [self.scrubber.sub("*", v) for v in values]
        if cleaned != values:
            _set(elem, cleaned)


def check_subject_code(subject_code: str) -> None:
    """Raise ValueError unless ``subject_code`` is a valid LO and PN value."""
    if (not subject_code or len(subject_code) > 64 or not subject_code.isascii() or not subject_code.isprintable()
            or "\\" in subject_code):
        raise ValueError(f"subject code {subject_code!r} is not a valid LO/PN value")


def deidentify(ds: Dataset, *, profile: Profile, keys: Keys, subject_code: str,
               pixel_boxes: list[Box] | None = None) -> Report:
    """De-identify ``ds`` in place (pass a copy); on DeidError ``ds`` is half-done and must be discarded.

    ``pixel_boxes`` are (x, y, width, height) in pixels, blanked in every frame. They are required
    (an empty list when nothing is burned in) exactly when the profile has clean_pixel_data.
    Deterministic: the same input, profile and keys give the same output.
    """
    check_subject_code(subject_code)
    if ("clean_pixel_data" in profile.options) != (pixel_boxes is not None):
        raise ValueError("pixel_boxes go with the clean_pixel_data option, and only with it")
    if pixel_boxes is not None:
        clean_pixels(ds, boxes=pixel_boxes, overlays="clean_graphics" in profile.options)
    return apply_table(ds, profile=profile, keys=keys, subject_code=subject_code,
                       identifying=identifying_strings(ds), report=Report())


def apply_table(ds: Dataset, *, profile: Profile, keys: Keys, subject_code: str, identifying: frozenset[str],
                report: Report, mark: bool = True) -> Report:
    """deidentify() once the pixels are done: the table over ``ds`` and its file meta, counted in ``report``.

    ``identifying`` are the original's identifying_strings(); without ``mark`` the caller adds the
    de-identification marks (MARK_TAGS) itself.
    """
    run = _Run(profile=profile, keys=keys, subject_code=subject_code, scrubber=matcher(identifying))
    run.report = report
    run.walk(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        run.walk(meta)
        _clean_meta(meta, run=run)
    if mark:
        _mark(ds, profile=profile)
    return run.report


def _clean_meta(meta: Dataset, *, run: _Run) -> None:
    """The file meta's AE titles name the sending site's devices, like Station AE Title: treat them alike."""
    for tag in META_PRIVATE:
        if tag in meta:
            del meta[tag]
            run.report.removed_private += 1
    for tag in META_AE_TITLES:
        if tag in meta:
            if "retain_device_identity" in run.profile.options:
                _set(meta[tag], [ae_pseudonym(str(v), key=run.keys.uid_key) for v in values_of(meta[tag])])
                run.report.actions["C"] += 1
            else:
                del meta[tag]
                run.report.actions["X"] += 1


def method_codes(profile: Profile) -> list[tuple[str, str]]:
    """CID 7050 (code value, meaning) for the profile and each option in force, in code order."""
    return [PROFILE_CODE] + sorted(OPTIONS[name] for name in profile.options)


MARK_TAGS = (0x00120062, 0x00120063, 0x00120064, 0x00280303)


def _mark(ds: Dataset, *, profile: Profile) -> None:
    codes = method_codes(profile)
    temporal = ("MODIFIED" if MODIFIED_DATES in profile.options
                else "UNMODIFIED" if FULL_DATES in profile.options else "REMOVED")
    items = []
    for value, meaning in codes:
        item = Dataset()
        for tag, vr, text in ((0x00080100, "SH", value), (0x00080102, "SH", "DCM"), (0x00080104, "LO", meaning)):
            item.add(DataElement(tag, vr, text, validation_mode=config.IGNORE))  # constants, known valid
        items.append(item)
    method = [f"PS3.15 Table E.1-1 {TABLE_EDITION}"] + [meaning for _, meaning in codes]
    for tag, vr, value in ((0x00120062, "CS", "YES"), (0x00120063, "LO", method),
                           (0x00120064, "SQ", Sequence(items)), (0x00280303, "CS", temporal)):
        ds.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))
