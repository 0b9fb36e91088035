"""The web door of intake: a coordinator declares what they send, drops files, folders and .zip archives, and
gets a per-file result list.

Flow: ``/upload/`` opens a submission (``submission_open``: site scope and upload gate); the browser then
sends every file as its own raw-body request to ``/upload/<id>/files/`` (static/js/upload.js), which streams
it to a temp file, unpacks a .zip member by member (intake.uploads) and files each through
``instance_receive``, answering one JSON line per file; ``/upload/<id>/finish/`` closes the submission and
shows the results, which ``/upload/<id>/`` shows again later.
"""

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from config.errors import DomainError
from trials.permissions import Perm, has_perm
from trials.selectors import sites_coordinated_by

from ..forms import UploadStartForm
from ..models import ImagingStudy, Submission
from ..services import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    FileOutcome,
    file_refuse,
    instance_receive,
    submission_close,
    submission_open,
)
from ..uploads import (
    ArchiveLimits,
    ArchiveRefused,
    TooLarge,
    archive_format,
    clean_label,
    human_size,
    not_an_image,
    read_head,
    stream_to_file,
    zip_members,
)

log = logging.getLogger(__name__)
TEMPLATE = "intake/upload.html"
RECENT = 10


def _limits() -> dict[str, int]:
    # read per request: settings may be overridden (tests) and a deployment sets them by environment
    return {
        "file": getattr(settings, "INTAKE_MAX_FILE_BYTES", 2 * 1024**3),
        "archive": getattr(settings, "INTAKE_MAX_ARCHIVE_BYTES", 8 * 1024**3),
        "ratio": getattr(settings, "INTAKE_MAX_ZIP_RATIO", 100),
        "members": getattr(settings, "INTAKE_MAX_ARCHIVE_MEMBERS", 20000),
    }


# -- who may see and send what (trivial selectors, kept beside their only user) -----------------------------

def submission_get_for_user(*, user, submission_id: int, to_send: bool = False) -> Submission:
    """A web submission the user may see (its site's coordinators, the trial's managers); 404 otherwise.

    ``to_send``: only the coordinator who opened it may add files or finish it, because every file it files
    is audited in their name.
    """
    submission = get_object_or_404(Submission.objects.select_related(
        "site", "trial", "subject", "visit", "qualification", "submitted_by"),
        pk=submission_id, channel=Submission.Channel.WEB)
    may_send = submission.submitted_by_id == user.pk and has_perm(
        user=user, perm=Perm.SUBMIT_IMAGES, trial_id=submission.trial_id, site_id=submission.site_id)
    may_see = may_send or has_perm(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=submission.trial_id,
                                   site_id=submission.site_id) or has_perm(
        user=user, perm=Perm.MANAGE_TRIAL, trial_id=submission.trial_id)
    if not (may_send if to_send else may_see):
        raise Http404("No such upload")
    return submission


def submission_list_for_user(*, user, limit: int = RECENT) -> list[Submission]:
    """The latest web submissions at the sites the user coordinates."""
    return list(Submission.objects.filter(channel=Submission.Channel.WEB, site__in=sites_coordinated_by(user=user))
                .select_related("site", "subject", "visit", "qualification", "submitted_by")[:limit])


# -- pages --------------------------------------------------------------------------------------------------

def _context(request, *, submission: Submission | None = None, form: UploadStartForm | None = None,
             error: str = "") -> dict:
    limits = _limits()
    context = {"form": form, "submission": submission, "error": error, "max_file_bytes": limits["file"],
               "max_archive_bytes": limits["archive"], "max_file": human_size(limits["file"]),
               "max_archive": human_size(limits["archive"])}
    if submission is not None:
        context.update(_results(submission))
        context["may_send"] = submission.finished_at is None and submission.submitted_by_id == request.user.pk
    else:
        context["recent"] = submission_list_for_user(user=request.user)
    return context


def _results(submission: Submission) -> dict:
    order = {REJECTED: 0, DUPLICATE: 1, ACCEPTED: 2}
    rows = sorted(submission.results, key=lambda row: order.get(row.get("outcome"), 0))
    return {
        "rejected_rows": [r for r in rows if r.get("outcome") == REJECTED],
        "duplicate_rows": [r for r in rows if r.get("outcome") == DUPLICATE],
        "accepted_rows": [r for r in rows if r.get("outcome") == ACCEPTED],
        "studies": ImagingStudy.objects.filter(instances__submission=submission).distinct()
        .select_related("subject", "visit").order_by("pk"),
        "received": submission.accepted + submission.duplicates + submission.rejected,
    }


def _area(request, submission: Submission, *, error: str = "") -> HttpResponse:
    """The upload area (drop zone or results): the partial for htmx, the whole page otherwise."""
    template = f"{TEMPLATE}#upload-area" if request.htmx else TEMPLATE
    response = render(request, template, _context(request, submission=submission, error=error))
    if request.htmx:
        response["HX-Push-Url"] = reverse("upload-submission", args=[submission.pk])
    return response


@login_required
def upload_start(request):
    """The form that opens a submission; an htmx GET re-renders it as choices narrow."""
    sites = sites_coordinated_by(user=request.user)
    refresh = reverse("upload")
    if request.method == "POST":
        form = UploadStartForm(request.POST, sites=sites, refresh_url=refresh)
        if form.is_valid():
            data = form.cleaned_data
            try:
                submission = submission_open(
                    actor=request.user, site=data["site"], channel=Submission.Channel.WEB, subject=data["subject"],
                    visit=data["visit"], procedure=data["procedure"], qualification=data["qualification"],
                    declared_rescan=data["declared_rescan"], remote_address=request.META.get("REMOTE_ADDR"))
            except (DomainError, PermissionDenied) as exc:
                form.add_error(None, str(exc))
            else:
                return _area(request, submission) if request.htmx else redirect("upload-submission", submission.pk)
    else:
        form = UploadStartForm(sites=sites, refresh_url=refresh, initial=request.GET.dict())
    # a refused POST replaces the whole upload area (its target); narrowing the choices replaces only the form
    partial = "upload-area" if request.method == "POST" else "upload-start"
    template = f"{TEMPLATE}#{partial}" if request.htmx else TEMPLATE
    return render(request, template, _context(request, form=form))


@login_required
def submission_detail(request, submission_id: int):
    """The drop zone while the submission is open (for its coordinator), its results once finished."""
    return _area(request, submission_get_for_user(user=request.user, submission_id=submission_id))


@login_required
@require_POST
def submission_finish(request, submission_id: int):
    """Close the submission and show its results; an upload with no file yet stays open, with a message."""
    submission = submission_get_for_user(user=request.user, submission_id=submission_id, to_send=True)
    if submission.finished_at is None:
        if not (submission.accepted + submission.duplicates + submission.rejected):
            return _area(request, submission, error="No file has arrived yet: drop files, a folder or a .zip "
                                                    "archive first, and finish when they are all sent.")
        submission = submission_close(submission=submission)
    return _area(request, submission)


# -- one file per request -----------------------------------------------------------------------------------

def _refuse(submission: Submission, name: str, reason: str) -> FileOutcome:
    """Count a file the door refuses before filing it (too large, unsafe archive member): nothing is stored."""
    return file_refuse(submission=submission, name=name, reason=reason)


def _line(payload: dict) -> bytes:
    return (json.dumps(payload) + "\n").encode()


def _outcome_line(outcome: FileOutcome) -> bytes:
    return _line({"file": outcome.file, "outcome": outcome.outcome, "reason": outcome.reason})


def _answer(lines: Iterator[bytes] | list[bytes], *, status: int = 200) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, status=status, content_type="application/x-ndjson")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # results of a large archive should reach the browser as they come
    return response


def _outcomes(*, submission: Submission, body: Path, name: str, workdir: Path) -> Iterator[FileOutcome]:
    """File one received body: a plain file, or each member of a .zip; refusals are counted with a reason."""
    limits = _limits()
    reason = not_an_image(name)
    kind = None if reason else archive_format(name=name, head=read_head(body))
    if reason:
        yield _refuse(submission, name, reason)
    elif kind == "zip":
        try:
            members = zip_members(archive=body, workdir=workdir, label=name, limits=ArchiveLimits(
                max_member_bytes=limits["file"], max_total_bytes=limits["archive"], max_ratio=limits["ratio"],
                max_members=limits["members"]))
        except ArchiveRefused as exc:
            yield _refuse(submission, name, f"archive refused: {exc}")
            return
        for member in members:
            reason = member.reason or not_an_image(member.name)
            if not reason and member.path.stat().st_size == 0:
                reason = "the file is empty (0 bytes)"
            yield _refuse(submission, member.name, reason) if reason else instance_receive(
                submission=submission, path=member.path, name=member.name)
    elif kind:
        yield _refuse(submission, name, f"a {kind} archive: only .zip archives are unpacked; send a .zip or the "
                                        "files themselves")
    else:
        yield instance_receive(submission=submission, path=body, name=name)


def _stream(*, submission: Submission, body: Path, name: str, workdir: Path) -> Iterator[bytes]:
    """One JSON line per file as it is filed, then ``{"done": true}``; a reply without it is to be retried."""
    try:
        for outcome in _outcomes(submission=submission, body=body, name=name, workdir=workdir):
            yield _outcome_line(outcome)
        yield _line({"done": True})
    except Exception:
        # the status line is already sent: end the reply without "done", so the browser sends the file again
        # (what was filed stays filed and comes back as duplicates)
        log.exception("web upload: filing %s in submission %s failed", name, submission.pk)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@require_POST
def submission_file(request, submission_id: int):
    """Receive one file (the raw request body; its name in X-File-Name) and answer one JSON line per file."""
    if not request.user.is_authenticated:  # a script is asking: no redirect to the sign-in page
        return JsonResponse({"detail": "your session has ended: sign in again and resend"}, status=401)
    try:
        submission = submission_get_for_user(user=request.user, submission_id=submission_id, to_send=True)
    except Http404:
        return JsonResponse({"detail": "no such upload"}, status=404)
    if submission.finished_at is not None:
        return JsonResponse({"detail": "this upload is finished: start a new upload to send more files"},
                            status=409)
    length = _int(request.META.get("CONTENT_LENGTH"))
    if length and request.content_type != "application/octet-stream":
        # a form-encoded body would be parsed (into memory) before this view runs; only a raw body streams
        return JsonResponse({"detail": "send the file as the raw request body (application/octet-stream)"},
                            status=415)
    name = clean_label(unquote(request.headers.get("X-File-Name", "")))
    limits = _limits()
    is_archive = Path(name.lower()).suffix == ".zip"
    limit = limits["archive"] if is_archive else limits["file"]
    declared = max(length, _int(request.headers.get("X-File-Size")))
    if declared > limit:
        # the browser sends no body for a file it knows is too large; recorded so the result list is complete
        what = "archives" if is_archive else "files"
        outcome = _refuse(submission, name, f"the file is {human_size(declared)}; {what} over "
                                            f"{human_size(limit)} are refused")
        return _answer([_outcome_line(outcome), _line({"done": True})], status=413)
    workdir = Path(tempfile.mkdtemp(prefix="corelab-upload-", dir=getattr(settings, "FILE_UPLOAD_TEMP_DIR", None)))
    body = workdir / "body"
    try:
        size = stream_to_file(source=request, dest=body, limit=limit)
    except (TooLarge, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        return JsonResponse({"detail": f"the upload was interrupted ({exc}); send the file again"}, status=400)
    if size != length:
        shutil.rmtree(workdir, ignore_errors=True)
        return JsonResponse({"detail": f"the upload was interrupted after {size} of {length} bytes; "
                                       "send the file again"}, status=400)
    if size == 0:
        shutil.rmtree(workdir, ignore_errors=True)
        outcome = _refuse(submission, name, "the file is empty (0 bytes)")
        return _answer([_outcome_line(outcome), _line({"done": True})])
    return _answer(_stream(submission=submission, body=body, name=name, workdir=workdir))


def _int(value) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0

