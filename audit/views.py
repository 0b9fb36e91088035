"""The auditor's workspace: patient timelines, audit search, and their exports.

Views fetch through ``audit.selectors`` (404 for missing and forbidden alike) and record exports through
``audit.services``. An htmx request for the next page gets the rows partial of the same template.
"""

import datetime as dt

from django.contrib.auth.decorators import login_required
from django.core.files.storage import storages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from . import exports, history, selectors, services
from .forms import SearchForm, TimelineFilterForm

SEARCH_PAGE_SIZE = 50


def _timeline_query(request, subject):
    form = TimelineFilterForm(request.GET or None)
    family, newest_first = "", False
    if form.is_bound and form.is_valid():
        family, newest_first = form.cleaned_data["family"], form.cleaned_data["order"] == "desc"
    return form, family, newest_first, selectors.timeline_events(subject=subject, family=family,
                                                                 newest_first=newest_first)


@login_required
@require_GET
def timeline(request, subject_id: int):
    """One subject's whole record, in time order, a page at a time (keyset: the 200th page costs the first's)."""
    subject = selectors.subject_get_for_auditor(user=request.user, subject_id=subject_id)
    form, family, newest_first, events = _timeline_query(request, subject)
    rows, next_cursor = selectors.keyset_page(events, after=request.GET.get("after", ""),
                                              newest_first=newest_first)
    query = request.GET.copy()
    query.pop("after", None)
    context = {"subject": subject, "form": form, "family": family,
               "entries": selectors.timeline_entries(rows, tz=subject.tz), "next_cursor": next_cursor,
               "query": query.urlencode(), "first_page": not request.GET.get("after"),
               "chain_status": selectors.chain_status_latest(),
               "pdf_exports": selectors.pdf_export_list_for_user(user=request.user, subject_id=subject.id)}
    if request.htmx and request.GET.get("after"):
        return render(request, "audit/timeline.html#timeline-rows", context)
    return render(request, "audit/timeline.html", context)


@login_required
@require_GET
def timeline_export(request, subject_id: int, export_format: str):
    """The timeline (with the page's filters) as CSV, JSON or PDF; the export is itself an audit event."""
    subject = selectors.subject_get_for_auditor(user=request.user, subject_id=subject_id)
    _form, family, _newest_first, events = _timeline_query(request, subject)
    if export_format == "pdf" and not exports.pdf_available():
        return render(request, "audit/export_too_large.html", {"subject": subject, "unavailable": True}, status=503)
    limit = exports.PDF_MAX_EVENTS if export_format == "pdf" else exports.EXPORT_MAX_EVENTS
    scope = {"subject_id": subject.id, "subject_code": subject.code, "trial": subject.trial_label,
             "site": subject.site_label, "site_time_zone": subject.time_zone, "family": family}
    try:
        rows, meta = exports.prepare(
            user=request.user, events=events, action="audit.timeline_exported", export_format=export_format,
            title=f"Patient timeline {subject.code} ({subject.trial_label}, {subject.site_label})", scope=scope,
            tz=subject.tz, trial_id=subject.trial_id, site_id=subject.site_id, subject_id=subject.id,
            subject_code=subject.code, limit=limit)
    except exports.ExportTooLarge:
        if export_format == "pdf":
            # too long to lay out within a request: a Celery task makes it, the page polls until it is there
            export = services.pdf_export_request(actor=request.user, trial_id=subject.trial_id,
                                                 site_id=subject.site_id, subject_id=subject.id,
                                                 subject_code=subject.code, family=family)
            return redirect("audit-pdf-export", export_id=export.pk)
        return render(request, "audit/export_too_large.html", {
            "subject": subject, "limit": limit, "export_format": export_format}, status=413)
    stamp = meta.as_of.strftime("%Y%m%dT%H%M%SZ")
    filename = f"timeline-{subject.trial_label}-{subject.code}-{stamp}".replace(" ", "_")
    if export_format == "csv":
        return exports.csv_response(rows=rows, meta=meta, filename=filename)
    if export_format == "json":
        return exports.json_response(rows=rows, meta=meta, filename=filename)
    return exports.pdf_response(rows=rows, meta=meta, filename=filename, context={"subject": subject})


def _search(request):
    form = SearchForm(request.GET or None, trials=selectors.audit_trial_choices_for_user(user=request.user))
    if not selectors.audit_trial_ids_for_user(user=request.user):
        raise Http404("No such page")
    filters = form.filters() if form.is_bound and form.is_valid() else selectors.SearchFilters()
    return form, filters, selectors.audit_event_list_for_user(user=request.user, filters=filters)


@login_required
@require_GET
def search(request):
    """Events across the user's trials, filtered by trial, site, subject, user, action, dates and object."""
    form, _filters, events = _search(request)
    if form.is_bound and not form.is_valid():
        events = events.none()
    rows, next_cursor = selectors.keyset_page(events, after=request.GET.get("after", ""), limit=SEARCH_PAGE_SIZE,
                                              newest_first=True)
    query = request.GET.copy()
    query.pop("after", None)
    context = {"form": form, "entries": selectors.timeline_entries(rows, tz=dt.UTC), "next_cursor": next_cursor,
               "query": query.urlencode(), "first_page": not request.GET.get("after")}
    if request.htmx and request.GET.get("after"):
        return render(request, "audit/search.html#search-rows", context)
    return render(request, "audit/search.html", context)


def _only_trial(user) -> int | None:
    # an export across several trials belongs to none of them; from one trial, it is that trial's record
    trials = selectors.audit_trial_ids_for_user(user=user)
    return next(iter(trials)) if len(trials) == 1 else None


@login_required
@require_GET
def search_export(request):
    """The search's result as CSV, newest first, streamed; the export is itself an audit event."""
    form, filters, events = _search(request)
    if form.is_bound and not form.is_valid():
        raise Http404("Invalid search")
    scope = {name: (value.isoformat() if isinstance(value, dt.datetime) else value)
             for name, value in filters.__dict__.items() if value not in (None, "")}
    try:
        rows, meta = exports.prepare(user=request.user, events=events, action="audit.search_exported",
                                     export_format="csv", title="Audit search", scope=scope,
                                     trial_id=filters.trial_id or _only_trial(request.user))
    except exports.ExportTooLarge:
        return render(request, "audit/export_too_large.html", {"limit": exports.EXPORT_MAX_EVENTS}, status=413)
    return exports.csv_response(rows=rows, meta=meta, filename=f"audit-search-{meta.as_of:%Y%m%dT%H%M%SZ}")


@login_required
@require_GET
def pdf_export_detail(request, export_id: int):
    """A background PDF export: "being prepared" (htmx polls this page's status partial) until the link shows."""
    export = selectors.pdf_export_get_for_user(user=request.user, export_id=export_id)
    context = {"export": export}
    if request.htmx:
        return render(request, "audit/pdf_export.html#export-status", context)
    return render(request, "audit/pdf_export.html", context)


@login_required
@require_GET
def pdf_export_download(request, export_id: int):
    """The stored PDF, to its requester only; each download is an audit event."""
    export = selectors.pdf_export_get_for_user(user=request.user, export_id=export_id)
    if export.status != export.Status.READY:
        raise Http404("This export is not ready")
    services.pdf_export_download_record(actor=request.user, export=export)
    stream = storages[exports.PDF_STORAGE].open(export.storage_key, "rb")
    return FileResponse(stream, as_attachment=True, filename=export.storage_key.rsplit("/", 1)[-1],
                        content_type="application/pdf")


@login_required
@require_GET
def object_history(request, app_label: str, model_name: str, pk: str):
    """Every version of one regulated row: when, who, why, and each field before -> after."""
    found = history.object_history_get_for_user(user=request.user, app_label=app_label, model_name=model_name,
                                                pk=pk)
    context = {"history": found}
    if request.htmx:
        return render(request, "audit/history.html#history-versions", context)
    return render(request, "audit/history.html", context)
