"""Reader oversight pages: agreement and performance of a trial's central review, and the SDTM download.

For trial managers and auditors (``reads.metrics.oversight_allowed``); anyone else gets 404, as everywhere.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from config.errors import DomainError
from trials.models import Trial
from trials.permissions import Perm, has_perm, trial_ids_with

from . import reports
from .exceptions import ReadsError
from .forms import ReadingRulesForm
from .metrics import agreement_report_for_user, oversight_trial_get_for_user
from .sdtm import FILES, sdtm_export, sdtm_zip
from .services import read_settings_for, read_settings_update


@login_required
def oversight_index(request):
    """The trials whose reader oversight the user may see (the same rule as ``metrics.oversight_allowed``)."""
    ids = trial_ids_with(user=request.user, perm=Perm.MANAGE_TRIAL) | trial_ids_with(user=request.user,
                                                                                     perm=Perm.VIEW_AUDIT)
    trials = list(Trial.objects.filter(pk__in=ids).order_by("protocol_number"))
    if not trials:
        raise Http404("No such page")
    return render(request, "reads/agreement.html", {"trials": trials, "report": None})


@login_required
def agreement(request, trial_id: int):
    trial, report = agreement_report_for_user(user=request.user, trial_id=trial_id)
    period = request.GET.get("period", "").strip()
    block = report["overall"]
    if period:
        block = next((m for m in report["months"] if m["month"] == period), None)
        if block is None:
            months = ", ".join(m["month"] for m in report["months"]) or "none yet"
            return HttpResponse(f"No reads were signed in {period!r} (months with reads: {months}).",
                                status=400, content_type="text/plain")
    template = "reads/agreement.html#agreement-tables" if request.htmx else "reads/agreement.html"
    return render(request, template, {"trial": trial, "report": report, "stats": block, "period": period,
                                      "files": FILES})


@login_required
@require_POST
def sdtm_download(request, trial_id: int):
    """The six SDTM files (TU, TR, RS as CSV and XPT) in one zip; the export is an audit event."""
    trial = oversight_trial_get_for_user(user=request.user, trial_id=trial_id)
    files = sdtm_export(actor=request.user, trial=trial)
    response = HttpResponse(sdtm_zip(files), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{trial.protocol_number}-sdtm.zip"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
def reading_rules(request, trial_id: int):
    """The trial's reading rules: what sends a subject to adjudication, and the RECIST options. Trial managers
    change them with a reason (audited, with field history); auditors read them; everyone else gets 404."""
    trial = oversight_trial_get_for_user(user=request.user, trial_id=trial_id)
    may_change = has_perm(user=request.user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    settings = read_settings_for(trial=trial)
    form = ReadingRulesForm(initial=ReadingRulesForm.initial_from(settings))
    if request.method == "POST":
        if not may_change:
            raise Http404("No such page")
        form = ReadingRulesForm(request.POST)
        if form.is_valid():
            changes = form.changes(settings)
            if not changes:
                form.add_error(None, "Nothing changed: the rules are already as in the form.")
            else:
                try:
                    read_settings_update(actor=request.user, trial=trial, reason=form.cleaned_data["reason"],
                                         **changes)
                except ReadsError as exc:
                    form.add_error(None, str(exc))
                else:
                    messages.success(request, "Reading rules saved; they apply to reads evaluated from now on.")
                    return redirect("reads-rules", trial.pk)
    return render(request, "reads/rules.html", {"trial": trial, "settings": settings, "form": form,
                                                "may_change": may_change})


@login_required
def measurement_reports(request, trial_id: int):
    """The trial's measurement reports (DICOM SR): each read version's, with its state; a trial manager makes a
    failed one again, with a reason. Managers and auditors; everyone else gets 404."""
    rows = reports.measurement_reports_for_trial(user=request.user, trial_id=trial_id)
    trial = oversight_trial_get_for_user(user=request.user, trial_id=trial_id)
    may_retry = has_perm(user=request.user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    error, status = "", 200
    if request.method == "POST":
        report = next((r for r in rows if str(r.pk) == request.POST.get("report", "")), None)
        if not may_retry or report is None:
            raise Http404("No such measurement report")
        try:
            reports.measurement_report_retry(actor=request.user, report=report, reason=request.POST.get("reason", ""))
        except DomainError as exc:
            error, status = f"Report {report.pk} not made again: {exc}.", exc.status_code
        else:
            messages.success(request, f"Report {report.pk} is being made again.")
            return redirect("reads-measurement-reports", trial.pk)
    return render(request, "reads/measurement_reports.html",
                  {"trial": trial, "reports": rows, "may_retry": may_retry, "error": error}, status=status)
