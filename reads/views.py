"""The reading pages (htmx): the reader's worklist and read form, the adjudicator's pages, and the trial
manager's reader pool. Views fetch through reads.selectors (404 when not visible; blinding is enforced
there) and write through reads.services; an htmx request gets a partial of the page's own template.
Responses are never typed by anyone: the live panel and the signed read both come from reads.recist."""

import datetime
import json
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from audit.exceptions import SignatureError
from config.errors import DomainError
from trials.permissions import Perm
from trials.selectors import trial_get_for_user

from . import forms, recist, reports, selectors, services
from .blinding import reading_id
from .exceptions import InvalidAssessment, ReadsError, TimepointLocked
from .models import RECIST_11, ReadTask

TRIGGER_WORDS = {
    "overall": "The readers' overall response differs at {visit}",
    "bor": "The readers' best overall response differs",
    "pd_date": "The readers' date of progression differs",
}


def _printed_name(user) -> str:
    return (user.get_full_name() or "").strip() or user.get_username()


def _reads_home_or_404(request):
    if not selectors.reading_trials_for(user=request.user):
        raise Http404("No such page")


@login_required
def home(request):
    _reads_home_or_404(request)
    return render(request, "reads/home.html", {"trials": selectors.reading_trials_for(user=request.user)})


@login_required
def worklist(request, trial_id: int):
    trial = trial_get_for_user(user=request.user, trial_id=trial_id)
    rows = selectors.worklist_for(user=request.user, trial=trial)
    return render(request, "reads/worklist.html", {"trial": trial, "rows": rows})


# -- the read form ------------------------------------------------------------------------------------------

@login_required
@require_GET
def measurement_report_download(request, report_id: int):
    """A signed read's DICOM SR measurement report: its reader, the trial's managers and auditors (404 for
    anyone else); each download is an audit event."""
    report = reports.measurement_report_get_for_user(user=request.user, report_id=report_id)
    data = reports.measurement_report_download(user=request.user, report=report)
    response = HttpResponse(data, content_type="application/dicom")
    response["Content-Disposition"] = f'attachment; filename="measurement-report-{report.pk}.dcm"'
    response["Cache-Control"] = "no-store"
    return response


def _baseline_lesions(view) -> dict:
    """The baseline lesions a follow-up measures: the reader's own signed baseline (first earlier read)."""
    return view.earlier[0][1].lesions if view.earlier else {}


def _lesions_from_post(request, view) -> tuple[dict, list[str]]:
    if view.is_baseline:
        return forms.baseline_from_post(request.POST)
    earlier_visits = [tp for tp, _ in view.earlier[1:]]
    return forms.followup_from_post(request.POST, baseline=_baseline_lesions(view), earlier_visits=earlier_visits)


def _assessment(request, task: ReadTask, view, lesions: dict | None, form_errors: list[str]) -> dict:
    """The live panel: form problems, RECIST selection problems in words, or the engine's responses."""
    result = {"form_errors": form_errors, "codes": [], "error": "", "responses": None, "timepoint": None,
              "baseline_sum": None, "valid": False}
    if form_errors or lesions is None:
        return result
    try:
        responses, _ = services.read_preview(task=task, user=request.user, lesions=lesions)
    except InvalidAssessment as exc:
        result["codes"] = [(code, forms.explain(code)) for code in exc.errors]
        result["error"] = "" if exc.errors else str(exc)
        return result
    except DomainError as exc:
        result["error"] = str(exc)
        return result
    result["valid"] = True
    result["responses"] = responses
    result["timepoint"] = next((tp for tp in responses.get("timepoints", []) if tp.get("visit") == view.timepoint),
                               None)
    if view.is_baseline:
        result["baseline_sum"] = _number(recist.lesion_sum([t.get("mm") for t in lesions.get("targets", [])]))
    return result


def _number(value: Decimal):
    return int(value) if value == value.to_integral_value() else value.normalize()


def _rows(view, lesions: dict | None) -> dict:
    if view.is_baseline:
        return forms.baseline_rows(lesions)
    return forms.followup_rows(baseline=_baseline_lesions(view), lesions=lesions)


def describe(lesions: dict, baseline: dict | None = None) -> dict:
    """A read's lesions as rows for display (baseline selection, or follow-up measurements by lesion).
    A draft saved through the API may be malformed: it is shown as such, never a server error."""
    try:
        return _describe(lesions, baseline)
    except (recist.RecistInputError, AttributeError, TypeError, KeyError):
        return {"malformed": True}


def _describe(lesions: dict, baseline: dict | None = None) -> dict:
    if isinstance(lesions.get("targets"), list):
        return {"baseline": True, "targets": lesions.get("targets", []),
                "non_targets": lesions.get("non_targets", []),
                "sum": _number(recist.lesion_sum([t.get("mm") for t in lesions.get("targets", [])]))}
    names = {t["id"]: t for t in (baseline or {}).get("targets", [])}
    nt_names = {t["id"]: t for t in (baseline or {}).get("non_targets", [])}

    def shown(value):
        if value is None:
            return "not evaluated"
        if value == "TSTM":
            return "too small to measure (5 mm)"
        if value == "ABSENT":
            return "absent (0 mm)"
        if isinstance(value, list):
            return " + ".join(f"{v}" for v in value) + " mm (split)"
        return f"{value} mm"

    return {"baseline": False,
            "targets": [{"id": k, "organ": names.get(k, {}).get("organ", ""), "value": shown(v)}
                        for k, v in lesions.get("targets", {}).items()],
            "non_targets": [{"id": k, "organ": nt_names.get(k, {}).get("organ", ""), "value": v.lower()}
                            for k, v in (lesions.get("non_targets") or {}).items()],
            "non_target": lesions.get("non_target", ""),
            "new_lesions": lesions.get("new_lesions", ""),
            "first_seen": lesions.get("new_lesion_first_seen_visit", "")}


def _viewer_uids(request, task: ReadTask, view) -> tuple[str, str]:
    """The viewer's studies (JSON lists of de-identified Study Instance UIDs): this timepoint's, and at a
    follow-up the baseline's from the reader's own signed baseline task (fetched as that reader, so blinded)."""
    current = [s.study_uid for s in view.studies if s.study_uid]
    baseline = []
    if not view.is_baseline and view.earlier:
        baseline = selectors.baseline_study_uids_for_reader(user=request.user, task=task)
    return (json.dumps(current) if current else ""), (json.dumps(baseline) if baseline else "")


def _task_page(request, task_id: int, *, lesions: dict | None = None, form_errors: list[str] | None = None,
               sign_error: str = "", correct_error: str = "", reason: str = "", correcting: bool = False,
               error: str = "", status: int = 200):
    try:
        view = selectors.task_for_reader(user=request.user, task_id=task_id)
    except TimepointLocked as exc:
        task = selectors.task_get_for_reader(user=request.user, task_id=task_id)
        return render(request, "reads/task_locked.html", {"task": task,
                                                          "reading_id": reading_id(subject=task.subject),
                                                          "label": task.visit.label, "reason": str(exc),
                                                          "trial": task.subject.trial}, status=409)
    task = selectors.task_get_for_reader(user=request.user, task_id=task_id)
    signed = view.status == ReadTask.Status.SIGNED
    current = view.current
    if lesions is None and current is not None:
        lesions = current.lesions
    assessment = _assessment(request, task, view, lesions, form_errors or []) if (
        lesions and not signed or correcting or form_errors) else None
    baseline = _baseline_lesions(view)
    signatures = selectors.read_signatures_for_reader(user=request.user, task_id=task_id)
    viewer_study_uids, viewer_baseline_uids = _viewer_uids(request, task, view)
    shown_annotations = (current.lesions.get("annotations") if signed and not correcting and current
                         and isinstance(current.lesions, dict) else None)
    context = {
        "viewer_study_uids": viewer_study_uids, "viewer_baseline_uids": viewer_baseline_uids,
        # the signed read's measurements, drawn (locked) in the viewer
        "signed_annotations": [(lid, forms.annotation_json(current.lesions, lid))
                               for lid in sorted(shown_annotations)] if isinstance(shown_annotations, dict) else [],
        "measurement_reports": reports.measurement_reports_for_task(task_id=task.pk) if signed else [],
        "view": view, "trial": task.subject.trial, "signed": signed, "editable": view.status == "in_progress",
        "correcting": correcting or bool(correct_error), "rows": _rows(view, lesions),
        "assessment": assessment, "sign_error": sign_error, "error": error, "correct_error": correct_error, "reason": reason,
        "printed_name": _printed_name(request.user), "meaning": services.READ_MEANING,
        "versions": [{"read": r, "shown": describe(r.lesions, baseline), "signatures": signatures.get(r.version, []),
                      "timepoint": next((tp for tp in r.responses.get("timepoints", [])
                                         if tp.get("visit") == view.timepoint), None)}
                     for r in reversed(view.versions)],
        "earlier": [{"timepoint": tp, "shown": describe(r.lesions, baseline)} for tp, r in view.earlier],
        "earlier_visits": [tp for tp, _ in view.earlier[1:]],
        "organs": forms.ORGANS, "modalities": recist.MODALITIES, "target_states": forms.TARGET_STATES,
        "non_target_states": forms.NON_TARGET_STATES, "new_lesion_choices": forms.NEW_LESIONS,
    }
    return render(request, "reads/task.html", context, status=status)


@login_required
def task_detail(request, task_id: int):
    return _task_page(request, task_id, correcting=request.GET.get("correct") == "1")


@login_required
@require_POST
def task_open(request, task_id: int):
    task = selectors.task_get_for_reader(user=request.user, task_id=task_id)
    try:
        services.task_open(task=task, user=request.user)
    except DomainError as exc:
        messages.error(request, str(exc))
    return redirect("reads-task", task_id=task.pk)


@login_required
@require_POST
def task_assess(request, task_id: int):
    """htmx: the live panel for the form as it stands (nothing is saved)."""
    view = selectors.task_for_reader(user=request.user, task_id=task_id)
    task = selectors.task_get_for_reader(user=request.user, task_id=task_id)
    lesions, errors = _lesions_from_post(request, view)
    context = {"view": view, "assessment": _assessment(request, task, view, lesions, errors)}
    return render(request, "reads/task.html#assessment", context)


@login_required
@require_POST
def task_draft(request, task_id: int):
    view = selectors.task_for_reader(user=request.user, task_id=task_id)
    task = selectors.task_get_for_reader(user=request.user, task_id=task_id)
    lesions, errors = _lesions_from_post(request, view)
    if errors:
        return _task_page(request, task_id, lesions=lesions, form_errors=errors, status=400)
    try:
        services.read_save_draft(task=task, user=request.user, lesions=lesions)
    except DomainError as exc:
        return _task_page(request, task_id, lesions=lesions, error=f"Not saved: {exc}.", status=exc.status_code)
    messages.success(request, "Draft saved. It is not part of the record until you sign it.")
    return redirect("reads-task", task_id=task.pk)


@login_required
@require_POST
def task_sign(request, task_id: int):
    """Save what the form shows as the draft (if it changed), then sign it: password, printed name, meaning."""
    view = selectors.task_for_reader(user=request.user, task_id=task_id)
    task = selectors.task_get_for_reader(user=request.user, task_id=task_id)
    lesions, errors = _lesions_from_post(request, view)
    if errors:
        return _task_page(request, task_id, lesions=lesions, form_errors=errors,
                          sign_error="Fix the form first: nothing was signed.", status=400)
    try:
        if view.current is None or view.current.lesions != lesions:
            services.read_save_draft(task=task, user=request.user, lesions=lesions)
        read = services.read_sign(task=task, user=request.user, password=request.POST.get("password", ""),
                                  request=request)
    except SignatureError as exc:
        return _task_page(request, task_id, lesions=lesions, sign_error=f"Not signed: {exc}.", status=400)
    except DomainError as exc:
        return _task_page(request, task_id, lesions=lesions, sign_error=f"Not signed: {exc}.",
                          status=exc.status_code)
    messages.success(request, f"{view.timepoint_label} signed (version {read.version}, overall response "
                              f"{read.overall or 'not applicable at baseline'}). The read is locked.")
    return redirect("reads-task", task_id=task.pk)


@login_required
@require_POST
def task_correct(request, task_id: int):
    """A correction of the signed read: a new signed version with a reason."""
    view = selectors.task_for_reader(user=request.user, task_id=task_id)
    read = selectors.read_signed_for_reader(user=request.user, task_id=task_id)
    lesions, errors = _lesions_from_post(request, view)
    reason = request.POST.get("reason", "")
    if read is None:
        return _task_page(request, task_id, error="There is no signed read to correct.", status=409)
    if errors:
        return _task_page(request, task_id, lesions=lesions, form_errors=errors, reason=reason, correcting=True,
                          correct_error="Fix the form first: nothing was signed.", status=400)
    try:
        new = services.read_correct(read=read, user=request.user, lesions=lesions, reason=reason,
                                    password=request.POST.get("password", ""), request=request)
    except SignatureError as exc:
        return _task_page(request, task_id, lesions=lesions, reason=reason, correct_error=f"Not signed: {exc}.",
                          status=400)
    except DomainError as exc:
        return _task_page(request, task_id, lesions=lesions, reason=reason, correct_error=f"Not signed: {exc}.",
                          status=exc.status_code)
    messages.success(request, f"Correction signed as version {new.version}; version {read.version} is kept, "
                              "marked corrected.")
    return redirect("reads-task", task_id=task_id)


# -- adjudication -------------------------------------------------------------------------------------------

def triggers_in_words(triggers: list[dict]) -> list[str]:
    words = []
    for t in triggers:
        text = TRIGGER_WORDS.get(t.get("kind"), "The readers differ ({kind})").format(
            visit=t.get("visit") or "", kind=t.get("kind"))
        if t.get("kind") == "pd_date":
            a, b = t.get("A") or "no progression", t.get("B") or "no progression"
        else:
            a, b = t.get("A") or "—", t.get("B") or "—"
        words.append(f"{text}: read A {a}, read B {b}.")
    return words


def _slot_columns(view) -> list[dict]:
    """Timepoint by timepoint, read A and read B side by side."""
    columns = {}
    for slot in ("A", "B"):
        reads = view.reads.get(slot, [])
        baseline = reads[0][2].lesions if reads else {}
        last = reads[-1][2].responses if reads else {}
        columns[slot] = {"rows": {tp: {"scan_date": day, "read": r, "shown": describe(r.lesions, baseline),
                                       "timepoint": next((x for x in r.responses.get("timepoints", [])
                                                          if x.get("visit") == tp), None)}
                                  for tp, day, r in reads},
                         "bor": last.get("bor"), "pd_date": last.get("pd_date"), "pd_visit": last.get("pd_visit")}
    return [{"timepoint": tp, "A": columns["A"]["rows"].get(tp), "B": columns["B"]["rows"].get(tp)}
            for tp in view.visits], {slot: {k: v for k, v in c.items() if k != "rows"} for slot, c in columns.items()}


@login_required
def adjudication_list(request, trial_id: int):
    trial = trial_get_for_user(user=request.user, trial_id=trial_id)
    views = selectors.adjudication_list_for(user=request.user, trial=trial)
    rows = [{"view": v, "triggers": triggers_in_words(v.triggers)} for v in views]
    return render(request, "reads/adjudications.html", {"trial": trial, "rows": rows})


def _adjudication_page(request, adj_id: int, *, error: str = "", form: dict | None = None, status: int = 200):
    view = selectors.adjudication_for(user=request.user, adj_id=adj_id)
    adj = selectors.adjudication_get_for_adjudicator(user=request.user, adj_id=adj_id)
    timepoints, summary = _slot_columns(view)
    images = selectors.adjudication_images(user=request.user, adj_id=adj_id)
    current, baseline = images.later_uids or images.baseline_uids, images.baseline_uids if images.later_uids else []
    context = {"viewer_study_uids": json.dumps(current) if current else "",
               "viewer_baseline_uids": json.dumps(baseline) if baseline else "",
               "reader_annotations": images.annotations,
               "view": view, "trial": adj.trial, "triggers": triggers_in_words(view.triggers),
               "timepoints": timepoints, "summary": summary, "error": error, "form": form or {},
               "printed_name": _printed_name(request.user), "meaning": services.ADJUDICATION_MEANING,
               "signatures": selectors.adjudication_signatures(user=request.user, adj_id=adj_id),
               "selected": view.reads.get(view.selected, []) if view.selected else []}
    return render(request, "reads/adjudication.html", context, status=status)


@login_required
def adjudication_detail(request, adj_id: int):
    return _adjudication_page(request, adj_id)


@login_required
@require_POST
def adjudication_resolve(request, adj_id: int):
    adj = selectors.adjudication_get_for_adjudicator(user=request.user, adj_id=adj_id)
    form = {"selected": request.POST.get("selected", ""), "rationale": request.POST.get("rationale", "")}
    try:
        services.adjudication_resolve(adjudication=adj, user=request.user, selected=form["selected"],
                                      rationale=form["rationale"], password=request.POST.get("password", ""),
                                      request=request)
    except SignatureError as exc:
        return _adjudication_page(request, adj_id, error=f"Not signed: {exc}.", form=form, status=400)
    except DomainError as exc:
        return _adjudication_page(request, adj_id, error=f"Not signed: {exc}.", form=form, status=exc.status_code)
    messages.success(request, f"Adjudication signed: read {form['selected'].strip().upper()} is the BICR result.")
    return redirect("reads-adjudication", adj_id=adj_id)


# -- the trial manager's reader pool ------------------------------------------------------------------------

def _pool_page(request, trial, *, errors: dict | None = None, status: int = 200):
    pool = selectors.reader_pool_for(user=request.user, trial=trial)
    context = {"trial": trial, **pool, "errors": errors or {}, "today": timezone.localdate(),
               "qualified": {r.pk for perm in (Perm.READ, Perm.ADJUDICATE)
                             for r in services.qualified_readers(trial=trial, perm=perm)},
               "primary": {r.pk for r in services.qualified_readers(trial=trial, perm=Perm.READ)},
               "bicr": selectors.bicr_results(trial=trial, user=request.user)}
    return render(request, "reads/pool.html", context, status=status)


@login_required
def pool(request, trial_id: int):
    trial = trial_get_for_user(user=request.user, trial_id=trial_id)
    selectors.reader_pool_for(user=request.user, trial=trial)  # 404 unless the trial's manager
    return _pool_page(request, trial)


def _pool_act(request, trial_id: int, key: str, act, done: str):
    trial = trial_get_for_user(user=request.user, trial_id=trial_id)
    selectors.reader_pool_for(user=request.user, trial=trial)
    try:
        act(trial)
    except PermissionDenied as exc:
        raise Http404("No such page") from exc
    except (DomainError, ValueError) as exc:
        return _pool_page(request, trial, errors={key: str(exc)}, status=getattr(exc, "status_code", 400))
    messages.success(request, done)
    return redirect("reads-pool", trial_id=trial.pk)


def _int(value: str) -> int:
    if not (value or "").strip().isdigit():
        raise Http404("No such object")
    return int(value)


@login_required
@require_POST
def pool_add(request, trial_id: int):
    def act(trial):
        user = selectors.member_get_for_pool(user=request.user, trial=trial, user_id=_int(request.POST.get("user")))
        quals = [q for q in (request.POST.get("qualifications") or RECIST_11).split(",") if q.strip()]
        services.reader_add(actor=request.user, trial=trial, user=user, qualifications=quals)
    return _pool_act(request, trial_id, "add", act, "Reader added to the pool. Record their training next.")


@login_required
@require_POST
def pool_training(request, trial_id: int, reader_id: int):
    def act(trial):
        reader = selectors.reader_get_for_manager(user=request.user, trial=trial, reader_id=reader_id)
        version = selectors.reader_pool_for(user=request.user, trial=trial)["version"]
        if version is None:
            raise ReadsError("the trial has no current protocol version to train on")
        raw = request.POST.get("trained_on", "")
        try:
            day = datetime.date.fromisoformat(raw)
        except ValueError:
            raise ReadsError(f"give the training date as YYYY-MM-DD, not {raw!r}") from None
        services.reader_training_add(actor=request.user, reader=reader, protocol_version=version,
                                     topic=request.POST.get("topic", ""), trained_on=day,
                                     trainer=request.POST.get("trainer", ""))
    return _pool_act(request, trial_id, f"training-{reader_id}", act, "Training recorded.")


@login_required
@require_POST
def pool_deactivate(request, trial_id: int, reader_id: int):
    def act(trial):
        reader = selectors.reader_get_for_manager(user=request.user, trial=trial, reader_id=reader_id)
        services.reader_deactivate(actor=request.user, reader=reader, reason=request.POST.get("reason", ""))
    return _pool_act(request, trial_id, f"deactivate-{reader_id}", act,
                     "Reader deactivated. Reassign their subjects to another reader.")


@login_required
@require_POST
def pool_reassign(request, trial_id: int, task_id: int):
    def act(trial):
        task = selectors.task_get_for_manager(user=request.user, trial=trial, task_id=task_id)
        raw = request.POST.get("reader", "")
        if not raw.strip().isdigit():
            raise ReadsError("choose the reader who takes over")
        new_reader = selectors.reader_get_for_manager(user=request.user, trial=trial, reader_id=int(raw))
        services.task_reassign(actor=request.user, task=task, new_reader=new_reader,
                               reason=request.POST.get("reason", ""))
    return _pool_act(request, trial_id, f"task-{task_id}", act,
                     "Reassigned: the new reader reads the subject from baseline; earlier reads are kept.")


@login_required
@require_POST
def pool_reread(request, trial_id: int, task_id: int):
    def act(trial):
        task = selectors.task_get_for_manager(user=request.user, trial=trial, task_id=task_id)
        services.task_reread(actor=request.user, task=task, reason=request.POST.get("reason", ""))
    return _pool_act(request, trial_id, f"task-{task_id}", act,
                     "Re-read requested: a new task replaces this one; the earlier read is kept, marked.")
