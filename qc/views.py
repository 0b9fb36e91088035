"""The QC queue, study page and queries (htmx). Views fetch through selectors (404 when not visible) and
write through services; an htmx request gets a partial of the page's own template."""

import datetime
import io
import json

import pydicom
import pydicom.errors
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from config.errors import DomainError
from deid import selectors as deid_selectors
from deid import services as deid_services
from intake.models import ImagingStudy

from . import selectors, services
from .models import Query
from .thumbnails import held_frame_png, series_thumbnail


def _int(value: str) -> int | None:
    return int(value) if value and value.isdigit() else None


@login_required
def queue(request):
    if not selectors.qc_visible_to(user=request.user):
        raise Http404("No such page")
    site_id = _int(request.GET.get("site", ""))
    procedure = request.GET.get("procedure", "").strip()
    failed_only = request.GET.get("failed") == "1"
    studies = selectors.qc_queue_list_for_user(user=request.user, site_id=site_id, procedure=procedure,
                                               failed_only=failed_only)
    context = {"studies": studies, "site_id": site_id, "procedure": procedure, "failed_only": failed_only,
               "held_studies": [] if request.htmx else deid_selectors.held_studies_for_user(user=request.user),
               **selectors.qc_queue_filters_for_user(user=request.user)}
    template = "qc/queue.html#queue-table" if request.htmx else "qc/queue.html"
    return render(request, template, context)


def _metadata_table(series: list[dict]) -> dict:
    """Header values as a table with one column per series and one row per attribute."""
    if not series:
        return {}
    labels = [label for label, _ in series[0]["values"]]
    by_series = [dict(s["values"]) for s in series]
    return {"series": series,
            "rows": [(label, [values.get(label, "") for values in by_series]) for label in labels]}


def _study_page(request, study: ImagingStudy, *, reject_errors: list[str] | None = None,
                accept_errors: list[str] | None = None, reason: str = "", status: int = 200,
                query_errors: list[str] | None = None, query_form: dict | None = None):
    run = selectors.latest_run(study=study)
    context = {
        "study": study, "run": run, "results": selectors.run_results(run=run) if run else [],
        "series": list(study.series.order_by("series_number", "pk")),
        "metadata": _metadata_table(run.series_metadata if run else []),
        "decision": selectors.decision_for(study=study),
        "can_decide": study.status == ImagingStudy.Status.QC_PENDING,
        "reject_errors": reject_errors or [], "accept_errors": accept_errors or [], "reason": reason,
        "held": deid_selectors.held_list_for_study(user=request.user, study=study),
        # the viewer starts its DICOMweb requests from these, without first asking which UIDs the study has
        "viewer_study_uids": json.dumps(deid_selectors.released_study_uids(study_id=study.pk)),
        **_study_queries(request, study, errors=query_errors, form=query_form),
    }
    template = "qc/study.html#decision" if request.htmx else "qc/study.html"
    return render(request, template, context, status=status)


def _study_queries(request, study: ImagingStudy, *, errors: list[str] | None = None,
                   form: dict | None = None) -> dict:
    queries = selectors.query_list_for_user(user=request.user, study_id=study.pk)
    return {"study": study, "study_queries": list(queries),
            "categories": Query.Category.choices, "query_errors": errors or [], "query_form": form or {},
            "default_due": timezone.localdate() + datetime.timedelta(days=services.QUERY_DUE_DAYS)}


@login_required
def study_detail(request, study_id: int):
    study = selectors.study_get_for_qc(user=request.user, study_id=study_id)
    return _study_page(request, study)


@login_required
@require_POST
def study_accept(request, study_id: int):
    study = selectors.study_get_for_qc(user=request.user, study_id=study_id)
    try:
        services.study_accept(analyst=request.user, study=study, note=request.POST.get("note", ""))
    except DomainError as exc:
        study.refresh_from_db()
        return _study_page(request, study, accept_errors=[str(exc)], status=409 if not request.htmx else 200)
    messages.success(request, f"{study} accepted: it is now the authoritative version.")
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = request.build_absolute_uri(f"/qc/?accepted={study.pk}")
        return response
    return redirect("qc-queue")


@login_required
@require_POST
def study_reject(request, study_id: int):
    study = selectors.study_get_for_qc(user=request.user, study_id=study_id)
    reason = request.POST.get("reason", "")
    try:
        services.study_reject(analyst=request.user, study=study, reason=reason)
    except DomainError as exc:
        study.refresh_from_db()
        return _study_page(request, study, reject_errors=[str(exc)], reason=reason,
                           status=400 if not request.htmx else 200)
    messages.success(request, f"{study} rejected; the site has been notified.")
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = request.build_absolute_uri(f"/qc/?rejected={study.pk}")
        return response
    return redirect("qc-queue")


@login_required
def series_thumbnail_png(request, study_id: int, series_id: int):
    study = selectors.study_get_for_qc(user=request.user, study_id=study_id)
    series = get_object_or_404(study.series, pk=series_id)
    png = series_thumbnail(series=series)
    if png is None:
        raise Http404("No image")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


# -- queries --------------------------------------------------------------------------------------------

def _date(value: str) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@login_required
@require_POST
def study_query_raise(request, study_id: int):
    study = selectors.study_get_for_qc(user=request.user, study_id=study_id)
    form = {k: request.POST.get(k, "") for k in ("category", "text", "due_date")}
    due = _date(form["due_date"])
    try:
        if form["due_date"] and due is None:
            raise services.QcError("give the due date as YYYY-MM-DD")
        query = services.query_raise(analyst=request.user, study=study, category=form["category"],
                                     text=form["text"], due_date=due)
    except DomainError as exc:
        if request.htmx:
            return render(request, "qc/study.html#queries",
                          _study_queries(request, study, errors=[str(exc)], form=form))
        return _study_page(request, study, query_errors=[str(exc)], query_form=form, status=400)
    if request.htmx:
        return render(request, "qc/study.html#queries", {**_study_queries(request, study), "raised": query})
    messages.success(request, f"Query {query.pk} raised; the site has been notified.")
    return redirect("qc-study", study_id=study.pk)


@login_required
def query_list(request):
    if not selectors.queries_visible_to(user=request.user):
        raise Http404("No such page")
    status = request.GET.get("status", "active")
    status = status if status in ("active", "", *Query.Status.values) else "active"
    category = request.GET.get("category", "")
    category = category if category in Query.Category.values else ""
    site_id = _int(request.GET.get("site", ""))
    overdue_only = request.GET.get("overdue") == "1"
    queries = selectors.query_list_for_user(user=request.user, status=status, site_id=site_id, category=category,
                                            overdue_only=overdue_only)
    today = timezone.localdate()
    rows = [{"query": q, "age": (today - timezone.localtime(q.raised_at).date()).days} for q in queries]
    context = {"rows": rows, "status": status, "category": category, "site_id": site_id,
               "overdue_only": overdue_only, "is_qc": selectors.qc_visible_to(user=request.user),
               **selectors.query_filters_for_user(user=request.user)}
    template = "qc/queries.html#query-table" if request.htmx else "qc/queries.html"
    return render(request, template, context)


def _query_page(request, query: Query, *, errors: list[str] | None = None, status: int = 200):
    is_qc = selectors.query_is_qc(user=request.user, query=query)
    context = {
        "query": query, "thread": selectors.query_thread(query=query), "is_qc": is_qc,
        "attachments": list(selectors.query_attachments(query=query)),
        "rescans": list(selectors.query_rescan_candidates(query=query)) if not is_qc else [],
        "age": (timezone.localdate() - timezone.localtime(query.raised_at).date()).days,
        "errors": errors or [], "max_mb": services.attachment_limit() // (1024 * 1024),
        "default_due": timezone.localdate() + datetime.timedelta(days=services.QUERY_DUE_DAYS),
    }
    template = "qc/query.html#query-body" if request.htmx else "qc/query.html"
    return render(request, template, context, status=status if not request.htmx else 200)


@login_required
def query_detail(request, query_id: int):
    return _query_page(request, selectors.query_get_for_user(user=request.user, query_id=query_id))


def _query_act(request, query_id: int, act, done: str):
    query = selectors.query_get_for_user(user=request.user, query_id=query_id)
    try:
        act(query)
    except PermissionDenied as exc:
        raise Http404("No such page") from exc
    except DomainError as exc:
        query.refresh_from_db()
        return _query_page(request, query, errors=[str(exc)], status=400)
    query.refresh_from_db()
    if request.htmx:
        return _query_page(request, query)
    messages.success(request, done)
    return redirect("qc-query", query_id=query.pk)


@login_required
@require_POST
def query_message(request, query_id: int):
    return _query_act(request, query_id, lambda q: services.query_message_add(
        author=request.user, query=q, text=request.POST.get("text", ""), files=request.FILES.getlist("file")),
        "Message added.")


@login_required
@require_POST
def query_answer(request, query_id: int):
    def act(query):
        rescan = None
        rescan_id = _int(request.POST.get("rescan", ""))
        if rescan_id is not None:
            rescan = selectors.query_rescan_candidates(query=query).filter(pk=rescan_id).first()
            if rescan is None:
                raise services.QcError("that study cannot be linked as a rescan of this query")
        services.query_answer(coordinator=request.user, query=query, text=request.POST.get("text", ""),
                              rescan=rescan, files=request.FILES.getlist("file"))
    return _query_act(request, query_id, act, "Answer sent to QC.")


@login_required
@require_POST
def query_close(request, query_id: int):
    return _query_act(request, query_id, lambda q: services.query_close(
        analyst=request.user, query=q, note=request.POST.get("note", "")), "Query closed.")


@login_required
@require_POST
def query_reopen(request, query_id: int):
    def act(query):
        raw = request.POST.get("due_date", "")
        due = _date(raw)
        if raw and due is None:
            raise services.QcError("give the due date as YYYY-MM-DD")
        services.query_reopen(analyst=request.user, query=query, reason=request.POST.get("reason", ""),
                              due_date=due)
    return _query_act(request, query_id, act, "Query reopened; the site has been notified.")


@login_required
def query_attachment_download(request, query_id: int, attachment_id: int):
    attachment = selectors.query_attachment_get_for_user(user=request.user, query_id=query_id,
                                                         attachment_id=attachment_id)
    stream = services.query_attachment_open(user=request.user, attachment=attachment)
    response = FileResponse(stream, as_attachment=True, filename=attachment.name,
                            content_type="application/octet-stream")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
def site_metrics(request):
    if not selectors.metrics_trial_ids(user=request.user):
        raise Http404("No such page")
    site_id = _int(request.GET.get("site", ""))
    rows = selectors.site_qc_metrics_for_user(user=request.user, site_id=site_id)
    sites = sorted({r["site"] for r in selectors.site_qc_metrics_for_user(user=request.user)},
                   key=lambda s: (s.trial.protocol_number, s.number))
    template = "qc/metrics.html#metrics-table" if request.htmx else "qc/metrics.html"
    return render(request, template, {"rows": rows, "sites": sites, "site_id": site_id})


# -- held files: de-identified outputs OCR (or verification) held for review ---------------------------

def _held_page(request, record, *, errors: list[str] | None = None, reason: str = "", status: int = 200):
    """The held output's frames with OCR's boxes, and the release / reject forms."""
    study = record.instance.study
    frames, rows, columns, image_error = 1, 0, 0, ""
    try:
        header = pydicom.dcmread(io.BytesIO(deid_services.held_output_read(record=record)), stop_before_pixels=True)
        frames = int(header.get("NumberOfFrames") or 1)
        rows, columns = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    except (DomainError, OSError, ValueError, TypeError, pydicom.errors.InvalidDicomError) as exc:
        image_error = str(exc) if isinstance(exc, DomainError) else "the held output cannot be read"
    boxed = sorted({box["frame"] for box in record.text_boxes})
    shown = [f for f in boxed if f < frames][:8] or [frames // 2]
    context = {
        "record": record, "study": study, "instance": record.instance, "rows": rows, "columns": columns,
        "frames": frames, "image_error": image_error,
        "images": [{"frame": f, "boxes": [b for b in record.text_boxes if b["frame"] == f]} for f in shown],
        "findings": [line for line in record.findings.splitlines() if line.strip()],
        "can_review": record.outcome == record.Outcome.HELD, "errors": errors or [], "reason": reason,
    }
    template = "qc/held.html#held-decision" if request.htmx else "qc/held.html"
    return render(request, template, context, status=status if not request.htmx else 200)


@login_required
def held_detail(request, record_id: int):
    return _held_page(request, deid_selectors.held_get_for_review(user=request.user, record_id=record_id))


@login_required
def held_frame(request, record_id: int, frame: int):
    record = deid_selectors.held_get_for_review(user=request.user, record_id=record_id)
    try:
        png = held_frame_png(frame=frame, data=deid_services.held_output_read(record=record))
    except (IndexError, ValueError, DomainError) as exc:
        raise Http404("No image") from exc
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, no-store"  # it may still show burned-in PHI
    return response


def _held_act(request, record_id: int, act, done: str):
    record = deid_selectors.held_get_for_review(user=request.user, record_id=record_id)
    reason = request.POST.get("reason", "")
    try:
        act(record, reason)
    except PermissionDenied as exc:
        raise Http404("No such page") from exc
    except DomainError as exc:
        record.refresh_from_db()
        return _held_page(request, record, errors=[str(exc)], reason=reason,
                          status=getattr(exc, "status_code", 400))
    messages.success(request, done)
    url = f"/qc/studies/{record.instance.study_id}/#qc-held"
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = request.build_absolute_uri(url)
        return response
    return redirect(url)


@login_required
@require_POST
def held_release(request, record_id: int):
    return _held_act(request, record_id, lambda record, reason: deid_services.held_release(
        reviewer=request.user, record=record, reason=reason),
        "Held file released: it is in the archive and the study continues.")


@login_required
@require_POST
def held_reject(request, record_id: int):
    return _held_act(request, record_id, lambda record, reason: deid_services.held_reject(
        reviewer=request.user, record=record, reason=reason),
        "Held file rejected: it stays out of the archive; the site's query stays open for a resend.")
