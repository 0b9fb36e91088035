"""Keyed, stable replacements: UIDs, AE titles, shifted dates, and the identifying text to scrub."""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

MIN_IDENTIFIER = 3  # shorter name parts would match too much ordinary text
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientBirthDate", "AccessionNumber", "PatientAddress",
    "PatientTelephoneNumbers", "MedicalRecordLocator", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "RequestingPhysician",
)
_IDENTIFYING_TAGS = tuple(tag_for_keyword(keyword) for keyword in IDENTIFYING_KEYWORDS)
_IDENTIFYING_SET = frozenset(_IDENTIFYING_TAGS)


def identifying_tags() -> frozenset[int]:
    """The top-level attributes identifying_strings() reads."""
    return _IDENTIFYING_SET


def map_uid(uid: str, *, key: bytes) -> str:
    """The trial's stable replacement for ``uid``: ``2.25.`` + the UUIDv8 made of HMAC-SHA256(key, uid)[:16].

    Same key and UID, same result; another key gives an unrelated one. At most 44 characters.
    """
    return _map_uid(uid, key)


@functools.lru_cache(maxsize=4096)  # a series repeats its study, series and frame of reference UIDs
def _map_uid(uid: str, key: bytes) -> str:
    digest = hmac.new(key, uid.strip("\0 ").encode("utf-8"), hashlib.sha256).digest()[:16]
    number = int.from_bytes(digest, "big")
    # a 2.25 UID is a UUID's integer, so mark it RFC 9562 version 8 (custom): 122 keyed bits remain
    number = (number & ~(0xF << 76)) | (0x8 << 76)
    number = (number & ~(0x3 << 62)) | (0x2 << 62)
    return f"2.25.{number}"


def ae_pseudonym(value: str, *, key: bytes) -> str:
    """A stable 16-character AE title standing for ``value`` within the trial of ``key``."""
    return hmac.new(key, b"AE\0" + value.strip().encode("utf-8"), hashlib.sha256).hexdigest()[:16].upper()


_DATE_PART = re.compile(r"^(\d{4})(\d{2})?(\d{2})?")
_DT_REST = re.compile(r"^(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$|^\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")


def shift_date(value: str, *, days: int, vr: str | None = None) -> str:
    """``value`` (DA, DT or TM) moved by ``days``; a TM and a DT's time and offset are unchanged.

    Raises ValueError if the value does not parse. Without ``vr``, 8 digits are a DA and shorter
    digit strings a TM: pass ``vr="DT"`` for partial DTs such as ``2024``. A partial DT keeps its
    precision (``202403`` shifts its first day and stays ``YYYYMM``).
    """
    text = value.strip()
    if not text:
        return value
    if vr is None:
        vr = "DA" if len(text) == 8 and text.isdigit() else "TM" if _TM.match(text) else "DT"
    if vr == "TM":
        return value
    match = _DATE_PART.match(text)
    if vr not in ("DA", "DT") or not match:
        raise ValueError(f"not a {vr} date: {value!r}")
    rest = text[match.end():]
    if vr == "DA" and (rest or not match.group(3)):
        raise ValueError(f"not a DA value: {value!r}")
    if vr == "DT" and (not _DT_REST.match(rest) or (rest[:1].isdigit() and not match.group(3))):
        raise ValueError(f"not a DT value: {value!r}")
    year, month, day = (int(g) if g else 1 for g in match.groups())
    try:
        moved = datetime.date(year, month, day) + datetime.timedelta(days=days)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"cannot shift {value!r} by {days} days: {exc}") from None
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"[:match.end()] + rest


def identifying_strings(ds: Dataset) -> frozenset[str]:
    """Patient and staff identifiers at the top of ``ds``: names and their parts, IDs, birth date, accession.

    Call it before deidentify(): it is what verify(forbidden=...) looks for afterwards, and what the
    cleaning actions scrub. Parts shorter than MIN_IDENTIFIER characters are left out.
    """
    found: set[str] = set()
    for tag in _IDENTIFYING_TAGS:
        if tag not in ds:
            continue
        elem = ds[tag]
        if elem.VR == "SQ" or elem.value is None:
            continue
        for value in (elem.value if elem.VM > 1 else [elem.value]):
            text = str(value).strip()
            found.add(text)
            if elem.VR == "PN":
                found.update(part.strip() for part in re.split(r"[\^=]", text))
    return frozenset(s for s in found if len(s) >= MIN_IDENTIFIER and any(c.isalnum() for c in s))


def matcher(strings: Iterable[str]) -> re.Pattern | None:
    """A case-insensitive pattern finding any of ``strings`` as a whole word, or None when there are none."""
    ordered = sorted({s for s in strings if s}, key=len, reverse=True)
    if not ordered:
        return None
    # bounded by non-alphanumerics, so "ANN" is found in "ANN SMITH" but not in "SCANNER"
    return re.compile(r"(?<![0-9A-Za-z])(?:" + "|".join(map(re.escape, ordered)) + r")(?![0-9A-Za-z])",
                      re.IGNORECASE)
