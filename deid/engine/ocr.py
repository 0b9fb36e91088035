"""Burned-in text: which instances go to pixel review, and where OCR finds text in their pixels.

``pixel_review_reasons`` says why an instance is routed to pixel cleaning (burned-in annotation
declared, secondary capture, ultrasound, a screen capture). ``find_text`` runs Tesseract (Debian's
``tesseract-ocr`` through pytesseract) over its frames and returns the text boxes it reads, so the
caller can hold the instance for QC review with the boxes highlighted, or blank them as pixel boxes
(``TextBox.box`` is a deidentify() pixel box). Pure: reads the dataset, writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from .errors import DeidError
from .pixels import Box

SECONDARY_CAPTURE_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1", "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame SC: single bit, byte
    "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame SC: word, true color
})
ULTRASOUND_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1",  # US Image, US Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.6.2", "1.2.840.10008.5.1.4.1.1.6.3",  # Enhanced US Volume, Photoacoustic
})
# Conversion Type (0008,0064) of captures taken from a screen or a document rather than a modality
SCREEN_CONVERSIONS = frozenset({"WSD", "SD", "SI", "DRW"})


class OcrError(DeidError):
    """OCR could not run (no Tesseract, undecodable pixels): the instance cannot be cleared of burned-in text."""


@dataclass(frozen=True)
class TextBox:
    """Text Tesseract read in one frame, with its bounding box in pixels from the top-left."""

    frame: int
    x: int
    y: int
    width: int
    height: int
    text: str
    confidence: float  # 0-100, Tesseract's

    @property
    def box(self) -> Box:
        """The (x, y, width, height) pixel box deidentify() blanks."""
        return (self.x, self.y, self.width, self.height)


def pixel_review_reasons(ds: Dataset) -> list[str]:
    """Why ``ds`` goes to pixel cleaning and review; an empty list when nothing routes it there."""
    reasons = []
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        reasons.append("BurnedInAnnotation is YES")
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in SECONDARY_CAPTURE_CLASSES:
        reasons.append("secondary capture")
    if sop_class in ULTRASOUND_CLASSES or str(ds.get("Modality", "")).upper() == "US":
        reasons.append("ultrasound")
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])] if "ImageType" in ds else []
    if str(ds.get("ConversionType", "")).upper() in SCREEN_CONVERSIONS or "SCREEN SHOT" in image_type:
        reasons.append("screen capture")
    return reasons


def find_text(ds: Dataset, *, min_confidence: float = 60.0, max_frames: int = 16, language: str = "eng",
              timeout: float = 60.0) -> list[TextBox]:
    """Text boxes Tesseract reads in the pixel data of ``ds`` (at most ``max_frames`` frames, evenly spread).

    Words below ``min_confidence`` or without a letter or digit are left out. Raises OcrError when
    Tesseract is missing or the pixel data cannot be decoded: the caller must then hold the instance.
    """
    try:
        import pytesseract
    except ImportError as exc:  # a pinned dependency: missing means a broken install
        raise OcrError("pytesseract is not installed") from exc
    if "PixelData" not in ds:
        return []
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # no decoder, a corrupt stream: nothing was read
        raise OcrError(f"cannot decode pixel data for OCR: {exc}") from exc
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    if frames == 1:
        pixels = pixels[np.newaxis]
    chosen = sorted({round(i * (frames - 1) / max(max_frames - 1, 1)) for i in range(min(frames, max_frames))})
    inverted = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    boxes = []
    for number in chosen:
        image, scale = _grey(pixels[number], samples=samples, inverted=inverted)
        try:
            words = pytesseract.image_to_data(image, lang=language, config="--psm 11",
                                              output_type=pytesseract.Output.DICT, timeout=timeout)
        except (pytesseract.TesseractNotFoundError, pytesseract.TesseractError, RuntimeError) as exc:
            raise OcrError(f"Tesseract failed: {exc}") from exc
        for i, text in enumerate(words["text"]):
            confidence = float(words["conf"][i])
            text = text.strip()
            if confidence < min_confidence or not any(c.isalnum() for c in text):
                continue
            x, y = int(words["left"][i] / scale), int(words["top"][i] / scale)
            width = max(1, -(-int(words["width"][i]) // scale))
            height = max(1, -(-int(words["height"][i]) // scale))
            boxes.append(TextBox(frame=number, x=x, y=y, width=width, height=height, text=text,
                                 confidence=confidence))
    return boxes


def _grey(frame: np.ndarray, *, samples: int, inverted: bool):
    """An 8-bit greyscale PIL image of one frame, scaled up when small (Tesseract reads ~20 px+ text best)."""
    from PIL import Image

    values = frame.astype(np.float64)
    if samples > 1:
        values = values[..., :3] @ np.array([0.299, 0.587, 0.114])
    low, high = float(values.min()), float(values.max())
    grey = np.zeros(values.shape, np.uint8) if high <= low else ((values - low) * (255.0 / (high - low))).astype(np.uint8)
    if inverted:
        grey = 255 - grey
    image = Image.fromarray(grey, mode="L")
    scale = 2 if max(image.size) < 1024 else 1
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)
    return image, scale
