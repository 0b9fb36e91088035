"""One file through the engine: de-identify and verify. No ORM, no storage.

Shared by the Celery path (deid.services) and the batch CLI, so both release exactly the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field

import pydicom
from pydicom.errors import InvalidDicomError

from deid.engine import (
    DeidError,
    Keys,
    OcrError,
    Profile,
    deidentify_bytes,
    find_text,
    identifying_strings,
    pixel_review_reasons,
)

BURNED_IN_UNCLEANED = "(0028,0301) BurnedInAnnotation: YES and no pixel-clean region applies"
# findings about the pixels only: a person looking at the de-identified image can judge them (QC review)
PIXEL_TEXT = "(7FE0,0010) PixelData: OCR read text"
PIXEL_UNREAD = "(7FE0,0010) PixelData: OCR could not read the pixels"


@dataclass(frozen=True)
class Ocr:
    """How burned-in text is looked for in files routed to pixel review.

    A word counts when Tesseract is at least ``min_confidence`` (0-100) sure of it and it has at least
    ``min_chars`` letters or digits: names, dates and IDs are longer, while single-character reads
    are what Tesseract makes of speckle and anatomy (on pydicom's CT and MR samples its only reads,
    at 0-82, are one letter long; the real text on its ultrasound sample reads at 85-96).
    """

    min_confidence: float = 70.0
    min_chars: int = 3
    max_frames: int = 16


def reviewable(findings: list[str]) -> bool:
    """Whether every finding is about pixels, so a QC reviewer looking at the output can release it."""
    return bool(findings) and all(line.startswith((PIXEL_TEXT, PIXEL_UNREAD, BURNED_IN_UNCLEANED))
                                  for line in findings)


@dataclass
class Result:
    """What happened to one file. ``output`` is set when the engine produced one (released or held)."""

    output: bytes | None = None
    sha256: str = ""
    action_counts: dict = field(default_factory=dict)
    removed_private: int = 0
    uids_mapped: int = 0
    dates_shifted: int = 0
    pixel_boxes: int = 0
    findings: list[str] = field(default_factory=list)  # verification problems: tags and keywords only
    error: str = ""  # why the engine refused the file
    duration_ms: int = 0
    uids: tuple[str, str, str] = ("", "", "")  # study, series, SOP instance UIDs of the output
    pixel_review: list[str] = field(default_factory=list)  # why the file went to pixel review
    # OCR's boxes in the output: frame, x, y, width, height, confidence, chars (never the text)
    text_boxes: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.output is not None and not self.findings and not self.error


def regions_for(ds, regions: list[dict]) -> list[tuple[int, int, int, int]]:
    """The pixel boxes of every region matching the file's manufacturer, model and image size."""
    def same(wanted, actual) -> bool:
        if wanted in (None, ""):
            return True
        if isinstance(wanted, int):
            return actual is not None and int(actual) == wanted
        return str(actual or "").strip().casefold() == str(wanted).strip().casefold()

    boxes = []
    for region in regions:
        if (same(region.get("manufacturer"), ds.get("Manufacturer"))
                and same(region.get("model"), ds.get("ManufacturerModelName"))
                and same(region.get("rows"), ds.get("Rows")) and same(region.get("columns"), ds.get("Columns"))):
            boxes.extend(tuple(int(v) for v in box) for box in region.get("boxes", []))
    return boxes


def _redact(text: str, forbidden: frozenset[str]) -> str:
    # the engine's findings name attributes, not values; this makes sure of it
    for value in sorted(forbidden, key=len, reverse=True):
        text = text.replace(value, "*")
    return text


def run(raw: bytes, *, profile: Profile, keys: Keys, subject_code: str, pixel_regions: list[dict],
        ocr: Ocr | None = None) -> Result:
    """De-identify one Part 10 file's bytes and verify what would be written. Never raises for a bad file.

    The engine's byte-level path (``deidentify_bytes``) parses only what the profile changes and copies
    the rest, pixel data included, byte for byte; it verifies the bytes it returns.

    With ``ocr``, a file routed to pixel review (``pixel_review_reasons``: burned-in annotation,
    secondary capture, ultrasound, screen capture) is read by Tesseract *after* the regions are blanked,
    in the output's pixels: text still there becomes a finding (the file is held for QC review) and its
    boxes go in ``text_boxes``. Without ``ocr`` (the batch CLI, a profile with OCR off) nothing is read.
    """
    started = time.perf_counter()
    result = Result()
    try:
        head = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        result.error = f"not a readable DICOM file ({type(exc).__name__})"
        return _done(result, started)
    forbidden = identifying_strings(head)
    boxes = None
    if "clean_pixel_data" in profile.options:
        boxes = regions_for(head, pixel_regions)
        result.pixel_boxes = len(boxes)
    burned_in = str(head.get("BurnedInAnnotation", "")).strip().upper() == "YES"
    try:
        out = deidentify_bytes(raw, profile=profile, keys=keys, subject_code=subject_code, pixel_boxes=boxes)
    except (DeidError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # DeidError/ValueError: what the engine refuses; the others: pydicom cannot write what it read
        result.error = _redact(f"{exc}" if isinstance(exc, DeidError | ValueError)
                               else f"cannot be written after de-identification ({type(exc).__name__})", forbidden)
        return _done(result, started)
    result.output = out.data
    result.sha256 = hashlib.sha256(result.output).hexdigest()
    report = out.report
    result.action_counts = dict(sorted(report.actions.items()))
    result.removed_private, result.uids_mapped = report.removed_private, report.uids_mapped
    result.dates_shifted = report.dates_shifted
    result.findings = [_redact(problem, forbidden | out.forbidden) for problem in out.problems]
    if burned_in and not result.pixel_boxes:
        result.findings.append(BURNED_IN_UNCLEANED)
    result.pixel_review = pixel_review_reasons(head)
    if ocr is not None and result.pixel_review:
        _read_text(result, ocr)
    written = pydicom.dcmread(io.BytesIO(result.output), stop_before_pixels=True)
    result.uids = (str(written.get("StudyInstanceUID", "")), str(written.get("SeriesInstanceUID", "")),
                   str(written.get("SOPInstanceUID", "")))
    return _done(result, started)


def _read_text(result: Result, ocr: Ocr) -> None:
    """OCR the output's pixels; what it reads (or cannot read) becomes a finding, boxes without text."""
    try:
        output = pydicom.dcmread(io.BytesIO(result.output))
        boxes = [box for box in find_text(output, min_confidence=ocr.min_confidence, max_frames=ocr.max_frames)
                 if sum(c.isalnum() for c in box.text) >= ocr.min_chars]
    except OcrError as exc:
        # an exception text names a decoder or Tesseract, never a value: still, say only its kind
        result.findings.append(f"{PIXEL_UNREAD} ({type(exc.__cause__ or exc).__name__}); "
                               f"routed to pixel review: {', '.join(result.pixel_review)}")
        return
    result.text_boxes = [{"frame": box.frame, "x": box.x, "y": box.y, "width": box.width, "height": box.height,
                          "confidence": round(box.confidence, 1), "chars": len(box.text)} for box in boxes]
    if boxes:
        frames = sorted({box.frame for box in boxes})
        result.findings.append(f"{PIXEL_TEXT} in {len(boxes)} box(es) after pixel cleaning (frame(s) "
                               f"{', '.join(str(f + 1) for f in frames[:10])}); routed to pixel review: "
                               f"{', '.join(result.pixel_review)}")


def _done(result: Result, started: float) -> Result:
    result.duration_ms = int((time.perf_counter() - started) * 1000)
    return result
