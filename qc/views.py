"""The QC queue and study page (htmx). Views fetch through selectors (404 when not visible) and write
through services; an htmx request gets a partial of the page's own template."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from config.errors import DomainError
from intake.models import ImagingStudy

from . import selectors, services
from .thumbnails import series_thumbnail


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
                accept_errors: list[str] | None = None, reason: str = "", status: int = 200):
    run = selectors.latest_run(study=study)
    context = {
        "study": study, "run": run, "results": selectors.run_results(run=run) if run else [],
        "series": list(study.series.order_by("series_number", "pk")),
        "metadata": _metadata_table(run.series_metadata if run else []),
        "decision": selectors.decision_for(study=study),
        "can_decide": study.status == ImagingStudy.Status.QC_PENDING,
        "reject_errors": reject_errors or [], "accept_errors": accept_errors or [], "reason": reason,
    }
    template = "qc/study.html#decision" if request.htmx else "qc/study.html"
    return render(request, template, context, status=status)


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
