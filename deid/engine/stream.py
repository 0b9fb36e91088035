"""deidentify_bytes(): a Part 10 file in, the de-identified and verified file out, parsing only what needs parsing.

The elements are located by their headers, and each takes the step its (tag, VR) compiles to under
the profile's option set (a plan built once per option set, as pairs turn up):

- *copy*: attributes the table keeps (not listed, or K), Pixel Data among them, go to the output
  byte for byte: no decoding, no re-encoding;
- *drop*, *write*, *map UIDs*, *subject code*: X, Z, D and U on plain values, written from encodings
  made once by pydicom (UIDs through ``map_uid``); private attributes under the Basic Profile dropped;
- *sequence*: a sequence whose items keep their structure (not listed, K or U) is rewritten item by
  item with the same steps;
- *parse*: everything else (cleaning under an option, D/Z/C on a sequence, safe private blocks,
  overlay and curve groups, ambiguous VRs) is parsed by pydicom and de-identified and checked by the
  Dataset code (``apply_table``, ``check``). The file meta is rewritten from its elements too, or
  through pydicom when it holds anything unusual.

The output is what ``dcmread`` + ``deidentify`` + ``save_as(enforce_file_format=True)`` write, values
and counts alike, with two differences: the preamble is 128 zero bytes (a preamble may hold anything,
a TIFF header or text), and values the table keeps are copied as the site encoded them (pydicom may
re-pad a value it decoded). Verification covers the whole output: the parsed part by verify()'s
checks, the rest by construction plus one search of every text value written for the original's
identifying strings.

Files this path does not cover take the whole-dataset path instead, with the same result: big
endian or deflated transfer syntaxes, character sets with code extensions, elements out of tag
order or sent as UN, Clean Pixel Data with boxes to blank, anything the header walk cannot follow.
"""

from __future__ import annotations

import functools
import io
import re
import struct
from dataclasses import dataclass

import pydicom
from pydicom import config
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID

from .apply import (
    _BINARY_VRS,
    _NUMBER_VRS,
    DUMMY,
    DUMMY_TEXT,
    MARK_TAGS,
    META_AE_TITLES,
    META_PRIVATE,
    PATIENT_ID,
    PATIENT_NAME,
    Keys,
    Profile,
    Report,
    _mark,
    apply_table,
    check_subject_code,
    deidentify,
    empty_value,
)
from .check import SEARCHED_VRS, check, verify
from .errors import DeidError
from .pixels import Box
from .pseudonyms import MIN_IDENTIFIER, ae_pseudonym, identifying_strings, identifying_tags, map_uid, matcher
from .table import compiled_action, row_action, rules

PIXEL_DATA = 0x7FE00010
SOP_CLASS, SOP_INSTANCE = 0x00080016, 0x00080018
CHARSET = 0x00080005
_PREAMBLE = b"\0" * 128
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_VRS = _LONG_VRS | {vr.encode() for vr in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO",
                                           "LT", "PN", "SH", "SL", "SS", "ST", "SV", "TM", "UI", "UL", "US", "UV")}
_HEAD = struct.Struct("<HHL")  # tag, then (implicit VR) the 32-bit length
_EXPLICIT = struct.Struct("<HH2sH")  # tag, VR, 16-bit length (or reserved bytes before a 32-bit one)
_VR_NAMES = {raw: raw.decode() for raw in _VRS}
_LONG_VR_NAMES = frozenset(raw.decode() for raw in _LONG_VRS)
_SHORT = struct.Struct("<H")
_LONG = struct.Struct("<L")
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_ITEM_HEAD = b"\xfe\xff\x00\xe0"
_ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\0\0\0\0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\0\0\0\0"
_GROUP_ELEMENT = struct.Struct("<HH")
# character sets without code extensions: a run of values decodes with one Python codec
_SIMPLE_CODECS = {"iso8859": "latin_1", "latin_1": "latin_1", "UTF8": "utf_8", "utf_8": "utf_8"}

# steps a top-level element takes: (kind, VR, arguments...)
COPY, DROP, PRIVATE, WRITE, UIDS, SUBJECT, SEQUENCE, PARSE = range(8)


class _Unsupported(Exception):
    """This file takes the whole-dataset path."""


class _Parse(Exception):
    """This sequence holds something only pydicom's path handles: parse the whole sequence."""


@dataclass
class Output:
    """What deidentify_bytes() made: the file, what was done, and what verification found."""

    data: bytes  # the de-identified Part 10 file; release it only when ``problems`` is empty
    report: Report
    problems: list[str]  # verification findings over the whole output (verify()'s checks)
    forbidden: frozenset[str]  # identifying_strings() of the original, searched for in the output
    pixel_data_copied: bool  # Pixel Data went to the output byte for byte (no decoding, no re-encoding)
    streamed: bool  # False when the whole-dataset path was taken


def deidentify_bytes(data: bytes, *, profile: Profile, keys: Keys, subject_code: str,
                     pixel_boxes: list[Box] | None = None) -> Output:
    """De-identify and verify one Part 10 file given as bytes; deterministic, like deidentify().

    Raises DeidError when ``data`` is not a DICOM file or cannot be de-identified as asked, and
    ValueError for bad arguments (see deidentify()). Verification problems do not raise: they are in
    the result, and the caller holds such a file back.
    """
    check_subject_code(subject_code)
    if ("clean_pixel_data" in profile.options) != (pixel_boxes is not None):
        raise ValueError("pixel_boxes go with the clean_pixel_data option, and only with it")
    if pixel_boxes:  # pixels to blank: the pixel data is decoded anyway
        return _whole(data, profile=profile, keys=keys, subject_code=subject_code, pixel_boxes=pixel_boxes)
    try:
        return _Stream(data, profile=profile, keys=keys, subject_code=subject_code).run()
    except (_Unsupported, struct.error):
        return _whole(data, profile=profile, keys=keys, subject_code=subject_code, pixel_boxes=pixel_boxes)


def _whole(data: bytes, *, profile: Profile, keys: Keys, subject_code: str, pixel_boxes) -> Output:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, struct.error) as exc:
        raise DeidError(f"not a readable DICOM file: {exc}") from exc
    forbidden = identifying_strings(ds)
    report = deidentify(ds, profile=profile, keys=keys, subject_code=subject_code, pixel_boxes=pixel_boxes)
    ds.preamble = None
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)  # before verify(): reading every value rewrites some VRs
    except (AttributeError, ValueError, struct.error) as exc:  # e.g. required file meta missing
        raise DeidError(f"cannot write the de-identified file: {exc}") from exc
    problems = verify(ds, profile=profile, subject_code=subject_code, forbidden=forbidden)
    return Output(data=out.getvalue(), report=report, problems=problems, forbidden=forbidden,
                  pixel_data_copied=False, streamed=False)


class _Stream:
    def __init__(self, data: bytes, *, profile: Profile, keys: Keys, subject_code: str):
        self.data, self.view = data, memoryview(data)
        self.profile, self.keys, self.subject_code = profile, keys, subject_code
        self.report = Report()
        self.out: dict[int, bytes | memoryview] = {}  # tag -> encoded element, in any order
        self.searched: list[tuple[str, int, bytes | memoryview | str]] = []  # (path, tag, text value) to search
        self.parsed: list[memoryview] = []
        self.identifying: list[tuple[str, bytes | memoryview]] = []  # (VR, value) of identifying attributes
        self.codec = "latin_1"
        self.context: list[memoryview] = []  # character set and VR context, parsed along with the rest
        self.last_uids = ""
        self.pixels_parsed = False
        self.sop: dict[int, str] = {}  # SOP Class / Instance UID as written, for the file meta

    def run(self) -> Output:
        data, view = self.data, self.view
        if len(data) < 144 or data[128:132] != b"DICM":
            raise _Unsupported
        meta_end, raw_meta = 132, {}
        while meta_end + 8 <= len(data) and data[meta_end:meta_end + 2] == b"\x02\x00":
            tag, start, stop, vr, undefined = _element(view, meta_end, implicit=False)
            raw_meta[tag] = (vr, undefined, view[meta_end:stop], bytes(view[start:stop]))
            meta_end = stop
        syntax = raw_meta.get(0x00020010)
        syntax = UID(syntax[3].decode("latin_1").rstrip("\0 ")) if syntax else None
        if syntax is None or not syntax.is_transfer_syntax or not syntax.is_little_endian or syntax.is_deflated:
            raise _Unsupported
        meta = raw_meta if _simple_meta(raw_meta) else None
        if meta is None:  # anything unusual in the file meta: read it as dcmread does
            meta_fp = io.BytesIO(data)
            meta_fp.seek(132)
            meta = _read_file_meta_info(meta_fp)
            if meta_fp.tell() != meta_end or meta.get("TransferSyntaxUID") != syntax:
                raise _Unsupported
        self.implicit = syntax.is_implicit_VR
        self.plan = _plan(self.profile.options, self.implicit)
        self._elements(view, meta_end, len(data), out=self.out, report=self.report, top=True)
        return self._finish(meta)

    def _elements(self, view: memoryview, position: int, end: int | None, *, out: dict, report: Report, top: bool,
                  path: str = "") -> int:
        """Take each element in [position, end) through its step, into ``out`` (tag -> encoded element).

        Without ``end``: up to the item delimiter. Returns where the elements (and the delimiter) end.
        """
        implicit, plan, previous = self.implicit, self.plan, -1
        while True:
            if end is None:
                if _GROUP_ELEMENT.unpack_from(view, position) == (0xFFFE, 0xE00D):
                    return position + 8
            elif position >= end:
                return position
            tag, start, stop, vr, undefined = _element(view, position, implicit=implicit, follow=False)
            if tag <= previous or tag >> 16 < 0x0008 or vr == "UN":
                raise _Unsupported  # out of order or repeated, meta or command group, or UN pydicom may retype
            previous = tag
            step = plan.get((tag, vr))
            if step is None:
                step = plan.setdefault((tag, vr), _step(tag, vr, options=self.profile.options, implicit=implicit))
            kind = step[0]
            if top and tag in _IDENTIFYING:
                self.identifying.append((step[1], view[start:stop]))
            if undefined and kind != SEQUENCE:
                stop = _skip_items(view, start, implicit=implicit or vr == "UN")
                if stop > len(view):
                    raise _Unsupported
                if tag != PIXEL_DATA:
                    kind = PARSE
            if kind == COPY:
                out[tag] = view[position:stop]
                if step[1] in SEARCHED_VRS:
                    self.searched.append((path, tag, view[start:stop]))
                if len(step) > 2:
                    report.actions[step[2]] += 1
                if tag == CHARSET or tag in _VR_CONTEXT:
                    if not top:
                        raise _Parse  # an item's own character set or VR context: pydicom's business
                    if tag == CHARSET:
                        self._charset(bytes(view[start:stop]))
                    self.context.append(view[position:stop])
                elif top and tag in (SOP_CLASS, SOP_INSTANCE):
                    self.sop[tag] = bytes(view[start:stop]).decode("latin_1").rstrip("\0 ")
            elif kind == WRITE:
                out[tag] = step[2]
                report.actions[step[3]] += 1
                if step[4]:
                    self.searched.append((path, tag, step[4]))
            elif kind == UIDS:
                out[tag] = self._uids(view[start:stop], step, report)
                if top and tag == SOP_INSTANCE:
                    self.sop[tag] = self.last_uids
            elif kind == SUBJECT:
                out[tag] = _subject(tag, step[1], self.subject_code, implicit=implicit)
                report.actions["D"] += 1
            elif kind == DROP:
                if step[2]:
                    report.actions[step[2]] += 1
            elif kind == PRIVATE:
                report.removed_private += step[2]
            elif kind == SEQUENCE and top:
                searched = len(self.searched)
                try:
                    inner = Report()
                    out[tag], stop = self._sequence(view, tag, start, None if undefined else stop, inner, path=path)
                except _Parse:
                    del self.searched[searched:]
                    if undefined:
                        stop = _skip_items(view, start, implicit=implicit)
                    self.parsed.append(view[position:stop])
                else:
                    _add(report, inner)
                    if step[2]:
                        report.actions[step[2]] += 1
            elif kind == SEQUENCE:
                out[tag], stop = self._sequence(view, tag, start, None if undefined else stop, report, path=path)
                if step[2]:
                    report.actions[step[2]] += 1
            elif top:
                self.parsed.append(view[position:stop])
            else:
                raise _Parse
            position = stop

    def _sequence(self, view: memoryview, tag: int, start: int, stop: int | None, report: Report, *,
                  path: str) -> tuple[bytes, int]:
        """A sequence whose items keep their structure, the table applied inside them, encoded as pydicom would.

        ``stop`` is None for an undefined-length sequence. Returns the encoded element and where it ended.
        """
        items, position = [], start
        while stop is None or position < stop:
            group, element, length = _HEAD.unpack_from(view, position)
            if stop is None and group << 16 | element == _SEQUENCE_END:
                position += 8
                break
            if group << 16 | element != _ITEM:
                raise _Unsupported
            inner: dict[int, bytes | memoryview] = {}
            where = f"{path}{keyword_for_tag(tag) or Tag(tag)}[{len(items)}] > "
            if length == 0xFFFFFFFF:
                position = self._elements(view, position + 8, None, out=inner, report=report, top=False, path=where)
            else:
                position = self._elements(view, position + 8, position + 8 + length, out=inner, report=report,
                                          top=False, path=where)
            body = b"".join(inner[t] for t in sorted(inner))
            if length == 0xFFFFFFFF:
                items.append(_ITEM_HEAD + b"\xff\xff\xff\xff" + body + _ITEM_DELIMITER)
            else:
                items.append(_ITEM_HEAD + _LONG.pack(len(body)) + body)
        if position > len(view) or (stop is not None and position != stop):
            raise _Unsupported
        value = b"".join(items)
        head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + (b"" if self.implicit else b"SQ\0\0")
        if stop is None:
            return head + b"\xff\xff\xff\xff" + value + _SEQUENCE_DELIMITER, position
        return head + _LONG.pack(len(value)) + value, position

    def _charset(self, value: bytes) -> None:
        names = [v.strip() for v in value.decode("latin_1").rstrip("\0 ").split("\\")]
        encodings = convert_encodings(names if any(names) else None)
        codec = _SIMPLE_CODECS.get(encodings[0]) if len(encodings) == 1 else None
        if codec is None:
            raise _Unsupported  # code extensions: pydicom decodes those
        self.codec = codec

    def _uids(self, value: memoryview, step, report: Report) -> bytes:
        text = bytes(value).decode("latin_1").rstrip("\0 ")
        uids = [map_uid(v, key=self.keys.uid_key) for v in text.split("\\")] if text else []
        report.uids_mapped += len(uids)
        report.actions[step[3]] += 1
        joined = self.last_uids = "\\".join(uids)
        encoded = joined.encode("ascii") + (b"\0" if len(joined) % 2 else b"")
        return step[2] + (_SHORT.pack(len(encoded)) if len(step[2]) == 6 else _LONG.pack(len(encoded))) + encoded

    def _finish(self, meta) -> Output:
        forbidden = self._identifying_strings()
        problems: list[str] = []
        if self.parsed or not isinstance(meta, dict):  # something for pydicom's path
            problems = self._parsed(meta, forbidden)
        self.out.update(_marks(self.profile.options, self.implicit)[0])
        self.searched.append(("", 0x00120063, _marks(self.profile.options, self.implicit)[1]))
        problems += _search(self.searched, matcher(forbidden), codec=self.codec)

        if isinstance(meta, dict):
            head = _PREAMBLE + b"DICM" + self._meta(meta)
        else:
            out = DicomBytesIO()
            out.write(_PREAMBLE + b"DICM")
            write_file_meta_info(out, self._synced(meta), enforce_standard=True)
            head = out.getvalue()
        out_tags = sorted(self.out)
        return Output(data=b"".join([head, *(self.out[t] for t in out_tags)]), report=self.report,
                      problems=problems, forbidden=forbidden,
                      pixel_data_copied=PIXEL_DATA in self.out and not self.pixels_parsed, streamed=True)

    def _parsed(self, meta, forbidden: frozenset[str]) -> list[str]:
        """The elements only pydicom's path handles (and an unusual file meta): de-identified, encoded, checked."""
        if self.parsed:
            parts = sorted(self.context + self.parsed, key=lambda part: _GROUP_ELEMENT.unpack_from(part))
            ds = read_dataset(DicomBytesIO(b"".join(parts)), self.implicit, True)
            ds.set_original_encoding(self.implicit, True, ds._character_set)
        else:
            ds = Dataset()
        if not isinstance(meta, dict):
            ds.file_meta = meta
        apply_table(ds, profile=self.profile, keys=self.keys, subject_code=self.subject_code,
                    identifying=forbidden, report=self.report, mark=False)
        for tag in MARK_TAGS:
            if tag in ds:
                del ds[tag]  # the marks are written in their place, whatever the original held
        body = DicomBytesIO()
        body.is_implicit_VR, body.is_little_endian = self.implicit, True
        write_dataset(body, ds)  # before check(): reading every value rewrites some VRs
        encoded = memoryview(body.getvalue())
        position = 0
        while position < len(encoded):
            tag, _, stop, _, _ = _element(encoded, position, implicit=self.implicit)
            self.out[tag] = encoded[position:stop]
            position = stop
        for tag in (SOP_CLASS, SOP_INSTANCE):
            if tag in ds:
                self.sop[tag] = str(ds[tag].value or "")
        self.pixels_parsed = PIXEL_DATA in ds
        return check(ds, profile=self.profile, subject_code=self.subject_code, forbidden=forbidden, marks=False)

    def _identifying_strings(self) -> frozenset[str]:
        """identifying_strings() of the original, from the encoded values."""
        found: set[str] = set()
        for vr, value in self.identifying:
            if vr == "SQ":
                continue
            text = bytes(value).decode(self.codec, "replace").rstrip("\0 ")
            for part in text.split("\\"):
                part = part.strip("\0 ").strip()
                found.add(part)
                if vr == "PN":
                    found.update(piece.strip() for piece in re.split(r"[\^=]", part))
        return frozenset(s for s in found if len(s) >= MIN_IDENTIFIER and any(c.isalnum() for c in s))

    def _meta(self, raw: dict) -> bytes:
        """The file meta as deidentify() and save_as(enforce_file_format=True) leave it, from its encoded elements."""
        out, report = {}, self.report
        for tag, (_, _, element, value) in raw.items():
            if tag == 0x00020000:
                continue  # the group length is counted anew
            if tag == _MEDIA_INSTANCE:
                action, _ = compiled_action(rules().lookup(tag), options=self.profile.options)
                if action == "K":
                    report.actions["K"] += 1
                    out[tag] = element
                else:
                    out[tag] = self._uids(value, (UIDS, "UI", _header(tag, "UI", implicit=False), action), report)
            elif tag in META_PRIVATE:
                report.removed_private += 1
            elif tag in META_AE_TITLES:
                if "retain_device_identity" in self.profile.options:
                    text = value.decode("latin_1").rstrip("\0 ")
                    titles = [ae_pseudonym(v, key=self.keys.uid_key) for v in text.split("\\")] if text else []
                    elem = DataElement(tag, "AE", titles if len(titles) > 1 else (titles or [""])[0],
                                       validation_mode=config.IGNORE)
                    out[tag] = _encode(elem, implicit=False)
                    report.actions["C"] += 1
                else:
                    report.actions["X"] += 1
            else:
                out[tag] = element
        for meta_tag, tag in ((_MEDIA_CLASS, SOP_CLASS), (_MEDIA_INSTANCE, SOP_INSTANCE)):
            value = self.sop.get(tag)
            current = bytes(out[meta_tag][8:]).decode("latin_1").rstrip("\0 ")
            if value and value != current:
                encoded = value.encode("latin_1") + (b"\0" if len(value) % 2 else b"")
                out[meta_tag] = _header(meta_tag, "UI", implicit=False) + _SHORT.pack(len(encoded)) + encoded
        body = b"".join(out[t] for t in sorted(out))
        return b"\x02\x00\x00\x00UL\x04\x00" + _LONG.pack(len(body)) + body

    def _synced(self, meta):
        """The file meta as save_as(enforce_file_format=True) writes it: SOP Class and Instance as the dataset's."""
        for meta_tag, tag in ((0x00020002, SOP_CLASS), (0x00020003, SOP_INSTANCE)):
            value = self.sop.get(tag)
            if meta_tag not in meta or (value and meta[meta_tag].value != value):
                meta.add_new(meta_tag, "UI", value)
        return meta


_MEDIA_CLASS, _MEDIA_INSTANCE = 0x00020002, 0x00020003
# file meta elements the byte path knows; anything else (or a required one missing) goes through pydicom
_META_KNOWN = frozenset({0x00020000, 0x00020001, _MEDIA_CLASS, _MEDIA_INSTANCE, 0x00020010, 0x00020012, 0x00020013,
                         *META_AE_TITLES, *META_PRIVATE})
_META_NONEMPTY = (0x00020001, _MEDIA_CLASS, _MEDIA_INSTANCE, 0x00020010, 0x00020012)


def _simple_meta(raw: dict) -> bool:
    """True when the file meta holds only what the byte path rewrites the way pydicom would."""
    if not raw.keys() <= _META_KNOWN or 0x00020013 not in raw:
        return False
    if any(tag not in raw or not raw[tag][3].strip(b"\0 ") for tag in _META_NONEMPTY):
        return False  # pydicom would add or refuse it: let it
    return all(not undefined and vr not in ("UN", None) for vr, undefined, _, _ in raw.values())


_IDENTIFYING = identifying_tags()
# what pydicom reads to resolve an ambiguous VR (US or SS, OB or OW) among the parsed elements
_VR_CONTEXT = frozenset({0x00280100, 0x00280101, 0x00280103, 0x54001004})
_PLANS: dict[tuple[frozenset[str], bool], dict] = {}


def _plan(options: frozenset[str], implicit: bool) -> dict:
    """The compiled steps for one option set and VR encoding, filled as (tag, VR) pairs turn up."""
    plan = _PLANS.get((options, implicit))
    if plan is None or len(plan) > 50_000:  # tags come from files: bound what odd files can add
        plan = _PLANS[(options, implicit)] = {}
    return plan


def _step(tag: int, vr: str | None, *, options: frozenset[str], implicit: bool) -> tuple:
    """What deidentify() does to a top-level element with this tag and VR, as a step."""
    group, element = tag >> 16, tag & 0xFFFF
    resolved = vr
    if vr is None:
        try:
            resolved = dictionary_VR(tag)
        except KeyError:
            resolved = "UN"
    if group & 1:
        private_action, _ = row_action(rules().private, options=options)
        if private_action == "C":
            return (PARSE, resolved)
        return (PRIVATE, resolved, 1 if element else 0)  # a group length is removed but not counted
    if element == 0:
        return (DROP, resolved, None)  # a group length: removed, no action counted
    if " or " in resolved or resolved == "UN" or 0x5000 <= group <= 0x60FF:
        return (PARSE, resolved)
    if tag in (PATIENT_NAME, PATIENT_ID):
        return (SUBJECT, resolved)
    row = rules().lookup(tag)
    if resolved == "SQ":
        if row is None:
            return (SEQUENCE, resolved, None)
        action, _ = compiled_action(row, options=options, sequence=True)
        if action == "X":
            return (DROP, resolved, "X")
        # K and U keep the items and apply the table inside; Z, D and C rewrite them: pydicom's path
        return (SEQUENCE, resolved, action) if action in ("K", "U") else (PARSE, resolved)
    if row is None:
        return (COPY, resolved)
    action, _ = compiled_action(row, options=options, sequence=False)
    if action == "K":
        return (COPY, resolved, "K")
    if action == "X":
        return (DROP, resolved, "X")
    if resolved == "UI" and action in ("U", "D"):
        return (UIDS, resolved, _header(tag, "UI", implicit=implicit), action)
    if action in ("Z", "U"):
        value = empty_value(resolved)
    elif action == "D":
        value = _dummy_value(resolved)
    else:
        return (PARSE, resolved)  # C: cleaning under an option
    encoded = _encode(DataElement(tag, resolved, value, validation_mode=config.IGNORE), implicit=implicit)
    searched = str(value) if resolved in SEARCHED_VRS and value not in (None, "") else None
    return (WRITE, resolved, encoded, action, searched)


def _add(report: Report, more: Report) -> None:
    report.actions.update(more.actions)
    report.removed_private += more.removed_private
    report.uids_mapped += more.uids_mapped
    report.dates_shifted += more.dates_shifted


def _dummy_value(vr: str):
    if vr in _BINARY_VRS:
        return b"\0" * 8
    if vr in _NUMBER_VRS:
        return 0.0 if vr in ("FL", "FD") else 0
    return DUMMY.get(vr, DUMMY_TEXT)


@functools.lru_cache(maxsize=256)
def _subject(tag: int, vr: str, subject_code: str, *, implicit: bool) -> bytes:
    return _encode(DataElement(tag, vr, subject_code, validation_mode=config.IGNORE), implicit=implicit)


def _header(tag: int, vr: str, *, implicit: bool) -> bytes:
    """Tag and (explicit) VR of an element whose length comes next."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    return head if implicit else head + vr.encode()


def _encode(elem: DataElement, *, implicit: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_data_element(fp, elem)
    return fp.getvalue()


@functools.lru_cache(maxsize=64)
def _marks(options: frozenset[str], implicit: bool) -> tuple[dict[int, bytes], str]:
    """The de-identification marks, encoded, and their text as verify() searches it."""
    ds = Dataset()
    _mark(ds, profile=Profile(options=options, safe_private=frozenset()))
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = implicit, True
    write_dataset(body, ds)
    encoded, position, marks = body.getvalue(), 0, {}
    while position < len(encoded):
        tag, _, stop, _, _ = _element(memoryview(encoded), position, implicit=implicit)
        marks[tag] = encoded[position:stop]
        position = stop
    text = [str(v) for v in ds[0x00120063].value]  # CS values are not searched, as in verify()
    for item in ds[0x00120064].value:
        text += [item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning]
    return marks, "\n".join(text)


def _element(buf: memoryview, position: int, *, implicit: bool, follow: bool = True
             ) -> tuple[int, int, int, str | None, bool]:
    """(tag, value start, element end, VR or None, undefined length?) of the element at ``position``.

    An undefined-length value is followed to its delimiter, unless not ``follow``: its end is then
    the value start, for the caller to find.
    """
    try:
        if implicit:
            group, element, length = _HEAD.unpack_from(buf, position)
            vr, start = None, position + 8
        else:
            group, element, raw, length = _EXPLICIT.unpack_from(buf, position)
            vr = _VR_NAMES.get(raw)
            if vr is None:
                raise _Unsupported
            if vr in _LONG_VR_NAMES:
                length, start = _LONG.unpack_from(buf, position + 8)[0], position + 12
            else:
                start = position + 8
        if length != 0xFFFFFFFF:
            stop = start + length
        elif follow:
            stop = _skip_items(buf, start, implicit=implicit or vr == "UN")
        else:
            stop = start
    except struct.error as exc:
        raise _Unsupported from exc
    if stop > len(buf):
        raise _Unsupported
    return group << 16 | element, start, stop, vr, length == 0xFFFFFFFF


def _skip_items(buf: memoryview, position: int, *, implicit: bool) -> int:
    """The end of an undefined-length value: items (each maybe undefined-length) up to the delimiter."""
    while True:
        group, element, length = _HEAD.unpack_from(buf, position)
        tag, position = group << 16 | element, position + 8
        if tag == _SEQUENCE_END:
            return position
        if tag != _ITEM:
            raise _Unsupported
        position = position + length if length != 0xFFFFFFFF else _skip_item(buf, position, implicit=implicit)


def _skip_item(buf: memoryview, position: int, *, implicit: bool) -> int:
    """The end of an undefined-length item (after its delimiter): its elements up to the item delimiter."""
    while True:
        group, element, _ = _HEAD.unpack_from(buf, position)
        if group << 16 | element == _ITEM_END:
            return position + 8
        position = _element(buf, position, implicit=implicit)[2]


def _search(searched: list[tuple[str, int, bytes | memoryview | str]], pattern, *, codec: str) -> list[str]:
    """verify()'s identifying-text check over the values written without pydicom, in one pass when clean."""
    if pattern is None or not searched:
        return []

    def text(value) -> str:
        return value if isinstance(value, str) else bytes(value).decode(codec, "replace")

    if not pattern.search("\n".join(text(value) for _, _, value in searched)):
        return []
    return [f"{path}{Tag(tag)} {keyword_for_tag(tag) or 'Unknown'}: holds identifying text"
            for path, tag, value in searched if pattern.search(text(value))]
