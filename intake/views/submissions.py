"""Received: what arrived through every door (web upload, DICOM C-STORE, DICOMweb STOW-RS) and why files were
refused.

The gateway answers each C-STORE before the file is filed, and STOW-RS answers with short codes, so the full
reasons live only on the submission's record: this is where a site and its trial managers read them. Site
coordinators see their sites; trial managers and roles that see every site, every site of their trials;
everyone else gets 404. The filters re-render the table with htmx (a partial of the page's own template).
"""

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render

from trials.permissions import Perm, has_perm

from .. import selectors
from ..models import ImagingStudy, Submission

PER_PAGE = 50
TEMPLATE = "intake/submissions.html"
DETAIL_TEMPLATE = "intake/submissions_detail.html"

# short names for the table; the model's own labels are longer
CHANNEL_LABELS = {Submission.Channel.WEB: "Web", Submission.Channel.DICOM: "DICOM C-STORE",
                  Submission.Channel.STOWRS: "STOW-RS"}


class SubmissionFilterForm(forms.Form):
    trial = forms.TypedChoiceField(coerce=int, empty_value=None, required=False)
    site = forms.TypedChoiceField(coerce=int, empty_value=None, required=False)
    channel = forms.ChoiceField(choices=[("", "All channels"), *CHANNEL_LABELS.items()], required=False)
    refused = forms.BooleanField(required=False, label="With refusals only")
    started_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    started_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data, *, sites):
        super().__init__(data)
        trials = {site.trial_id: site.trial for site in sites}
        self.fields["trial"].choices = [("", "All trials")] + [(pk, t.protocol_number) for pk, t in trials.items()]
        self.fields["site"].choices = [("", "All sites")] + [
            (t.protocol_number, [(s.pk, f"{s.number} {s.name}") for s in sites if s.trial_id == pk])
            for pk, t in trials.items()]
        self.show_trial = len(trials) > 1
        self.show_site = len(sites) > 1

    def selector_filters(self) -> dict:
        """The selector's keyword arguments; invalid values are dropped (the form shows why)."""
        self.is_valid()
        data = self.cleaned_data  # the fields that passed
        return {"trial_id": data.get("trial"), "site_id": data.get("site"), "channel": data.get("channel") or None,
                "refused_only": bool(data.get("refused")), "started_from": data.get("started_from"),
                "started_to": data.get("started_to")}


def _row(submission: Submission) -> dict:
    return {"submission": submission, "channel": CHANNEL_LABELS.get(submission.channel, submission.channel),
            # who sent it: the PACS's AE title for C-STORE, the signed-in user for the other doors
            "sender": submission.calling_ae if submission.channel == Submission.Channel.DICOM
            else (submission.submitted_by.get_username() if submission.submitted_by_id else "")}


@login_required
def submission_list(request):
    """Submissions of every channel, newest first, 50 a page; an htmx request gets the table only."""
    user = request.user
    if not selectors.submissions_visible_to(user=user):
        raise Http404("No such page")
    sites = list(selectors.submission_site_list_for_user(user=user))
    form = SubmissionFilterForm(request.GET, sites=sites)
    submissions = selectors.submission_list_for_user(user=user, **form.selector_filters())
    page = Paginator(submissions, PER_PAGE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "rows": [_row(s) for s in page.object_list],
               "show_trial": form.show_trial}
    template = f"{TEMPLATE}#submissions-table" if request.htmx else TEMPLATE
    return render(request, template, context)


@login_required
def submission_detail(request, submission_id: int):
    """Counts, the per-file results (refused first, with reasons) and the studies the files went to."""
    user = request.user
    submission = selectors.submission_get_for_user_any_channel(user=user, submission_id=submission_id)
    studies = list(selectors.submission_study_list_for_user(user=user, submission=submission))
    may_work_site = has_perm(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=submission.trial_id,
                             site_id=submission.site_id) or has_perm(user=user, perm=Perm.MANAGE_TRIAL,
                                                                     trial_id=submission.trial_id)
    groups = selectors.submission_results_grouped(user=user, submission=submission)
    context = {
        "submission": submission, "row": _row(submission), "studies": studies,
        "rejected_rows": groups["rejected"], "duplicate_rows": groups["duplicate"],
        "accepted_rows": groups["accepted"],
        # the upload page and the inbox answer only a site's coordinators and the trial's managers
        "upload_link": may_work_site and submission.channel == Submission.Channel.WEB
        and submission.finished_at is None,
        "inbox_link": may_work_site and any(s.status == ImagingStudy.Status.UNASSIGNED for s in studies),
    }
    return render(request, DETAIL_TEMPLATE, context)
