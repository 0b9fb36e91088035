"""Reading just enough of an incoming file to file it: pure pydicom, no ORM.

Pixel data is never read here, let alone decoded (workers do that): its
declared length is checked against the file's size and the image geometry, so
truncated files are refused at the door without loading them.
"""

import datetime
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

DEFER_BYTES = 64 * 1024
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float Pixel Data, Double Float Pixel Data


class UnreadableFile(ValueError):
    """The file cannot be accepted as DICOM; the message says why, in words a site can act on."""


@dataclass(frozen=True)
class Header:
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    patient_id: str
    modality: str
    body_part: str
    series_number: int | None
    acquisition_date: datetime.date | None
    manufacturer: str
    model: str
    serial: str
    software_version: str

    def scanner_identity(self) -> dict[str, str]:
        return {"manufacturer": self.manufacturer, "model": self.model, "serial": self.serial,
                "software_version": self.software_version}


def _needs_pixels(sop_class_uid: str) -> bool:
    name = UID(sop_class_uid).name
    return "Image Storage" in name and "Presentation State" not in name


def _date(value) -> datetime.date | None:
    text = str(value or "").strip()
    if len(text) >= 8 and text[:8].isdigit():
        try:
            return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None
    return None


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "")
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value or "").strip()


def _ascii(ds, keyword: str) -> str:
    """A value whose VR allows only ASCII (UI, CS, DA, IS), from its raw bytes: no conversion, no validation.

    Reading these through pydicom's converters was half of what filing a file cost. Text that may use
    the file's character set (Patient ID, manufacturer, ...) still goes through ``_text``.
    """
    element = ds.get_item(keyword)
    if element is None:
        return ""
    value = element.value
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \x00")
    return _text(ds, keyword)  # already converted (a data set built in memory)


def inspect(path: Path) -> Header:
    """Read the header of a DICOM Part 10 file and check its pixel data is present and complete."""
    size = path.stat().st_size
    try:
        # large values (pixel data) are not read: a multi-GB multi-frame file must not sit in memory
        ds = pydicom.dcmread(path, defer_size=DEFER_BYTES)
    except InvalidDicomError:
        raise UnreadableFile("not a DICOM file (no DICM preamble or File Meta Information)") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UnreadableFile(f"truncated or corrupt DICOM file ({type(exc).__name__})") from None
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not _ascii(ds, keyword):
            raise UnreadableFile(f"incomplete DICOM header: {keyword} is missing (truncated file?)")
    if not transfer_syntax:
        raise UnreadableFile("the File Meta Information has no Transfer Syntax UID")
    sop_class = _ascii(ds, "SOPClassUID")
    pixel_tag = next((tag for tag in PIXEL_TAGS if tag in ds), None)
    if pixel_tag is None and _needs_pixels(sop_class):
        raise UnreadableFile(f"no pixel data, but {UID(sop_class).name} requires it")
    if pixel_tag is not None:
        raw = ds.get_item(pixel_tag, keep_deferred=True)
        length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
        if length is not None and length != UNDEFINED_LENGTH:
            if tell is not None and tell + length > size:
                raise UnreadableFile(f"truncated: pixel data needs {length} bytes, the file ends "
                                     f"{tell + length - size} bytes short")
            if pixel_tag == 0x7FE00010 and not UID(transfer_syntax).is_compressed:
                expected = (int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * int(ds.get("SamplesPerPixel", 1))
                            * int(ds.get("BitsAllocated", 16)) // 8 * int(ds.get("NumberOfFrames", 1) or 1))
                if expected and length < expected:
                    raise UnreadableFile(f"truncated: pixel data holds {length} bytes, the image needs {expected}")
    series_number = _ascii(ds, "SeriesNumber")
    try:
        series_number = int(series_number) if series_number not in (None, "") else None
    except (TypeError, ValueError):
        series_number = None
    return Header(
        sop_class_uid=sop_class,
        sop_instance_uid=_ascii(ds, "SOPInstanceUID"),
        study_uid=_ascii(ds, "StudyInstanceUID"),
        series_uid=_ascii(ds, "SeriesInstanceUID"),
        transfer_syntax_uid=transfer_syntax,
        patient_id=_text(ds, "PatientID"),
        modality=_ascii(ds, "Modality").upper(),
        body_part=_ascii(ds, "BodyPartExamined").upper(),
        series_number=series_number,
        acquisition_date=(_date(_ascii(ds, "AcquisitionDate")) or _date(_ascii(ds, "SeriesDate"))
                          or _date(_ascii(ds, "StudyDate"))),
        manufacturer=_text(ds, "Manufacturer"),
        model=_text(ds, "ManufacturerModelName"),
        serial=_text(ds, "DeviceSerialNumber"),
        software_version=_text(ds, "SoftwareVersions"),
    )
