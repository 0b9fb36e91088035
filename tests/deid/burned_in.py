"""Files with text burned into their pixels: phi_study's CT headers on a synthetic secondary capture.

The text is drawn with a real font (PIL's scalable default) big enough for Tesseract, white on a dark,
noisy background; the headers keep the qualified scanner's identity so intake files them normally.
"""

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.uid import ExplicitVRLittleEndian

from .conftest import phi_study

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ROWS, COLUMNS = 160, 480
TEXT_AT = (40, 30)  # top-left of the drawn text, in pixels
TEXT = "JANE DOE 19610704"
# a pixel-clean region over the text band (the scanner is SIEMENS SOMATOM Force)
TEXT_REGION = {"manufacturer": "SIEMENS", "model": "SOMATOM Force", "rows": ROWS, "columns": COLUMNS,
               "boxes": [[0, 0, COLUMNS, 80]]}


def pixels(text: str = TEXT) -> np.ndarray:
    image = Image.fromarray(np.random.default_rng(7).integers(0, 40, (ROWS, COLUMNS), dtype=np.uint8), mode="L")
    if text:
        ImageDraw.Draw(image).text(TEXT_AT, text, fill=255, font=ImageFont.load_default(size=28))
    return np.asarray(image)


def burned_in_study(folder: Path, *, count: int = 1, text: str = TEXT, **seed) -> list[Path]:
    """``count`` secondary captures of one series with ``text`` in their pixels (BurnedInAnnotation unset)."""
    paths = phi_study(folder, count=count, seed=seed or None)
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth", "BurnedInAnnotation"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = pixels(text).tobytes()
        ds.save_as(path, enforce_file_format=True)
    return paths
