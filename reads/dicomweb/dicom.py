"""Pure pydicom work on one archived file: its header as DICOM JSON, where its pixel data sits, one frame's
bytes, a rendered frame. No ORM here; callers pass open binary streams.

A header is read up to the Pixel Data element (``stop_before_pixels``), which leaves the stream at that
element's tag; the element header is parsed by hand so frames can be read by seeking, never by loading the
whole pixel data.
"""

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pydicom
import pydicom.multival
from PIL import Image
from pydicom import encaps
from pydicom.pixels import apply_rescale, pixel_array
from pydicom.uid import UID

PIXEL_DATA_TAGS = {"7FE00010", "7FE00008", "7FE00009"}
UNDEFINED_LENGTH = 0xFFFFFFFF
CHUNK_BYTES = 1 << 20

# Site identity a reader must not receive (DESIGN.md: readers are blinded to site). The de-identification
# profile removes most of these already; a trial that retains device identity keeps the station and serial.
SITE_IDENTITY_TAGS = frozenset({
    "00080080",  # InstitutionName
    "00080081",  # InstitutionAddress
    "00080082",  # InstitutionCodeSequence
    "00080090",  # ReferringPhysicianName
    "00081010",  # StationName
    "00081040",  # InstitutionalDepartmentName
    "00081050",  # PerformingPhysicianName
    "00081070",  # OperatorsName
    "00181000",  # DeviceSerialNumber
    "00187004",  # DetectorID
    "00120030",  # ClinicalTrialSiteID
    "00120031",  # ClinicalTrialSiteName
    "00120021",  # ClinicalTrialProtocolName
    "00120060",  # ClinicalTrialCoordinatingCenterName
})


class NotDicom(ValueError):
    """The archived object cannot be read as DICOM (the message says why)."""


class NoSuchFrame(ValueError):
    """A frame number outside 1..NumberOfFrames, or an instance without pixel data."""


@dataclass(frozen=True)
class PixelLocation:
    offset: int          # where the Pixel Data value starts in the file
    length: int          # its length, UNDEFINED_LENGTH when encapsulated
    frames: int
    frame_bytes: int     # one native frame's size (0 when encapsulated)
    little_endian: bool


def read_header(stream) -> dict:
    """The cacheable summary of one file: {"json": DICOM JSON without pixel data, "ts": transfer syntax,
    "pixel": PixelLocation fields or None}."""
    try:
        ds = pydicom.dcmread(stream, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise NotDicom(f"not readable as DICOM: {exc}") from None
    ts = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1"))
    pixel = _pixel_location(stream, ds, UID(ts))
    data = ds.to_json_dict(bulk_data_threshold=1 << 30)  # nothing but pixel data is bulk in an image header
    data["00020010"] = {"vr": "UI", "Value": [ts]}
    return {"json": data, "ts": ts, "pixel": None if pixel is None else pixel.__dict__}


def _pixel_location(stream, ds, ts: UID) -> PixelLocation | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    little = ts.is_little_endian if ts.is_transfer_syntax else True
    endian = "<" if little else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    if (group, element) != (0x7FE0, 0x0010):
        return None  # float pixel data and friends are not served as frames
    if ts.is_implicit_VR:
        (length,) = struct.unpack(endian + "L", head[4:8])
    else:
        length = struct.unpack(endian + "L", stream.read(4))[0]  # OB/OW: 2 reserved bytes, then a 4-byte length
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    samples, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.get("BitsAllocated", 16))
    frame_bytes = 0 if length == UNDEFINED_LENGTH else rows * columns * samples * bits // 8
    return PixelLocation(offset=stream.tell(), length=length, frames=frames, frame_bytes=frame_bytes,
                         little_endian=little)


def without_site_identity(data: dict) -> dict:
    """A reader's copy of a DICOM JSON dataset: site-identifying attributes dropped."""
    return {tag: value for tag, value in data.items() if tag not in SITE_IDENTITY_TAGS}


def frame_bytes(stream, pixel: dict, number: int) -> bytes:
    """Frame ``number`` (1-based) as stored: native bytes, or the compressed bitstream of an encapsulated one."""
    where = PixelLocation(**pixel)
    if not 1 <= number <= where.frames:
        raise NoSuchFrame(f"frame {number} does not exist: the instance has {where.frames} frame(s)")
    if where.length != UNDEFINED_LENGTH:
        if where.frame_bytes == 0 or where.frame_bytes * where.frames > where.length:
            raise NoSuchFrame("the pixel data's length does not match its rows, columns and bits")
        stream.seek(where.offset + (number - 1) * where.frame_bytes)
        return stream.read(where.frame_bytes)
    stream.seek(where.offset)
    return encaps.get_frame(stream, number - 1, number_of_frames=where.frames,
                            endianness="<" if where.little_endian else ">")


def rendered(stream, header: dict, *, number: int, media_type: str, window: tuple[float, float] | None = None,
             quality: int = 90) -> bytes:
    """Frame ``number`` as 8-bit PNG or JPEG, windowed with ``window`` (centre, width) or the file's own
    window, else the frame's full range."""
    pixel = header["pixel"]
    if pixel is None:
        raise NoSuchFrame("the instance holds no pixel data")
    if not 1 <= number <= pixel["frames"]:
        raise NoSuchFrame(f"frame {number} does not exist: the instance has {pixel['frames']} frame(s)")
    stream.seek(0)
    ds = pydicom.dcmread(stream, stop_before_pixels=True)
    stream.seek(0)
    frame = pixel_array(stream, index=number - 1 if pixel["frames"] > 1 else None)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if frame.ndim == 2:
        values = apply_rescale(frame, ds).astype(np.float64)
        if window is not None:
            centre, width = window
            low, high = centre - width / 2, centre + width / 2
        elif _first(ds.get("WindowCenter")) is not None and _first(ds.get("WindowWidth")):
            centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
            low, high = centre - width / 2, centre + width / 2
        else:
            low, high = float(values.min()), float(values.max())
        scaled = np.clip((values - low) / max(high - low, 1e-6), 0, 1) * 255
        if photometric == "MONOCHROME1":
            scaled = 255 - scaled
        image_array, mode = scaled.astype(np.uint8), "L"
    else:
        image_array, mode = _to_8bit(frame), "RGB"
    image = Image.fromarray(image_array, mode=mode)
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _first(value) -> float | None:
    """The first of a possibly multi-valued window attribute."""
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if len(value) else None
    return None if value is None else float(value)


def _to_8bit(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    low, high = float(frame.min()), float(frame.max())
    return (np.clip((frame - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def chunks(stream) -> Iterator[bytes]:
    """An archived file in 1 MiB pieces."""
    while piece := stream.read(CHUNK_BYTES):
        yield piece
