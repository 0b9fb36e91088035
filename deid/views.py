"""De-identification pages for trial managers: the profile (versions, new version, preview), the mapping CSV.

Everyone else gets 404. The profile page's forms post with htmx and get one of the page's partials back.
"""

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from deid.engine import OPTIONS
from trials.models import Trial

from .exceptions import ProfileInvalid
from .forms import (
    PREVIEW_MAX_BYTES,
    PREVIEW_SUBJECT_CODE,
    PreviewForm,
    ProfileForm,
    allowlist_text,
    regions_text,
)
from .models import DeidProfile
from .selectors import (
    MAPPING_COLUMNS,
    profile_list_for_user,
    trial_get_for_mapping,
    trial_get_for_profile,
    trial_list_for_profile,
)
from .services import mapping_export, profile_create_version, profile_current, profile_preview


@login_required
@require_GET
def mapping_csv(request, trial_id: int):
    """CSV of original identifier hashes -> pseudonyms (subject code, UIDs); each download is audited."""
    trial = trial_get_for_mapping(user=request.user, trial_id=trial_id)
    rows = mapping_export(user=request.user, trial=trial)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{trial.protocol_number}-pseudonym-mapping.csv"'
    response["Cache-Control"] = "no-store"
    writer = csv.DictWriter(response, fieldnames=MAPPING_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return response


# -- the profile page ----------------------------------------------------------------------------------------

def _option_rows(profile: DeidProfile) -> list[dict]:
    return [{"name": name, "code": code, "meaning": meaning, "on": name in profile.options}
            for name, (code, meaning) in OPTIONS.items()]


def _changes(current: DeidProfile, settings: dict) -> list[str]:
    """What a new version changes against the current one, in words (for the message and the preview)."""
    changes = []
    before, after = set(current.options), set(settings["options"])
    changes += [f"switches on {OPTIONS[name][1]}" for name in sorted(after - before)]
    changes += [f"switches off {OPTIONS[name][1]}" for name in sorted(before - after)]
    if sorted(map(tuple, current.safe_private)) != sorted(map(tuple, settings["safe_private"])):
        changes.append("changes the safe private allowlist")
    if current.pixel_regions != settings["pixel_regions"]:
        changes.append("changes the pixel-clean regions")
    if current.purge_raw_after_days != settings["purge_raw_after_days"]:
        days = settings["purge_raw_after_days"]
        changes.append("keeps raw files" if days is None else f"purges raw files after {days} day(s)")
    if current.ocr_text_review != settings["ocr_text_review"]:
        changes.append("holds files with burned-in text for QC review" if settings["ocr_text_review"]
                       else "no longer reads burned-in text with OCR")
    if settings["ocr_min_confidence"] not in (None, current.ocr_min_confidence):
        changes.append(f"counts OCR words from confidence {settings['ocr_min_confidence']}")
    return changes


def _page(request, trial: Trial, *, form: ProfileForm | None = None, preview_form: PreviewForm | None = None,
          preview=None, preview_errors: list[str] | None = None, partial: str = "profile-page"):
    """The page (or, for htmx, one of its partials)."""
    current = profile_current(trial=trial)
    versions = list(profile_list_for_user(user=request.user, trial=trial))
    context = {
        "trial": trial, "trials": trial_list_for_profile(user=request.user), "current": current,
        "earlier": [v for v in versions if v.pk != current.pk], "option_rows": _option_rows(current),
        "current_allowlist": allowlist_text(current.safe_private),
        "current_regions": regions_text(current.pixel_regions),
        "form": form or ProfileForm(initial=ProfileForm.initial_from(current)),
        "preview_form": preview_form or PreviewForm(), "preview": preview, "preview_errors": preview_errors or [],
        "max_mb": PREVIEW_MAX_BYTES // (1024 * 1024),
    }
    template = f"deid/profile.html#{partial}" if request.htmx else "deid/profile.html"
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"  # a preview may show original (PHI) values
    return response


@login_required
@require_GET
def profile_home(request):
    """The profile page of the user's one managed trial, or a choice of trials; 404 for everyone else."""
    trials = list(trial_list_for_profile(user=request.user))
    if not trials:
        raise Http404("No such page")
    if len(trials) == 1:
        return redirect("deid-profile-trial", trials[0].pk)
    return render(request, "deid/profile_trials.html", {"trials": trials})


@login_required
@require_GET
def profile_page(request, trial_id: int):
    """Current version, earlier versions, the new-version form and the preview (trial managers)."""
    return _page(request, trial_get_for_profile(user=request.user, trial_id=trial_id))


@login_required
@require_POST
def profile_version_create(request, trial_id: int):
    """Save the form as version n+1; errors come back inline, and nothing is created."""
    trial = trial_get_for_profile(user=request.user, trial_id=trial_id)
    form = ProfileForm(request.POST)
    if form.is_valid():
        current = profile_current(trial=trial)
        settings = form.settings()
        try:
            profile = profile_create_version(actor=request.user, trial=trial, note=form.cleaned_data["note"],
                                             **settings)
        except ProfileInvalid as exc:
            form.add_error(None, str(exc))
        else:
            changes = _changes(current, settings)
            messages.success(request, f"Version {profile.version} saved"
                                      + (f": it {'; '.join(changes)}." if changes else " (same settings)."))
            if request.htmx:
                return _page(request, trial)
            return redirect("deid-profile-trial", trial.pk)
    return _page(request, trial, form=form)


@login_required
@require_POST
def profile_preview_view(request, trial_id: int):
    """Run an uploaded sample through the current version or the form's unsaved settings; stores nothing."""
    trial = trial_get_for_profile(user=request.user, trial_id=trial_id)
    preview_form = PreviewForm(request.POST, request.FILES)
    form = ProfileForm(request.POST, require_note=False)
    preview, errors = None, []
    try:
        if preview_form.is_valid():
            current = profile_current(trial=trial)
            if preview_form.cleaned_data["source"] == PreviewForm.UNSAVED:
                if form.is_valid():
                    settings, version = form.settings(), None
                else:
                    errors = [f"{form.fields[name].label if name in form.fields else 'Settings'}: {e}"
                              for name, messages_ in form.errors.items() for e in messages_]
            else:
                settings = {"options": current.options, "safe_private": current.safe_private,
                            "pixel_regions": current.pixel_regions}
                version = current.version
            if not errors:
                upload = preview_form.cleaned_data["sample"]
                raw = upload.read()
                preview = profile_preview(
                    user=request.user, trial=trial, raw=raw, source=preview_form.cleaned_data["source"],
                    options=settings["options"], safe_private=settings["safe_private"],
                    pixel_regions=settings["pixel_regions"], version=version, subject_code=PREVIEW_SUBJECT_CODE)
                if version is None:
                    preview.changes = _changes(current, settings)
    finally:
        for upload in request.FILES.values():
            upload.close()  # a temporary file (large uploads) is deleted when closed
    return _page(request, trial, form=form if request.POST.get("source") == PreviewForm.UNSAVED else None,
                 preview_form=preview_form, preview=preview, preview_errors=errors, partial="preview")
