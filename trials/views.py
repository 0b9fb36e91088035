"""Trial set-up, site readiness and qualification review pages.

Views fetch through selectors (404 when not visible), write through services,
and ask trials.permissions what to offer. An htmx request gets the page's
partial back, rendered from the same template.
"""

import json
from html import escape as html_escape
from urllib.parse import quote_plus, urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from config.errors import DomainError

from . import dashboard, forms, selectors, services
from .models import ProtocolVersion, Role, SiteQualification
from .permissions import Perm, has_perm

ROLE_LABELS = dict(Role.choices)
User = get_user_model()


def _run(form, service, **kwargs):
    """Call a service; put its refusal on the form (field errors where a field matches). None on failure."""
    try:
        return service(**kwargs)
    except ValidationError as exc:
        for field, errors in (exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]):
            for error in errors:
                form.add_error(field if field in form.fields else None,
                               error if field in form.fields or field is None else f"{field}: {error}")
    except DomainError as exc:
        form.add_error(None, str(exc))
    return None


@login_required
def home(request):
    roles = selectors.my_roles_by_trial(user=request.user)
    trials = [{"trial": trial, "roles": [ROLE_LABELS[r] for r in roles.get(trial.pk, [])]}
              for trial in selectors.trial_list_for_user(user=request.user)]
    return render(request, "trials/home.html", {"trials": trials})


@login_required
def trial_detail(request, trial_id: int):
    trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
    can_manage = has_perm(user=request.user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    editing = request.method == "POST" and request.POST.get("form") == "trial"
    site_form = forms.SiteForm(request.POST if request.method == "POST" and not editing else None)
    trial_form = forms.TrialForm(request.POST if editing else None, initial={
        "title": trial.title, "sponsor": trial.sponsor, "phase": trial.phase, "status": trial.status,
        "sponsor_blinded": trial.sponsor_blinded})
    if editing and trial_form.is_valid():
        changes = {k: v for k, v in trial_form.cleaned_data.items() if k != "reason" and getattr(trial, k) != v}
        if _run(trial_form, services.trial_update, actor=request.user, trial=trial,
                reason=trial_form.cleaned_data["reason"], **changes):
            messages.success(request, "Trial record updated.")
            return redirect("trial-detail", trial.pk)
    elif request.method == "POST" and not editing:
        if site_form.is_valid() and _run(site_form, services.site_create, actor=request.user, trial=trial,
                                         **site_form.cleaned_data):
            messages.success(request, f"Site {site_form.cleaned_data['number']} added.")
            return redirect("trial-detail", trial.pk)
    current = trial.protocol_versions.filter(is_current=True).first()
    return render(request, "trials/trial_detail.html", {
        "trial": trial,
        "sites": selectors.site_list_for_user(user=request.user, trial=trial),
        "current_version": current,
        "charter": current.parsed_charter if current else None,
        "can_manage": can_manage,
        "can_review": has_perm(user=request.user, perm=Perm.REVIEW_QUALIFICATION, trial_id=trial.pk),
        "site_form": site_form,
        "trial_form": trial_form,
    })


# -- protocol versions --------------------------------------------------------------------------------------

@login_required
def version_list(request, trial_id: int):
    trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
    return render(request, "trials/version_list.html", {
        "trial": trial,
        "versions": selectors.protocol_version_list_for_user(user=request.user, trial=trial),
        "can_manage": has_perm(user=request.user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk),
    })


@login_required
def version_detail(request, trial_id: int, version_id: int):
    version = selectors.protocol_version_get_for_user(user=request.user, trial_id=trial_id, version_id=version_id)
    others = ProtocolVersion.objects.filter(trial=version.trial).exclude(pk=version.pk).order_by("-created_at")
    against = request.GET.get("against")
    previous = (others.filter(pk=against).first() if (against or "").isdigit()
                else others.filter(created_at__lt=version.created_at).first())
    changes = selectors.protocol_version_diff(old=previous, new=version) if previous else None
    return render(request, "trials/version_detail.html", {
        "trial": version.trial, "version": version, "charter": version.parsed_charter,
        "previous": previous, "others": others, "changes": changes,
    })


@login_required
def version_new(request, trial_id: int):
    trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
    if not has_perm(user=request.user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk):
        raise Http404("No such page")
    current = trial.protocol_versions.filter(is_current=True).first()
    initial = {}
    if current:
        # an amendment starts from the current charter, but "requalify" is a decision for each release:
        # carried forward, it would invalidate every site's qualification again
        draft = {**current.charter, "procedures": [{**p, "requalify": False} for p in current.charter["procedures"]]}
        initial = {"charter": json.dumps(draft, indent=2)}
    form = forms.ProtocolVersionForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        version = _run(form, services.protocol_version_release, actor=request.user, trial=trial,
                       **form.cleaned_data)
        if version:
            messages.success(request, f"Protocol version {version.label} released and now current.")
            return redirect("version-detail", trial.pk, version.pk)
    return render(request, "trials/version_new.html", {"trial": trial, "form": form, "current": current})


# -- a site's readiness: scanners, qualification, training, subjects ----------------------------------------

@login_required
def my_site(request):
    sites = list(selectors.sites_coordinated_by(user=request.user))
    if len(sites) == 1:
        return redirect("site-detail", sites[0].trial_id, sites[0].pk)
    return render(request, "trials/my_sites.html", {"sites": sites})


def _site_context(request, site, **forms_in_play):
    user, trial = request.user, site.trial
    can_act = has_perm(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=trial.pk, site_id=site.pk) or has_perm(
        user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    overview = selectors.site_qualification_overview(user=user, site=site)
    coordinators = [(m.user.username, m.user.username) for m in site.memberships.select_related("user")]
    context = {
        "trial": trial, "site": site, "overview": overview, "can_act": can_act,
        "can_enroll": has_perm(user=user, perm=Perm.ENROLL, trial_id=trial.pk, site_id=site.pk),
        "scanners": selectors.scanner_list_for_user(user=user, site=site),
        "training": selectors.site_training_overview(user=user, site=site),
        "notices": selectors.notice_list_for_user(user=user, site=site)[:20],
        "subjects": selectors.subject_list_for_user(user=user, trial=trial).filter(site=site),
        "scanner_form": forms.ScannerForm(),
        "request_form": forms.QualificationRequestForm(site=site, procedures=[(p.code, f"{p.code} — {p.name}")
                                                                              for p in overview]),
        "training_form": forms.TrainingForm(users=coordinators),
        "enroll_form": forms.EnrollForm(),
        "submit_form": forms.QualificationSubmitForm(),
    }
    context.update(forms_in_play)
    return context


def _site_response(request, site, **forms_in_play):
    template = "trials/site_detail.html#site-page" if request.htmx else "trials/site_detail.html"
    return render(request, template, _site_context(request, site, **forms_in_play))


@login_required
def site_detail(request, trial_id: int, site_id: int):
    site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
    return _site_response(request, site)


@login_required
@require_POST
def scanner_add(request, trial_id: int, site_id: int):
    site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
    form = forms.ScannerForm(request.POST)
    if form.is_valid() and _run(form, services.scanner_register, actor=request.user, site=site, **form.cleaned_data):
        messages.success(request, "Scanner registered.")
        form = forms.ScannerForm()
    return _site_response(request, site, scanner_form=form)


@login_required
@require_POST
def qualification_add(request, trial_id: int, site_id: int):
    site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
    procedures = [(p.code, p.code) for p in selectors.site_qualification_overview(user=request.user, site=site)]
    form = forms.QualificationRequestForm(request.POST, site=site, procedures=procedures)
    if form.is_valid() and _run(form, services.qualification_request, actor=request.user, site=site,
                                **form.cleaned_data):
        messages.success(request, "Qualification opened: submit the phantom or test-subject scan next.")
        form = forms.QualificationRequestForm(site=site, procedures=procedures)
    return _site_response(request, site, request_form=form)


@login_required
@require_POST
def qualification_submit(request, qualification_id: int):
    qualification = selectors.qualification_get_for_user(user=request.user, qualification_id=qualification_id)
    form = forms.QualificationSubmitForm(request.POST)
    if form.is_valid() and _run(form, services.qualification_submit, actor=request.user,
                                qualification=qualification, **form.cleaned_data):
        messages.success(request, "Submitted for review by the core lab.")
        form = forms.QualificationSubmitForm()
    return _site_response(request, qualification.site, submit_form=form)


@login_required
@require_POST
def training_add(request, trial_id: int, site_id: int):
    site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
    users = [(m.user.username, m.user.username) for m in site.memberships.select_related("user")]
    form = forms.TrainingForm(request.POST, request.FILES, users=users)
    version = site.trial.protocol_versions.filter(is_current=True).first()
    if form.is_valid():
        values = dict(form.cleaned_data)
        trained = get_object_or_404(User, username=values.pop("user"))
        if _run(form, services.training_record_add, actor=request.user, user=trained, site=site,
                protocol_version=version, **values):
            messages.success(request, f"Training of {trained.username} recorded.")
            form = forms.TrainingForm(users=users)
    return _site_response(request, site, training_form=form)


@login_required
@require_POST
def subject_enroll(request, trial_id: int, site_id: int):
    site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
    form = forms.EnrollForm(request.POST)
    if form.is_valid():
        subject = _run(form, services.subject_enroll, actor=request.user, site=site, **form.cleaned_data)
        if subject:
            messages.success(request, f"Subject {subject.code} enrolled; {subject.visits.count()} visits scheduled.")
            form = forms.EnrollForm()
    return _site_response(request, site, enroll_form=form)


@login_required
@require_POST
def notice_acknowledge(request, notice_id: int):
    notice = selectors.notice_get_for_user(user=request.user, notice_id=notice_id)
    services.site_notice_acknowledge(actor=request.user, notice=notice)
    return _site_response(request, notice.site)


# -- qualification review -----------------------------------------------------------------------------------

@login_required
def qualification_queue(request):
    return render(request, "trials/qualification_queue.html", {
        "queue": selectors.qualification_review_queue_for_user(user=request.user)})


@login_required
def qualification_review(request, qualification_id: int):
    qualification = selectors.qualification_get_for_user(user=request.user, qualification_id=qualification_id)
    can_review = has_perm(user=request.user, perm=Perm.REVIEW_QUALIFICATION, trial_id=qualification.site.trial_id)
    form = forms.QualificationDecisionForm(request.POST or None)
    if request.method == "POST":
        if not can_review:
            raise Http404("No such page")
        if form.is_valid() and _run(form, services.qualification_decide, actor=request.user,
                                    qualification=qualification, approve=form.cleaned_data["decision"] == "approve",
                                    reason=form.cleaned_data["reason"]):
            messages.success(request, f"Qualification {form.cleaned_data['decision']}d.")
            return redirect("qualification-queue")
    procedure = qualification.protocol_version.parsed_charter.procedure(qualification.procedure)
    return render(request, "trials/qualification_review.html", {
        "qualification": qualification, "procedure": procedure, "form": form,
        "can_decide": can_review and qualification.status == SiteQualification.Status.SUBMITTED,
    })


# -- team ---------------------------------------------------------------------------------------------------

@login_required
def team(request, trial_id: int):
    trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
    can_manage = has_perm(user=request.user, perm=Perm.MANAGE_MEMBERS, trial_id=trial.pk)
    memberships = selectors.membership_list_for_user(user=request.user, trial=trial)
    if not can_manage and not memberships.exists():
        raise Http404("No such page")
    form = forms.MembershipForm(request.POST or None, trial=trial)
    if request.method == "POST":
        if not can_manage:
            raise Http404("No such page")
        if form.is_valid():
            user = User.objects.filter(username=form.cleaned_data["username"], is_active=True).first()
            if user is None:
                form.add_error("username", "no active user with this username")
            elif _run(form, services.membership_grant, actor=request.user, user=user, trial=trial,
                      role=form.cleaned_data["role"], site=form.cleaned_data["site"]):
                messages.success(request, f"{user.username} is now {ROLE_LABELS[form.cleaned_data['role']]}.")
                return redirect("team", trial.pk)
    return render(request, "trials/team.html", {"trial": trial, "memberships": memberships, "form": form,
                                                "can_manage": can_manage, "revoke_form": forms.ReasonForm()})


@login_required
@require_POST
def membership_revoke(request, trial_id: int, membership_id: int):
    trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
    membership = get_object_or_404(selectors.membership_list_for_user(user=request.user, trial=trial),
                                   pk=membership_id)
    form = forms.ReasonForm(request.POST)
    if form.is_valid() and _run(form, services.membership_revoke, actor=request.user, membership=membership,
                                reason=form.cleaned_data["reason"]) is None and not form.errors:
        messages.success(request, f"Role of {membership.user.username} revoked.")
    else:
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors) or "not revoked")
    return redirect("team", trial.pk)


# -- dashboards (trials.dashboard: the frame; the panels come from the apps that own the data) ---------------

def _dashboard_trial(request, trial_id: int):
    """The trial, if the user may see its dashboards; 404 otherwise (coordinators, readers, outsiders)."""
    trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
    if not dashboard.may_view(user=request.user, trial=trial):
        raise Http404("No such page")
    return trial


def _dashboard_filters(request, trial):
    """(filters, errors): the request's filters, or the unfiltered default and the reasons they were refused."""
    try:
        return dashboard.filters_parse(params=request.GET, trial=trial), {}
    except ValidationError as exc:
        return dashboard.Filters(), {field: " ".join(msgs) for field, msgs in exc.message_dict.items()}


def _panel_context(*, trial, panel, data, filters, drill: bool) -> dict:
    query = urlencode(filters.query(), doseq=True)
    drill_url = reverse("dashboard-drilldown", args=[trial.pk, panel.key])
    hrefs: dict[tuple, str] = {}  # a heat map's cell and its table row link to the same place

    def drill_href(params: dict | None) -> str | None:
        if not (drill and params):
            return None
        key = tuple(params.items())
        if key not in hrefs:
            cell = "&".join(f"{name}={quote_plus(str(value))}" for name, value in params.items())
            hrefs[key] = f"{drill_url}?{cell}&{query}" if query else f"{drill_url}?{cell}"
        return hrefs[key]

    chart = dict(data.chart)
    if "cells" in chart:
        chart["cells"] = [{**{k: v for k, v in cell.items() if k != "drill"}, "href": drill_href(cell.get("drill"))}
                          for cell in chart["cells"]]
    suffix = f"?{query}" if query else ""
    rows = [{"cells": [row.get(key) for key, _ in data.columns], "href": drill_href(row.get("drill"))}
            for row in data.rows]
    has_drill = any(row["href"] for row in rows)
    return {
        "key": panel.key, "title": panel.title, "note": data.note, "chart": chart, "columns": data.columns,
        "chart_id": f"chart-{panel.key}", "rows": rows, "has_drill": has_drill,
        "body": _table_body(rows, has_drill=has_drill),
        "csv_url": reverse("dashboard-panel-data", args=[trial.pk, panel.key, "csv"]) + suffix,
        "json_url": reverse("dashboard-panel-data", args=[trial.pk, panel.key, "json"]) + suffix,
    }


def _table_body(rows: list[dict], *, has_drill: bool) -> str:
    """The table's rows as HTML, escaped here: a heat map's table has a row per site and timepoint, and
    the template language would spend most of the page's time on its cells."""
    html = []
    for row in rows:
        cells = "".join(f"<td>{'—' if v is None else html_escape(str(v))}</td>" for v in row["cells"])
        if has_drill:
            cells += f'<td><a href="{html_escape(row["href"])}">subjects</a></td>' if row["href"] else "<td></td>"
        html.append(f"<tr>{cells}</tr>")
    return mark_safe("".join(html))  # noqa: S308  (every value above is escaped)


def _site_options(sites, filters) -> str:
    """The site filter's <option>s (a trial may have hundreds of sites), escaped here."""
    return mark_safe("".join(  # noqa: S308  (every value is escaped)
        f'<option value="{pk}"{" selected" if pk in filters.site_ids else ""}>'
        f"{html_escape(number)} {html_escape(name)}</option>"
        for pk, number, name in sites.order_by("number").values_list("pk", "number", "name")))


@login_required
def dashboard_index(request):
    trials = dashboard.dashboard_trial_list_for_user(user=request.user)
    if not trials:
        raise Http404("No such page")
    if len(trials) == 1:
        return redirect("dashboard", trials[0].pk, dashboard.Page.RECEIVED.value)
    return render(request, "trials/dashboard_index.html", {"trials": trials, "pages": list(dashboard.Page)})


@login_required
def dashboard_page(request, trial_id: int, page: str):
    trial = _dashboard_trial(request, trial_id)
    if page not in {p.value for p in dashboard.Page}:
        raise Http404("No such dashboard")
    page = dashboard.Page(page)
    filters, errors = _dashboard_filters(request, trial)
    drill = dashboard.may_drill_down(user=request.user, trial=trial)
    allowed: dict = {}  # perm -> may view: asked once a page, not once a panel (panels mostly share one)
    for panel in dashboard.panels_for(page):
        if panel.perm not in allowed:
            allowed[panel.perm] = dashboard.may_view(user=request.user, trial=trial, panel=panel)
    panels = [] if errors else [
        _panel_context(trial=trial, panel=panel, filters=filters, drill=drill,
                       data=panel.compute(trial=trial, filters=filters))
        for panel in dashboard.panels_for(page) if allowed[panel.perm]]
    return render(request, "trials/dashboard.html", {
        "trial": trial, "page": page, "pages": list(dashboard.Page), "panels": panels, "errors": errors,
        "filters": filters, "raw": request.GET,
        "site_options": _site_options(selectors.site_list_for_user(user=request.user, trial=trial), filters),
        "trials": dashboard.dashboard_trial_list_for_user(user=request.user),
    }, status=400 if errors else 200)


@login_required
def dashboard_panel_data(request, trial_id: int, key: str, fmt: str):
    """One panel's table as CSV or JSON, for the same filters as the page it sits on."""
    trial = _dashboard_trial(request, trial_id)
    panel = dashboard.panel_get(key)
    if panel is None or fmt not in ("csv", "json") or not dashboard.may_view(user=request.user, trial=trial,
                                                                             panel=panel):
        raise Http404("No such panel")
    filters, errors = _dashboard_filters(request, trial)
    if errors:
        return HttpResponseBadRequest("; ".join(f"{field}: {msg}" for field, msg in errors.items()),
                                      content_type="text/plain; charset=utf-8")
    data = panel.compute(trial=trial, filters=filters)
    name = f"{trial.protocol_number}-{panel.key}-{filters.today.isoformat()}"
    if fmt == "csv":
        response = HttpResponse(dashboard.panel_csv(data), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(dashboard.panel_json(panel=panel, trial=trial, filters=filters, data=data),
                                content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@login_required
def dashboard_drilldown(request, trial_id: int, key: str):
    """The subjects behind one cell of a panel (codes only), for roles that may see every site's subjects."""
    trial = _dashboard_trial(request, trial_id)
    panel = dashboard.panel_get(key)
    if (panel is None or panel.drilldown is None or not dashboard.may_view(user=request.user, trial=trial, panel=panel)
            or not dashboard.may_drill_down(user=request.user, trial=trial)):
        raise Http404("No such drill-down")
    filters, errors = _dashboard_filters(request, trial)
    data = None
    if not errors:
        try:
            data = panel.drilldown(trial=trial, filters=filters, user=request.user, params=request.GET)
        except ValueError as exc:
            errors = {"cell": str(exc)}
    if data is not None and request.GET.get("format") == "csv":
        response = HttpResponse(dashboard.panel_csv(data), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{trial.protocol_number}-{panel.key}-subjects.csv"'
        return response
    context = {"trial": trial, "panel": panel, "errors": errors, "page": panel.page,
               "back": reverse("dashboard", args=[trial.pk, panel.page.value])
               + (f"?{urlencode(filters.query(), doseq=True)}" if not errors else "")}
    if data is not None:
        context["data"] = _panel_context(trial=trial, panel=panel, data=data, filters=filters, drill=False)
        params = request.GET.copy()
        params["format"] = "csv"
        context["csv_url"] = f"{request.path}?{params.urlencode()}"
    return render(request, "trials/dashboard_drilldown.html", context, status=400 if errors else 200)
