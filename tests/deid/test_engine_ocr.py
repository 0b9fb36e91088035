"""Burned-in text: routing to pixel review, and OCR (Debian tesseract-ocr) finding the boxes to blank or show.

Pure pydicom and Tesseract: no database. The image is synthetic: PHI drawn into a secondary capture.
"""

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from deid.engine import OcrError, Profile, deidentify, find_text, pixel_review_reasons

from .test_engine import KEYS, SUBJECT, _with_phi

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
WHERE = (40, 30)  # top-left of the drawn text


def _screenshot(text: str = "JANE DOE 19610704") -> pydicom.Dataset:
    """A 8-bit secondary capture with ``text`` burned in, white on a dark, noisy background."""
    image = Image.fromarray(np.random.default_rng(7).integers(0, 40, (160, 480), dtype=np.uint8), mode="L")
    ImageDraw.Draw(image).text(WHERE, text, fill=255, font=ImageFont.load_default(size=28))
    ds = _with_phi("CT_small.dcm")
    for keyword in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality, ds.ConversionType, ds.BurnedInAnnotation = "OT", "WSD", "YES"
    ds.Rows, ds.Columns = image.height, image.width
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.asarray(image).tobytes()
    return ds


def test_routing_reasons():
    assert pixel_review_reasons(pydicom.dcmread(get_testdata_file("CT_small.dcm"))) == []
    assert pixel_review_reasons(_screenshot()) == ["BurnedInAnnotation is YES", "secondary capture", "screen capture"]
    us = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"))
    assert "ultrasound" in pixel_review_reasons(us)


def test_find_text_boxes_burned_in_phi_and_cleaning_removes_it():
    ds = _screenshot()
    boxes = find_text(ds)
    words = " ".join(box.text for box in boxes).upper()
    assert "DOE" in words and "19610704" in words
    doe = next(box for box in boxes if "DOE" in box.text.upper())
    assert doe.frame == 0 and WHERE[0] <= doe.x < 300 and 20 <= doe.y <= 60 and doe.height <= 60
    deidentify(ds, profile=Profile(options=frozenset({"clean_pixel_data"})), keys=KEYS, subject_code=SUBJECT,
               pixel_boxes=[box.box for box in boxes])
    assert not [box for box in find_text(ds) if "DOE" in box.text.upper() or "1961" in box.text]


def test_find_text_on_an_image_without_text_finds_nothing():
    assert find_text(_screenshot(text="")) == []


def test_find_text_refuses_pixels_it_cannot_decode():
    ds = _with_phi("JPEG-LL.dcm")  # JPEG Lossless (process 14): the pinned dependencies carry no decoder for it
    with pytest.raises(OcrError, match="cannot decode"):
        find_text(ds)
