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


# -- the fast path: a walk over the header's bytes -------------------------------------------------------

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
FAST_READ_BYTES = 256 * 1024  # a header longer than this is read by pydicom
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
# the elements inspect reads: tag -> keyword
WANTED = {0x00080005: "SpecificCharacterSet", 0x00080016: "SOPClassUID", 0x00080018: "SOPInstanceUID",
          0x00080020: "StudyDate", 0x00080021: "SeriesDate", 0x00080022: "AcquisitionDate",
          0x00080060: "Modality", 0x00080070: "Manufacturer", 0x00081090: "ManufacturerModelName",
          0x00100020: "PatientID", 0x00180015: "BodyPartExamined", 0x00181000: "DeviceSerialNumber",
          0x00181020: "SoftwareVersions", 0x0020000D: "StudyInstanceUID", 0x0020000E: "SeriesInstanceUID",
          0x00200011: "SeriesNumber", 0x00280002: "SamplesPerPixel", 0x00280008: "NumberOfFrames",
          0x00280010: "Rows", 0x00280011: "Columns", 0x00280100: "BitsAllocated"}
BINARY = {"SamplesPerPixel", "Rows", "Columns", "BitsAllocated"}  # US


class _Fallback(Exception):
    """Something the byte walk does not handle: pydicom reads the file instead."""


@dataclass
class _View:
    """What inspect needs from a header, however it was read."""

    transfer_syntax: str
    values: dict  # keyword -> str (text) or int (US)
    pixel_tag: int | None
    pixel_length: int | None
    pixel_tell: int | None

    def text(self, keyword: str) -> str:
        return str(self.values.get(keyword, "") or "")

    def number(self, keyword: str, default: int) -> int:
        """An integer value, or ``default`` when absent or not a number (a malformed IS such as "1A")."""
        try:
            return int(str(self.values.get(keyword)).strip())
        except (TypeError, ValueError):
            return default


def _walk(path: Path) -> _View:
    """The header of an explicit VR little endian file (every compressed syntax too), from its bytes.

    Reads the top-level elements up to the pixel data, skipping values it does not need; raises
    _Fallback for anything it does not handle (another byte order, a sequence of undefined length, a
    character set other than ASCII, a header longer than FAST_READ_BYTES), so pydicom decides those.
    """
    with path.open("rb") as stream:
        data = stream.read(FAST_READ_BYTES)
    if data[128:132] != b"DICM":
        raise _Fallback
    position, meta = 132, {}
    while position + 8 <= len(data) and data[position:position + 2] == b"\x02\x00":
        tag = int.from_bytes(data[position:position + 2], "little") << 16 | int.from_bytes(
            data[position + 2:position + 4], "little")
        vr = data[position + 4:position + 6]
        if vr in LONG_VRS:
            length, position = int.from_bytes(data[position + 8:position + 12], "little"), position + 12
        else:
            length, position = int.from_bytes(data[position + 6:position + 8], "little"), position + 8
        meta[tag] = data[position:position + length]
        position += length
    syntax = meta.get(0x00020010, b"").decode("ascii", "replace").strip(" \x00")
    uid = UID(syntax) if syntax else None
    if uid is None or not uid.is_little_endian or not (syntax == EXPLICIT_VR_LITTLE_ENDIAN or uid.is_compressed) \
            or uid.is_deflated:
        raise _Fallback
    values: dict = {}
    while position + 8 <= len(data):
        tag = int.from_bytes(data[position:position + 2], "little") << 16 | int.from_bytes(
            data[position + 2:position + 4], "little")
        vr = data[position + 4:position + 6]
        if vr in LONG_VRS:
            if position + 12 > len(data):
                raise _Fallback
            length, position = int.from_bytes(data[position + 8:position + 12], "little"), position + 12
        elif vr.isalpha() and vr.isupper():
            length, position = int.from_bytes(data[position + 6:position + 8], "little"), position + 8
        else:
            raise _Fallback  # not explicit VR after all
        if tag in PIXEL_TAGS:
            return _View(syntax, values, tag, length, position)
        if length == UNDEFINED_LENGTH or position + length > len(data):
            raise _Fallback  # a nested sequence to walk item by item, or a header past what was read
        keyword = WANTED.get(tag)
        if keyword is not None:
            raw = data[position:position + length]
            if keyword in BINARY:
                values[keyword] = int.from_bytes(raw[:2], "little") if len(raw) >= 2 else None
            else:
                if not raw.isascii() or b"\\" in raw:
                    raise _Fallback  # another character set, or several values: pydicom knows how
                values[keyword] = raw.decode("ascii").strip(" \x00")
                if keyword == "SpecificCharacterSet" and "2022" in values[keyword]:
                    raise _Fallback  # code extensions: escape sequences switch sets inside ASCII-looking bytes
        position += length
    if position < len(data) or len(data) == FAST_READ_BYTES:
        raise _Fallback  # ended inside an element, or a header longer than what was read
    return _View(syntax, values, None, None, None)  # no pixel data at all


def _pydicom_view(path: Path) -> _View:
    try:
        # large values (pixel data) are not read: a multi-GB multi-frame file must not sit in memory
        ds = pydicom.dcmread(path, defer_size=DEFER_BYTES)
    except InvalidDicomError:
        raise UnreadableFile("not a DICOM file (no DICM preamble or File Meta Information)") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UnreadableFile(f"truncated or corrupt DICOM file ({type(exc).__name__})") from None
    meta = getattr(ds, "file_meta", None)
    values = {}
    for keyword in WANTED.values():
        if keyword in BINARY:
            values[keyword] = ds.get(keyword)
        elif keyword in ("PatientID", "Manufacturer", "ManufacturerModelName", "DeviceSerialNumber",
                         "SoftwareVersions"):
            values[keyword] = _text(ds, keyword)
        else:
            values[keyword] = _ascii(ds, keyword)
    pixel_tag = next((tag for tag in PIXEL_TAGS if tag in ds), None)
    length = tell = None
    if pixel_tag is not None:
        raw = ds.get_item(pixel_tag, keep_deferred=True)
        length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    return _View(str(getattr(meta, "TransferSyntaxUID", "") or ""), values, pixel_tag, length, tell)


def inspect(path: Path, *, fast: bool = True) -> Header:
    """Read the header of a DICOM Part 10 file and check its pixel data is present and complete.

    Most files (explicit VR little endian, every compressed syntax, ASCII text) are read by a walk over
    their header's bytes, several times cheaper than pydicom; anything else, and every file the walk
    finds odd, by pydicom. Both give the same Header (tested over pydicom's sample files).
    """
    size = path.stat().st_size
    view = None
    if fast:
        try:
            view = _walk(path)
        except (_Fallback, ValueError):
            view = None
    if view is None:
        view = _pydicom_view(path)
    transfer_syntax = view.transfer_syntax
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not view.text(keyword):
            raise UnreadableFile(f"incomplete DICOM header: {keyword} is missing (truncated file?)")
    if not transfer_syntax:
        raise UnreadableFile("the File Meta Information has no Transfer Syntax UID")
    sop_class = view.text("SOPClassUID")
    pixel_tag = view.pixel_tag
    if pixel_tag is None and _needs_pixels(sop_class):
        raise UnreadableFile(f"no pixel data, but {UID(sop_class).name} requires it")
    if pixel_tag is not None:
        length, tell = view.pixel_length, view.pixel_tell
        if length is not None and length != UNDEFINED_LENGTH:
            if tell is not None and tell + length > size:
                raise UnreadableFile(f"truncated: pixel data needs {length} bytes, the file ends "
                                     f"{tell + length - size} bytes short")
            if pixel_tag == 0x7FE00010 and not UID(transfer_syntax).is_compressed:
                expected = (view.number("Rows", 0) * view.number("Columns", 0) * view.number("SamplesPerPixel", 1)
                            * view.number("BitsAllocated", 16) // 8 * (view.number("NumberOfFrames", 1) or 1))
                if expected and length < expected:
                    raise UnreadableFile(f"truncated: pixel data holds {length} bytes, the image needs {expected}")
    series_number = view.text("SeriesNumber")
    try:
        series_number = int(series_number) if series_number not in (None, "") else None
    except (TypeError, ValueError):
        series_number = None
    return Header(
        sop_class_uid=sop_class,
        sop_instance_uid=view.text("SOPInstanceUID"),
        study_uid=view.text("StudyInstanceUID"),
        series_uid=view.text("SeriesInstanceUID"),
        transfer_syntax_uid=transfer_syntax,
        patient_id=view.text("PatientID"),
        modality=view.text("Modality").upper(),
        body_part=view.text("BodyPartExamined").upper(),
        series_number=series_number,
        acquisition_date=(_date(view.text("AcquisitionDate")) or _date(view.text("SeriesDate"))
                          or _date(view.text("StudyDate"))),
        manufacturer=view.text("Manufacturer"),
        model=view.text("ManufacturerModelName"),
        serial=view.text("DeviceSerialNumber"),
        software_version=view.text("SoftwareVersions"),
    )
