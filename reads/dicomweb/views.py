"""QIDO-RS and WADO-RS (PS3.18 §10.4, §10.6) over the archive, for the viewer and DICOMweb clients.

Session or token authentication (anonymous: 401); every lookup goes through ``selectors``, so an instance
out of the user's scope is 404 like a missing one. Retrieval streams: instances leave in 1 MiB pieces one
file after another, frames are read by seeking into the file, and no study is ever held in memory.
"""

import gzip
import hashlib
import io
import json
import re
import secrets
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase

import pydicom
from django.core.cache import cache
from django.core.files.storage import storages
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_header_parameters
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from pydicom.datadict import tag_for_keyword
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from ..blinding import reading_id_for_code
from . import dicom, selectors
from .selectors import InstanceRow

DICOM_JSON = "application/dicom+json"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
NATIVE_SYNTAXES = {"1.2.840.10008.1.2", EXPLICIT_LE}
MAX_LIMIT = 1000
# JSON answers this big or bigger leave gzip-compressed when the client accepts it: a 500-slice series'
# metadata is 2 MB of JSON and ~10 times less compressed. Frames are not compressed (16-bit noise gains little
# for the CPU it costs, and they stream).
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 5
_accepts_gzip = re.compile(r"\bgzip\b")
METADATA_CACHE_PREFIX = "dicomweb:metadata:v1:"
METADATA_CACHE_SECONDS = 7 * 24 * 3600
# stands for this server's /dicomweb root in cached metadata, which every request fills in with its own
BASE_PLACEHOLDER = "\u0000dicomweb-base\u0000"


class DicomJsonRenderer(JSONRenderer):
    media_type = DICOM_JSON


class AnyAccept(BaseContentNegotiation):
    """Views here negotiate DICOM media types themselves; DRF's own negotiation only picks the JSON renderer
    (for results and errors) and never refuses a request."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return None


class NotAcceptable(exceptions.NotAcceptable):
    """406 with what the server can send instead."""


class DicomWebSchema(AutoSchema):
    """One view class serves several levels (study, series, instance): name operations by their whole path."""

    def get_operation_id(self):
        path = self.path.removeprefix("/dicomweb/").replace("{", "").replace("}", "")
        return "dicomweb_" + "_".join(filter(None, path.split("/")))


class DicomWebApi(APIView):
    schema = DicomWebSchema()
    authentication_classes = [TokenAuthentication, SessionAuthentication]  # token first: anonymous gets 401
    renderer_classes = [DicomJsonRenderer]
    content_negotiation_class = AnyAccept

    def base_url(self) -> str:
        return self.request.build_absolute_uri("/dicomweb").rstrip("/")

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):
            response.render()  # DRF renders lazily; the body must exist to be compressed
        return _compressed(request, response)

    def rows(self, *, study: str, series: str | None = None, sop: str | None = None) -> list[InstanceRow]:
        rows = selectors.instance_rows_for_user(user=self.request.user, study_uid=study, series_uid=series,
                                                sop_uid=sop)
        if not rows:
            raise exceptions.NotFound("No such study, series or instance")
        return rows


def _compressed(request, response):
    """gzip a JSON answer for a client that accepts it (Content-Encoding, Vary: Accept-Encoding); anything
    else (multipart, images, streams, small bodies) leaves as it is."""
    patch_vary_headers(response, ("Accept-Encoding",))
    if (response.streaming or response.has_header("Content-Encoding")
            or "json" not in response.get("Content-Type", "")
            or not _accepts_gzip.search(request.headers.get("Accept-Encoding", ""))):
        return response
    if len(response.content) < GZIP_MIN_BYTES:
        return response
    response.content = gzip.compress(response.content, compresslevel=GZIP_LEVEL, mtime=0)
    response["Content-Length"] = str(len(response.content))
    response["Content-Encoding"] = "gzip"
    return response


# -- Accept headers ---------------------------------------------------------------------------------------

def _media_ranges(request) -> list[tuple[str, dict]]:
    accept = request.headers.get("Accept", "").strip()
    if not accept:
        return [("*/*", {})]
    ranges = []
    for item in accept.split(","):
        if item.strip():
            main, params = parse_header_parameters(item.strip())
            ranges.append((main.lower(), {k.lower(): v.strip('"') for k, v in params.items()}))
    return ranges


def _multipart_syntax(request, *, part_type: str, stored: set[str], native: bool = False) -> None:
    """Raise 406 unless the Accept header takes multipart/related parts of ``part_type`` in the stored
    transfer syntax(es). No transcoding: ask for transfer-syntax=* or the stored one."""
    wanted = []
    for main, params in _media_ranges(request):
        if main in ("*/*", "multipart/*"):
            return
        if main == "multipart/related" and params.get("type", part_type).lower() in (part_type, "*/*"):
            syntax = params.get("transfer-syntax", "*")
            if syntax == "*" or stored <= {syntax} or (native and syntax == EXPLICIT_LE and stored <= NATIVE_SYNTAXES):
                return
            wanted.append(syntax)
    if wanted:
        raise NotAcceptable(f"transfer syntax {', '.join(wanted)} not available: the archive holds "
                            f"{', '.join(sorted(stored))} and does not transcode; ask with transfer-syntax=*")
    raise NotAcceptable(f'ask for multipart/related; type="{part_type}" (optionally transfer-syntax=*)')


def _rendered_type(request) -> str:
    for main, _ in _media_ranges(request):
        if main in ("image/jpeg", "image/*", "*/*"):
            return "image/jpeg"
        if main == "image/png":
            return "image/png"
    raise NotAcceptable("rendered images are image/jpeg or image/png")


# -- multipart ---------------------------------------------------------------------------------------------

def _multipart(parts: Iterable[tuple[str, Iterator[bytes]]], boundary: str) -> Iterator[bytes]:
    for content_type, body in parts:
        yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1")
        yield from body
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")


def _multipart_response(parts, *, part_type: str, streaming: bool = True):
    boundary = secrets.token_hex(16)
    content_type = f'multipart/related; type="{part_type}"; boundary={boundary}'
    body = _multipart(parts, boundary)
    if streaming:
        return StreamingHttpResponse(body, content_type=content_type)
    return HttpResponse(b"".join(body), content_type=content_type)


# -- QIDO-RS ------------------------------------------------------------------------------------------------

STUDY_FIELDS = ["SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "PatientName", "PatientID",
                "PatientBirthDate", "PatientSex", "StudyID", "StudyInstanceUID", "StudyDescription"]
SERIES_FIELDS = ["SpecificCharacterSet", "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
                 "StudyInstanceUID", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"]
INSTANCE_FIELDS = ["SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
                   "BitsAllocated", "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID"]
MATCH_KEYS = {
    "study": {"StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyID",
              "ModalitiesInStudy", "StudyDescription"},
    "series": {"SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription"},
    "instance": {"SOPInstanceUID", "SOPClassUID", "InstanceNumber"},
}
CONTROL_KEYS = {"limit", "offset", "includefield", "fuzzymatching"}


# -- OpenAPI: what /api/schema/ says about these endpoints ---------------------------------------------------

def _qido_parameters(*levels: str) -> list[OpenApiParameter]:
    control = [
        OpenApiParameter("limit", int, description=f"at most this many results (default and maximum {MAX_LIMIT})"),
        OpenApiParameter("offset", int, description="skip this many results first"),
        OpenApiParameter("includefield", str, many=True, explode=True,
                         description="more attributes to return: keywords or 8-digit tags, comma-separated, or `all`"),
        OpenApiParameter("fuzzymatching", bool, description="accepted; matching is always exact or by wildcard"),
    ]
    keys = sorted(set().union(*(MATCH_KEYS[level] for level in levels)))
    return control + [OpenApiParameter(key, str, description="match: a value, `*`/`?` wildcards, a UID list, "
                                                              "or a date range `from-to`") for key in keys]


def _accept(description: str) -> OpenApiParameter:
    return OpenApiParameter("Accept", str, location=OpenApiParameter.HEADER, description=description)


DICOM_JSON_LIST = {"type": "array", "items": {"type": "object", "additionalProperties": True,
                                              "description": "one dataset in DICOM JSON (PS3.18 F.2)"}}
REFUSALS = {
    400: OpenApiResponse(description="a malformed request; `detail` says why"),
    401: OpenApiResponse(description="no credentials"),
    404: OpenApiResponse(description="no such study, series, instance or frame, or not yours to see"),
}
NOT_ACCEPTABLE = {406: OpenApiResponse(description="a media type or transfer syntax the resource cannot be "
                                                   "(the archive does not transcode: ask with transfer-syntax=*)")}
MULTIPART_ACCEPT = ('multipart/related; type="{type}" (optionally with transfer-syntax=* or the stored syntax), '
                    "or */*")


def _tag(key: str) -> str:
    """A query key (keyword or 8 hex digits) as a DICOM JSON tag; ValidationError for anything else."""
    if key == "ModalityInStudy":  # a common misspelling of ModalitiesInStudy
        key = "ModalitiesInStudy"
    if len(key) == 8 and all(c in "0123456789abcdefABCDEF" for c in key):
        return key.upper()
    tag = tag_for_keyword(key)
    if tag is None:
        raise exceptions.ValidationError({"detail": f"{key!r} is neither a DICOM keyword nor a tag"})
    return f"{tag:08X}"


def _first(data: dict, tag: str):
    value = data.get(tag, {}).get("Value") or [None]
    value = value[0]
    if isinstance(value, dict):  # person names
        return value.get("Alphabetic", "")
    return value


def _matches(value, wanted: str, tag: str) -> bool:
    if tag in ("0020000D", "0020000E", "00080018", "00080016"):  # UID lists
        return str(value) in {w.strip() for w in wanted.split(",")}
    if tag == "00080061":
        return bool(set(value or []) & {w.strip() for w in wanted.split(",")})
    text = "" if value is None else str(value)
    if tag in ("00080020",) and "-" in wanted:  # date range
        low, _, high = wanted.partition("-")
        return bool(text) and (not low or text >= low) and (not high or text <= high)
    if "*" in wanted or "?" in wanted:
        return fnmatchcase(text.upper(), wanted.upper())
    return text == wanted


class Query:
    """The query string of one QIDO request, checked: 400 with the reason for anything malformed."""

    def __init__(self, request, *, levels: tuple[str, ...]):
        self.filters: dict[str, str] = {}
        self.include: set[str] = set()
        self.include_all = False
        allowed = set().union(*(MATCH_KEYS[level] for level in levels))
        allowed_tags = {_tag(k): k for k in allowed}
        for key, values in request.query_params.lists():
            if key == "includefield":
                for value in values:
                    for field in filter(None, (v.strip() for v in value.split(","))):
                        if field == "all":
                            self.include_all = True
                        else:
                            self.include.add(_tag(field))
                continue
            if key in CONTROL_KEYS:
                continue
            tag = _tag(key)
            if tag not in allowed_tags:
                raise exceptions.ValidationError({"detail": f"cannot match on {key} here; "
                                                           f"matching keys: {', '.join(sorted(allowed))}"})
            self.filters[tag] = values[-1]
            self.include.add(tag)
        self.limit = self._number(request, "limit", default=MAX_LIMIT)
        self.offset = self._number(request, "offset", default=0)
        if self.limit > MAX_LIMIT:
            raise exceptions.ValidationError({"detail": f"limit is at most {MAX_LIMIT}"})
        fuzzy = request.query_params.get("fuzzymatching", "false").lower()
        if fuzzy not in ("true", "false"):
            raise exceptions.ValidationError({"detail": "fuzzymatching is true or false"})

    @staticmethod
    def _number(request, name: str, *, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isdigit():
            raise exceptions.ValidationError({"detail": f"{name} is a whole number of 0 or more, not {raw!r}"})
        return int(raw)

    def keep(self, data: dict) -> bool:
        return all(_matches(_first(data, tag) if tag != "00080061" else data.get(tag, {}).get("Value"), wanted, tag)
                   for tag, wanted in self.filters.items())

    def page(self, results: list[dict]) -> list[dict]:
        return results[self.offset:self.offset + self.limit]

    def fields(self, header: dict, defaults: list[str]) -> dict:
        tags = {_tag(k) for k in defaults} | self.include
        if self.include_all:
            return {tag: value for tag, value in header.items() if tag not in dicom.PIXEL_DATA_TAGS}
        return {tag: header[tag] for tag in tags if tag in header}


def _grouped(rows: list[InstanceRow]) -> "OrderedDict[str, OrderedDict[str, list[InstanceRow]]]":
    studies: OrderedDict = OrderedDict()
    for row in rows:
        studies.setdefault(row.study_uid, OrderedDict()).setdefault(row.series_uid, []).append(row)
    return studies


def _sorted_json(data: dict) -> dict:
    return dict(sorted(data.items()))


class QidoStudiesApi(DicomWebApi):
    """GET /dicomweb/studies: the studies the user may see, with the usual matching keys."""

    @extend_schema(parameters=_qido_parameters("study"),
                   responses={(200, DICOM_JSON): OpenApiResponse(DICOM_JSON_LIST, description="matching studies"),
                              **REFUSALS})
    def get(self, request):
        query = Query(request, levels=("study",))
        uids = [u.strip() for u in query.filters.get("0020000D", "").split(",") if u.strip()]
        rows = selectors.instance_rows_for_user(user=request.user, study_uids=uids)
        grouped = _grouped(rows)
        firsts = [series[0] for study in grouped.values() for series in study.values()]
        headers = selectors.headers_for(firsts)
        results = []
        for study_uid, series in grouped.items():
            first = next(iter(series.values()))[0]
            header = selectors.header_json(first, headers[first.sha256])
            modalities = sorted({_first(selectors.header_json(s[0], headers[s[0].sha256]), "00080060") or ""
                                 for s in series.values()} - {""})
            data = {**header, "00080061": {"vr": "CS", "Value": modalities},
                    "00201206": {"vr": "IS", "Value": [len(series)]},
                    "00201208": {"vr": "IS", "Value": [sum(len(s) for s in series.values())]}}
            if not query.keep(data):
                continue
            out = query.fields(data, STUDY_FIELDS + ["ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                                                     "NumberOfStudyRelatedInstances"])
            out["00081190"] = {"vr": "UR", "Value": [f"{self.base_url()}/studies/{study_uid}"]}
            results.append(_sorted_json(out))
        return Response(query.page(results))


class QidoSeriesApi(DicomWebApi):
    """GET /dicomweb/studies/{study}/series (and /dicomweb/series)."""

    @extend_schema(parameters=_qido_parameters("study", "series"),
                   responses={(200, DICOM_JSON): OpenApiResponse(DICOM_JSON_LIST, description="matching series"),
                              **REFUSALS})
    def get(self, request, study: str | None = None):
        query = Query(request, levels=("series",) if study else ("study", "series"))
        uids = [u.strip() for u in query.filters.get("0020000D", "").split(",") if u.strip()]
        rows = (self.rows(study=study) if study
                else selectors.instance_rows_for_user(user=request.user, study_uids=uids))
        grouped = _grouped(rows)
        firsts = [series[0] for s in grouped.values() for series in s.values()]
        headers = selectors.headers_for(firsts)
        results = []
        for study_uid, series in grouped.items():
            for series_uid, instances in series.items():
                header = selectors.header_json(instances[0], headers[instances[0].sha256])
                data = {**header, "00201209": {"vr": "IS", "Value": [len(instances)]}}
                if not query.keep(data):
                    continue
                out = query.fields(data, SERIES_FIELDS + ["NumberOfSeriesRelatedInstances"])
                out["00081190"] = {"vr": "UR",
                                   "Value": [f"{self.base_url()}/studies/{study_uid}/series/{series_uid}"]}
                results.append(_sorted_json(out))
        results.sort(key=lambda d: (_first(d, "0020000D") or "", _first(d, "00200011") or 0))
        return Response(query.page(results))


class QidoInstancesApi(DicomWebApi):
    """GET /dicomweb/studies/{study}/series/{series}/instances (and the study- and server-level forms)."""

    @extend_schema(parameters=_qido_parameters("study", "series", "instance"),
                   responses={(200, DICOM_JSON): OpenApiResponse(DICOM_JSON_LIST, description="matching instances"),
                              **REFUSALS})
    def get(self, request, study: str | None = None, series: str | None = None):
        levels = ("instance",) if series else ("series", "instance") if study else ("study", "series", "instance")
        query = Query(request, levels=levels)
        uids = [u.strip() for u in query.filters.get("0020000D", "").split(",") if u.strip()]
        rows = (self.rows(study=study, series=series) if study
                else selectors.instance_rows_for_user(user=request.user, study_uids=uids))
        headers = selectors.headers_for(rows)
        results = []
        for row in rows:
            data = selectors.header_json(row, headers[row.sha256])
            if not query.keep(data):
                continue
            out = query.fields(data, INSTANCE_FIELDS)
            out["00081190"] = {"vr": "UR", "Value": [self._instance_url(row)]}
            results.append(_sorted_json(out))
        results.sort(key=lambda d: (_first(d, "0020000E") or "", _first(d, "00200013") or 0))
        return Response(query.page(results))

    def _instance_url(self, row: InstanceRow) -> str:
        return f"{self.base_url()}/studies/{row.study_uid}/series/{row.series_uid}/instances/{row.sop_uid}"


# -- WADO-RS ------------------------------------------------------------------------------------------------

def _blinded_file(stream, row: InstanceRow) -> Iterator[bytes]:
    """A reader's copy of one archived file: the site-identifying attributes removed and the subject named by
    its reading ID (as ``selectors.header_json``), nothing else touched. One instance at a time is rewritten
    in memory; the rest of the response still streams."""
    ds = pydicom.dcmread(stream)
    for tag in dicom.SITE_IDENTITY_TAGS:
        ds.pop(int(tag, 16), None)
    alias = reading_id_for_code(trial_id=row.trial_id, code=str(ds.get("PatientID", "")))
    ds.PatientID, ds.PatientName = alias, alias
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    yield out.getvalue()


def _instance_parts(rows: list[InstanceRow]) -> Iterator[tuple[str, Iterator[bytes]]]:
    archive = storages["archive"]

    def body(row: InstanceRow) -> Iterator[bytes]:
        with archive.open(row.key, "rb") as stream:
            yield from (_blinded_file(stream, row) if row.blinded else dicom.chunks(stream))

    for row in rows:
        yield "application/dicom", body(row)


class WadoInstancesApi(DicomWebApi):
    """GET a study, a series or an instance as multipart/related; type="application/dicom", streamed."""

    @extend_schema(parameters=[_accept(MULTIPART_ACCEPT.format(type="application/dicom"))],
                   responses={(200, "multipart/related"): OpenApiResponse(
                       OpenApiTypes.BINARY, description='the instances as they are archived, one part each '
                                                        '(type="application/dicom"), streamed'),
                              **REFUSALS, **NOT_ACCEPTABLE})
    def get(self, request, study: str, series: str | None = None, sop: str | None = None):
        rows = self.rows(study=study, series=series, sop=sop)
        headers = selectors.headers_for(rows)
        _multipart_syntax(request, part_type="application/dicom", stored={h["ts"] for h in headers.values()})
        return _multipart_response(_instance_parts(rows), part_type="application/dicom")


def metadata_key(rows: list[InstanceRow]) -> str:
    """Cache key of the metadata of exactly these rows: an archived file never changes (sha256), and the
    rest of the answer is the UIDs and whether the asker is blinded, so equal keys mean equal answers."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.sha256}|{row.study_uid}|{row.series_uid}|{row.sop_uid}|{int(row.blinded)}\n".encode())
    return METADATA_CACHE_PREFIX + digest.hexdigest()


def metadata_body(rows: list[InstanceRow]) -> bytes:
    """The metadata of ``rows`` as DICOM JSON bytes (zlib-compressed), with BASE_PLACEHOLDER for the server's
    /dicomweb root: built once from the header cache and kept, because turning 500 cached headers into JSON
    is most of a second, while the cached answer is one Redis read."""
    key = metadata_key(rows)
    body = cache.get(key)
    if body is None:
        headers = selectors.headers_for(rows)
        results = []
        for row in rows:
            header = headers[row.sha256]
            data = selectors.header_json(row, header)
            if header["pixel"] is not None:
                frames = ",".join(str(n) for n in range(1, header["pixel"]["frames"] + 1))
                url = f"{BASE_PLACEHOLDER}/studies/{row.study_uid}/series/{row.series_uid}/instances/{row.sop_uid}"
                data["7FE00010"] = {"vr": "OB" if header["pixel"]["length"] == dicom.UNDEFINED_LENGTH else "OW",
                                    "BulkDataURI": f"{url}/frames/{frames}"}
            results.append(_sorted_json(data))
        body = zlib.compress(json.dumps(results, separators=(",", ":"), ensure_ascii=False).encode(), 6)
        cache.set(key, body, timeout=METADATA_CACHE_SECONDS)
    return body


class WadoMetadataApi(DicomWebApi):
    """GET .../metadata: the instances' headers as DICOM JSON; Pixel Data as a BulkDataURI to its frames."""

    @extend_schema(responses={(200, DICOM_JSON): OpenApiResponse(
        DICOM_JSON_LIST, description="the headers; Pixel Data as a BulkDataURI to the frames. gzip-compressed "
                                     "when the request accepts it"), **REFUSALS})
    def get(self, request, study: str, series: str | None = None, sop: str | None = None):
        rows = self.rows(study=study, series=series, sop=sop)
        placeholder = json.dumps(BASE_PLACEHOLDER)[1:-1].encode()
        body = zlib.decompress(metadata_body(rows)).replace(placeholder, self.base_url().encode())
        return HttpResponse(body, content_type=DICOM_JSON)


def _frame_numbers(frames: str) -> list[int]:
    try:
        numbers = [int(n) for n in frames.split(",")]
    except ValueError:
        raise exceptions.ValidationError({"detail": f"frames are numbers from 1, comma-separated, not {frames!r}"}
                                         ) from None
    if not numbers or min(numbers) < 1:
        raise exceptions.ValidationError({"detail": "frame numbers start at 1"})
    return numbers


class WadoFramesApi(DicomWebApi):
    """GET .../instances/{sop}/frames/{n[,m...]}: pixel data per frame in the stored transfer syntax
    (native frames as Explicit VR Little Endian), multipart/related; type="application/octet-stream"."""

    @extend_schema(parameters=[_accept(MULTIPART_ACCEPT.format(type="application/octet-stream"))],
                   responses={(200, "multipart/related"): OpenApiResponse(
                       OpenApiTypes.BINARY, description='one part per frame asked for (type="application/octet-stream";'
                                                        " native pixel data as Explicit VR Little Endian)"),
                              **REFUSALS, **NOT_ACCEPTABLE})
    def get(self, request, study: str, series: str, sop: str, frames: str):
        numbers = _frame_numbers(frames)
        [row] = self.rows(study=study, series=series, sop=sop)[:1]
        header = selectors.headers_for([row])[row.sha256]
        if header["pixel"] is None:
            raise exceptions.NotFound("the instance holds no pixel data")
        stored = header["ts"]
        native = stored in NATIVE_SYNTAXES
        _multipart_syntax(request, part_type="application/octet-stream", stored={stored}, native=native)
        syntax = EXPLICIT_LE if native else stored
        missing = [n for n in numbers if n > header["pixel"]["frames"]]
        if missing:
            raise exceptions.NotFound(f"frame {missing[0]} does not exist: the instance has "
                                      f"{header['pixel']['frames']} frame(s)")

        def parts():
            with storages["archive"].open(row.key, "rb") as stream:
                for number in numbers:
                    yield (f"application/octet-stream; transfer-syntax={syntax}",
                           iter([dicom.frame_bytes(stream, header["pixel"], number)]))

        return _multipart_response(parts(), part_type="application/octet-stream")


def _window(request) -> tuple[float, float] | None:
    raw = request.query_params.get("window")
    if raw is None:
        return None
    parts = raw.split(",")
    try:
        centre, width = float(parts[0]), float(parts[1])
    except (ValueError, IndexError):
        raise exceptions.ValidationError({"detail": "window is centre,width[,function], e.g. 40,400,linear"}
                                         ) from None
    if width <= 0:
        raise exceptions.ValidationError({"detail": "the window width is more than 0"})
    return centre, width


class WadoRenderedApi(DicomWebApi):
    """GET .../instances/{sop}/rendered or .../frames/{n}/rendered: one frame as JPEG (default) or PNG,
    windowed from ?window=centre,width or the file's own window."""

    @extend_schema(parameters=[
        _accept("image/jpeg (the default) or image/png"),
        OpenApiParameter("window", str, description="centre,width[,function] in stored units after rescale, "
                                                    "e.g. 40,400 (default: the file's own window)"),
        OpenApiParameter("quality", int, description="JPEG quality from 1 to 100 (default 90)"),
    ], responses={(200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="one frame as JPEG"),
                  (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="one frame as PNG"),
                  **REFUSALS, **NOT_ACCEPTABLE})
    def get(self, request, study: str, series: str, sop: str, frames: str = "1"):
        numbers = _frame_numbers(frames)
        if len(numbers) != 1:
            raise exceptions.ValidationError({"detail": "a rendered request names one frame"})
        media_type = _rendered_type(request)
        window = _window(request)
        quality = Query._number(request, "quality", default=90)
        if not 1 <= quality <= 100:
            raise exceptions.ValidationError({"detail": "quality is from 1 to 100"})
        [row] = self.rows(study=study, series=series, sop=sop)[:1]
        header = selectors.headers_for([row])[row.sha256]
        with storages["archive"].open(row.key, "rb") as stream:
            try:
                image = dicom.rendered(stream, header, number=numbers[0], media_type=media_type, window=window,
                                       quality=quality)
            except dicom.NoSuchFrame as exc:
                raise exceptions.NotFound(str(exc)) from None
        return HttpResponse(image, content_type=media_type)


class ViewerStudyApi(DicomWebApi):
    """GET /dicomweb/corelab/studies/{id}: the de-identified Study Instance UID(s) of one ImagingStudy, for the
    viewer embedded in Corelab's pages (which know studies by their database id)."""

    renderer_classes = [JSONRenderer]

    @extend_schema(responses={(200, "application/json"): OpenApiResponse(
        {"type": "object", "properties": {"study_uids": {"type": "array", "items": {"type": "string"}},
                                          "dicomweb": {"type": "string", "format": "uri"}}},
        description="the study's de-identified Study Instance UIDs and the DICOMweb root"),
        401: REFUSALS[401], 404: REFUSALS[404]})
    def get(self, request, study_id: int):
        uids = selectors.study_uids_for_study(user=request.user, study_id=study_id)
        if not uids:
            raise exceptions.NotFound("No such study, or nothing of it archived yet")
        return Response({"study_uids": uids, "dicomweb": self.base_url()})
