"""The unassigned inbox and expected vs. received.

Views fetch through selectors (404 when not visible), write through services, and ask trials.permissions
what to offer. An htmx request gets the changed piece back, rendered from a partial of the page's own
template.
"""

from dataclasses import dataclass, field

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from config.errors import DomainError
from trials.models import Subject, Visit
from trials.permissions import Perm, has_perm, site_ids_with
from trials.selectors import site_get_for_user, site_list_for_user, trial_get_for_user, trial_list_for_user

from .. import selectors, services
from ..models import ImagingStudy
from ..selectors import Expectation, ExpectedProcedure

SUBJECTS_PER_PAGE = 100


# -- the unassigned inbox -----------------------------------------------------------------------------------

@dataclass
class AssignChoices:
    """What the subject → visit → procedure selects of one study offer, and what they have chosen."""

    subjects: list[Subject]
    subject: Subject | None
    visit: Visit | None
    procedure: str
    visits: list[Visit] = field(default_factory=list)
    procedures: list[str] = field(default_factory=list)


def _chosen(data: QueryDict | None, name: str, options: list, default):
    """The option the form names, else the default when it is an option, else the only option."""
    raw = (data or {}).get(name, "")
    keys = {str(getattr(option, "pk", option)): option for option in options}
    if raw in keys:
        return keys[raw]
    if default is not None and str(getattr(default, "pk", default)) in keys:
        return keys[str(getattr(default, "pk", default))]
    return options[0] if len(options) == 1 else None


def _assign_choices(*, study: ImagingStudy, subjects: list[Subject], data: QueryDict | None) -> AssignChoices:
    subject = _chosen(data, "subject", subjects, study.subject if study.subject_id else None)
    visits = list(subject.visits.all()) if subject else []
    date = study.acquisition_date
    in_window = next((v for v in visits if date and v.window_start <= date <= v.window_end), None)
    visit = _chosen(data, "visit", visits, in_window)
    procedures = list(visit.procedures) if visit else []
    by_modality = None
    if visit is not None:
        charter = visit.protocol_version.parsed_charter
        matching = [code for code in procedures
                    if charter.procedure(code) and study.modality in charter.procedure(code).modalities]
        by_modality = matching[0] if len(matching) == 1 else None
    procedure = _chosen(data, "procedure", procedures, by_modality) or ""
    return AssignChoices(subjects=subjects, subject=subject, visit=visit, procedure=procedure, visits=visits,
                         procedures=procedures)


def _may_act(*, user, trial_id: int, site_id: int) -> bool:
    """A site's coordinators and the trial's managers work its inbox (as intake.services checks)."""
    return has_perm(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=trial_id, site_id=site_id) or has_perm(
        user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial_id)


def _entry(*, user, study: ImagingStudy, subjects: list[Subject], data: QueryDict | None = None,
           assign_errors: list[str] | None = None, reject_errors: list[str] | None = None, reason: str = "",
           can_act: bool | None = None) -> dict:
    if can_act is None:
        can_act = _may_act(user=user, trial_id=study.trial_id, site_id=study.site_id)
    return {
        "study": study,
        "can_act": can_act,
        # only those who may act get the selects
        "assign": _assign_choices(study=study, subjects=subjects, data=data) if can_act else None,
        "assign_errors": assign_errors or [], "reject_errors": reject_errors or [], "reason": reason,
    }


def _inbox_page(request, *, replace: dict | None = None):
    studies = list(selectors.unassigned_study_list_for_user(user=request.user))
    subjects = selectors.assignable_subjects_by_study(user=request.user, studies=studies)
    # who may act is asked once per site, not once per study
    can_act = {(trial_id, site_id): _may_act(user=request.user, trial_id=trial_id, site_id=site_id)
               for trial_id, site_id in {(study.trial_id, study.site_id) for study in studies}}
    entries = [(replace or {}).get(study.pk) or _entry(user=request.user, study=study, subjects=subjects[study.pk],
                                                       can_act=can_act[study.trial_id, study.site_id])
               for study in studies]
    return render(request, "intake/inbox.html", {"entries": entries})


def _inbox_study(request, study_id: int) -> tuple[ImagingStudy, list[Subject]]:
    study = selectors.inbox_study_get_for_user(user=request.user, study_id=study_id)
    return study, selectors.assignable_subjects_by_study(user=request.user, studies=[study])[study.pk]


def _after_act(request, *, study: ImagingStudy, done: str | None, entry: dict):
    """The row's answer: a confirmation in its place, or the row again with the refusal inline."""
    if request.htmx:
        if done:
            return render(request, "intake/inbox.html#inbox-done", {"study": study, "done": done})
        return render(request, "intake/inbox.html#inbox-row", {"entry": entry})
    if done:
        messages.success(request, done)
        return redirect("intake-inbox")
    return _inbox_page(request, replace={study.pk: entry})


@login_required
def inbox(request):
    if not selectors.inbox_visible_to(user=request.user):
        raise Http404("No such page")
    return _inbox_page(request)


@login_required
@require_http_methods(["GET", "POST"])
def inbox_assign(request, study_id: int):
    """GET refreshes the cascading selects of one study's form; POST assigns the study."""
    study, subjects = _inbox_study(request, study_id)
    if request.method == "GET":
        entry = _entry(user=request.user, study=study, subjects=subjects, data=request.GET)
        return render(request, "intake/inbox.html#assign-form", {"entry": entry})
    choices = _assign_choices(study=study, subjects=subjects, data=request.POST)
    procedure = request.POST.get("procedure", "").strip()
    errors, done = [], None
    if choices.subject is None or choices.visit is None or not procedure:
        errors.append("choose the subject, the visit and the procedure")
    else:
        try:
            services.study_assign(actor=request.user, study=study, subject=choices.subject, visit=choices.visit,
                                  procedure=procedure)
            done = f"Study assigned to {choices.subject.code}, {choices.visit.label}, {procedure}."
        except DomainError as exc:
            errors.append(str(exc))
    entry = _entry(user=request.user, study=study, subjects=subjects, data=request.POST, assign_errors=errors)
    return _after_act(request, study=study, done=done, entry=entry)


@login_required
@require_POST
def inbox_reject(request, study_id: int):
    study, subjects = _inbox_study(request, study_id)
    reason = request.POST.get("reason", "").strip()
    errors, done = [], None
    try:
        services.study_reject_unassigned(actor=request.user, study=study, reason=reason)
        done = "Study rejected; it stays on record with your reason."
    except DomainError as exc:
        errors.append(str(exc))
    entry = _entry(user=request.user, study=study, subjects=subjects, reject_errors=errors, reason=reason)
    return _after_act(request, study=study, done=done, entry=entry)


# -- expected vs. received ----------------------------------------------------------------------------------

@dataclass
class GridRow:
    subject_code: str
    subject_status: str
    site_number: str
    cells: list[list[ExpectedProcedure]]


def expected_grid(*, rows: list[ExpectedProcedure]) -> tuple[list[dict], list[GridRow]]:
    """Timepoint columns (ordered by nominal day) and one row per subject whose cells list the procedures."""
    days: dict[str, int] = {}
    labels: dict[str, str] = {}
    for row in rows:
        days[row.timepoint] = min(days.get(row.timepoint, row.day), row.day)
        labels.setdefault(row.timepoint, row.visit_label)
    columns = sorted(days, key=lambda code: (days[code], code))
    index = {code: n for n, code in enumerate(columns)}
    subjects: dict[int, GridRow] = {}
    for row in rows:
        grid_row = subjects.get(row.subject_id)
        if grid_row is None:
            grid_row = subjects[row.subject_id] = GridRow(row.subject_code, row.subject_status, row.site_number,
                                                          [[] for _ in columns])
        grid_row.cells[index[row.timepoint]].append(row)
    return [{"code": code, "label": labels[code]} for code in columns], list(subjects.values())


@login_required
def expected(request):
    user = request.user
    trials = [t for t in trial_list_for_user(user=user) if site_list_for_user(user=user, trial=t).exists()]
    wanted = request.GET.get("trial", "")
    if not wanted and len(trials) != 1:
        if not trials:
            raise Http404("No such page")
        return render(request, "intake/expected.html", {"trials": trials})
    if wanted and not wanted.isdigit():
        raise Http404("No such trial")
    trial = trial_get_for_user(user=user, trial_id=int(wanted)) if wanted else trials[0]
    sites = list(site_list_for_user(user=user, trial=trial))
    if not sites:
        raise Http404("No such page")  # readers see the trial but no site, so no subject either
    site = None
    if request.GET.get("site", "").isdigit():
        site = site_get_for_user(user=user, trial_id=trial.pk, site_id=int(request.GET["site"]))
    elif request.GET.get("site"):
        raise Http404("No such site")
    rows = selectors.expected_procedure_list_for_user(user=user, trial=trial, site_id=site.pk if site else None)
    columns, grid = expected_grid(rows=rows)
    page = Paginator(grid, SUBJECTS_PER_PAGE).get_page(request.GET.get("page"))
    all_sites = site_ids_with(user=user, perm=Perm.VIEW_TRIAL, trial_id=trial.pk) is None
    context = {
        "trial": trial, "trials": trials, "sites": sites, "site": site, "all_sites": all_sites,
        "show_site": len(sites) > 1 and site is None, "columns": columns, "page": page,
        "summary": [(Expectation(status), count) for status, count in selectors.expected_summary(rows=rows).items()],
        "legend": list(Expectation),
    }
    template = "intake/expected.html#expected-table" if request.htmx else "intake/expected.html"
    return render(request, template, context)
