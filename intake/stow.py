"""DICOMweb STOW-RS (PS3.18 §10.5): a site's PACS or upload tool POSTs ``multipart/related;
type="application/dicom"`` to ``/dicomweb/studies`` (or ``/dicomweb/studies/{StudyInstanceUID}``).

The body is never held in memory: it is read from the request in chunks, each part is written to a
temporary file as it arrives and filed through ``instance_receive`` (matched by Patient ID and visit window,
like the gateway), and the temporary files are gone before the response leaves. The answer is the Store
Instances Response dataset in application/dicom+json; the UIDs in it come from each part's own header, since
the database keeps only keyed hashes of them.
"""

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from django.conf import settings
from django.http import HttpResponse
from django.utils.http import parse_header_parameters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from trials.models import Site
from trials.selectors import sites_coordinated_by

from . import services
from .dicomfile import UnreadableFile, inspect
from .models import Submission
from .services import REJECTED, instance_receive, submission_close, submission_open

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MAX_HEADER_BYTES = 16 * 1024  # one part's MIME headers; DICOM parts carry a line or two

# Failure Reason (0008,1197) values (PS3.18 §10.5.3, PS3.4 Annex B statuses)
PROCESSING_FAILURE = 0x0110  # refused by the trial's rules: wrong site, conflicting content, ...
OUT_OF_RESOURCES = 0xA700    # larger than the per-file limit
DATA_SET_MISMATCH = 0xA900   # not the study named in the request URL
CANNOT_UNDERSTAND = 0xC000   # not DICOM, truncated, not an application/dicom part


class MultipartError(ValueError):
    """The body is not a well-formed multipart message; the message says where it broke."""


@dataclass(frozen=True)
class Part:
    path: Path
    content_type: str
    size: int
    oversize: bool  # over the per-file limit: the file holds only its beginning and is not filed


def parts_from_stream(*, read: Callable[[int], bytes], boundary: str, folder: Path, max_bytes: int,
                      chunk_bytes: int = CHUNK_BYTES) -> Iterator[Part]:
    """Split a multipart body, read through ``read(n)``, into one file per part under ``folder``.

    A part is yielded once its closing delimiter has arrived; no more than one chunk and one part's headers
    are ever in memory. Raises MultipartError where the body stops making sense.
    """
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    keep = len(delimiter) - 1  # a delimiter may straddle two chunks
    buffer = bytearray(b"\r\n")  # the first delimiter may open the body without a CRLF before it
    ended = False

    def fill() -> bool:
        nonlocal ended
        chunk = b"" if ended else read(chunk_bytes)
        ended = not chunk
        buffer.extend(chunk)
        return bool(chunk)

    while (at := buffer.find(delimiter)) < 0:  # the preamble is ignored
        del buffer[:max(0, len(buffer) - keep)]
        if not fill():
            raise MultipartError("the body holds no part: its boundary never occurs")
    del buffer[:at + len(delimiter)]
    number = 0
    while True:
        while len(buffer) < 2 and fill():
            pass
        if buffer.startswith(b"--"):
            return  # close delimiter; the epilogue is ignored
        while (eol := buffer.find(b"\r\n")) < 0:
            if len(buffer) > MAX_HEADER_BYTES or not fill():
                raise MultipartError("a boundary line does not end")
        if buffer[:eol].strip(b" \t"):
            raise MultipartError("a boundary line carries more than the boundary")
        del buffer[:eol + 2]
        while True:
            if buffer.startswith(b"\r\n"):
                head, body_at = b"", 2
                break
            if (end := buffer.find(b"\r\n\r\n")) >= 0:
                head, body_at = bytes(buffer[:end]), end + 4
                break
            if len(buffer) > MAX_HEADER_BYTES:
                raise MultipartError("a part's headers are too long")
            if not fill():
                raise MultipartError("the body ended inside a part's headers")
        del buffer[:body_at]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        number += 1
        path = folder / f"part-{number:05d}.dcm"
        size, oversize = 0, False
        with path.open("wb") as out:
            while True:
                at = buffer.find(delimiter)
                data_end = at if at >= 0 else max(0, len(buffer) - keep)
                if data_end:
                    size += data_end
                    oversize = oversize or size > max_bytes
                    if not oversize:
                        out.write(buffer[:data_end])
                    del buffer[:data_end]
                if at >= 0:
                    break
                if not fill():
                    raise MultipartError(f"the body ended inside part {number}: its closing boundary is missing")
        del buffer[:len(delimiter)]
        yield Part(path=path, content_type=headers.get("content-type", "application/dicom"), size=size,
                   oversize=oversize)


def body_reader(request) -> Callable[[int], bytes] | None:
    """How to read the request body in chunks; None when the server cannot deliver it (chunked encoding
    without a server that de-chunks it)."""
    meta = request.META
    if meta.get("CONTENT_LENGTH"):
        return request.read  # Django's stream stops at Content-Length
    if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        # gunicorn de-chunks the body and ends the stream there; Django's own server does neither
        return meta["wsgi.input"].read if meta.get("wsgi.input_terminated") else None
    return lambda size: b""


# -- the response dataset -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartResult:
    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int | None = None  # None: stored (or already stored)
    comment: str = ""


def _uid(value: str) -> dict:
    return {"vr": "UI", "Value": [value]}


def _item(result: PartResult) -> dict:
    item = {}
    if result.sop_class_uid:
        item["00081150"] = _uid(result.sop_class_uid)
    if result.sop_instance_uid:
        item["00081155"] = _uid(result.sop_instance_uid)
    if result.failure_reason is not None:
        item["00081197"] = {"vr": "US", "Value": [result.failure_reason]}
        # Error Comment is LO (64 characters); the full reason stays on the submission's record
        comment = result.comment if len(result.comment) <= 64 else result.comment[:63] + "…"
        item["00000902"] = {"vr": "LO", "Value": [comment]}
    return item


def store_response(results: list[PartResult]) -> HttpResponse:
    """The Store Instances Response: 200 all stored, 202 some failed, 409 none stored.

    No Retrieve URL (0008,1190): Corelab offers no WADO-RS, and the raw files are PHI in quarantine.
    """
    stored = [_item(r) for r in results if r.failure_reason is None]
    failed = [_item(r) for r in results if r.failure_reason is not None]
    dataset = {}
    if failed:
        dataset["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        dataset["00081199"] = {"vr": "SQ", "Value": stored}
    code = status.HTTP_409_CONFLICT if not stored else status.HTTP_202_ACCEPTED if failed else status.HTTP_200_OK
    return HttpResponse(json.dumps(dataset, sort_keys=True), status=code, content_type="application/dicom+json")


# -- the view -----------------------------------------------------------------------------------------------

class DicomJsonRenderer(JSONRenderer):
    media_type = "application/dicom+json"


def _site_for(*, user, site_id: str | None) -> Site:
    """The coordinator's site: their only one, or the one named by ``?site=``; 404 for any other."""
    sites = list(sites_coordinated_by(user=user))
    if site_id is not None:
        site = next((s for s in sites if str(s.pk) == site_id), None)
        if site is None:
            raise exceptions.NotFound("No such site")
        return site
    if not sites:
        raise exceptions.PermissionDenied("only a site's coordinators can store instances for it")
    if len(sites) > 1:
        named = ", ".join(f"{s.pk} (site {s.number}, {s.trial.protocol_number})" for s in sites)
        raise exceptions.ValidationError({"site": [f"you coordinate several sites: add ?site=<id> to the URL, "
                                                   f"one of {named}"]})
    return sites[0]


def _identity(path: Path) -> tuple[str, str]:
    """SOP Class and Instance UID of a file ``inspect`` refused, as far as its header can still be read."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        meta = getattr(ds, "file_meta", None)
        return (str(ds.get("SOPClassUID") or getattr(meta, "MediaStorageSOPClassUID", "") or ""),
                str(ds.get("SOPInstanceUID") or getattr(meta, "MediaStorageSOPInstanceUID", "") or ""))
    except Exception:  # whatever cannot be read simply has no UIDs to report
        return "", ""


def _refuse(submission: Submission, result: PartResult, *, number: int) -> PartResult:
    """Count a part the door refuses before filing it, so the submission's record holds every part."""
    # instance_receive uses, so counts and results stay in one place
    services.file_refuse(submission=submission, name=f"part {number}", reason=result.comment)
    return result


def _file_part(*, submission: Submission, part: Part, number: int, study_uid: str | None) -> PartResult:
    """File one part through the common intake path and say how it went, in STOW-RS terms."""
    if part.oversize:
        return _refuse(submission, PartResult("", "", OUT_OF_RESOURCES, f"part {number} is larger than "
                                              f"{settings.INTAKE_MAX_FILE_BYTES} bytes"), number=number)
    media_type, _ = parse_header_parameters(part.content_type)
    if media_type.lower() != "application/dicom":
        return _refuse(submission, PartResult("", "", CANNOT_UNDERSTAND,
                                              f"part {number} is {media_type}, not application/dicom"), number=number)
    unreadable = False
    try:
        header = inspect(part.path)
        sop_class, sop_instance = header.sop_class_uid, header.sop_instance_uid
    except UnreadableFile:
        unreadable = True  # instance_receive refuses it too, and records why
        sop_class, sop_instance = _identity(part.path)
    if study_uid and not unreadable and header.study_uid != study_uid:
        return _refuse(submission, PartResult(sop_class, sop_instance, DATA_SET_MISMATCH,
                                              "its Study Instance UID is not the study in the request URL"),
                       number=number)
    outcome = instance_receive(submission=submission, path=part.path, name=f"part {number}")
    if outcome.outcome == REJECTED:
        return PartResult(sop_class, sop_instance, CANNOT_UNDERSTAND if unreadable else PROCESSING_FAILURE,
                          outcome.reason)
    return PartResult(sop_class, sop_instance)


class StowApi(APIView):
    """Store Instances: each part is one DICOM Part 10 file, filed for the coordinator's site."""

    # Token first, so an anonymous client is told to authenticate (401 with WWW-Authenticate: Token)
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    renderer_classes = [JSONRenderer, DicomJsonRenderer]

    @extend_schema(
        tags=["dicomweb"], operation_id="dicomweb_store_instances",
        request={"multipart/related": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("site", int, description="the site to store for, when you coordinate several")],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="all instances stored"),
                   202: OpenApiResponse(OpenApiTypes.OBJECT, description="some stored, some failed"),
                   409: OpenApiResponse(OpenApiTypes.OBJECT, description="none stored"),
                   415: OpenApiResponse(description='not multipart/related; type="application/dicom"')},
    )
    def post(self, request, study_uid: str | None = None):
        media_type, params = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
        if media_type.lower() != "multipart/related" or params.get("type", "").lower() != "application/dicom":
            return Response({"detail": 'send multipart/related; type="application/dicom"'},
                            status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)
        boundary = params.get("boundary", "")
        if not 0 < len(boundary) <= 70:
            return Response({"detail": "the Content-Type has no usable boundary"}, status=status.HTTP_400_BAD_REQUEST)
        site = _site_for(user=request.user, site_id=request.query_params.get("site"))
        read = body_reader(request)
        if read is None:
            return Response({"detail": "send the body with a Content-Length (chunked bodies need the production "
                                       "server)"}, status=status.HTTP_411_LENGTH_REQUIRED)
        results: list[PartResult] = []
        submission = None
        number = 0
        with tempfile.TemporaryDirectory(prefix="stow-", dir=settings.FILE_UPLOAD_TEMP_DIR) as folder:
            try:
                parts = parts_from_stream(read=read, boundary=boundary, folder=Path(folder),
                                          max_bytes=settings.INTAKE_MAX_FILE_BYTES)
                for number, part in enumerate(parts, start=1):
                    if submission is None:  # opened with the first part: an empty request leaves no batch
                        submission = submission_open(actor=request.user, site=site,
                                                     channel=Submission.Channel.STOWRS,
                                                     remote_address=request.META.get("REMOTE_ADDR"))
                    try:
                        results.append(_file_part(submission=submission, part=part, number=number,
                                                  study_uid=study_uid))
                    finally:
                        part.path.unlink(missing_ok=True)  # raw PHI: gone as soon as it is filed
            except MultipartError as exc:
                if not results:
                    return Response({"detail": f"malformed multipart body: {exc}"},
                                    status=status.HTTP_400_BAD_REQUEST)
                results.append(_refuse(submission, PartResult("", "", CANNOT_UNDERSTAND, str(exc)),
                                       number=number + 1))
            finally:
                if submission is not None:
                    submission_close(submission=submission)
        if not results:
            return Response({"detail": "the request holds no instance"}, status=status.HTTP_400_BAD_REQUEST)
        log.info("STOW-RS submission %s: %d parts, %d failed", submission.pk, number,
                 sum(r.failure_reason is not None for r in results))
        return store_response(results)


@extend_schema_view(post=extend_schema(operation_id="dicomweb_store_study_instances"))
class StowStudyApi(StowApi):
    """Store Instances of one study: parts of any other study fail with Failure Reason A900."""
