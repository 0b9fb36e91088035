from django import forms

from trials.models import SiteQualification, Subject, Visit


def _pick(queryset, value):
    """The object of ``queryset`` whose key is ``value``, or None (also for garbage): never raises."""
    try:
        return queryset.filter(pk=int(value)).first() if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class UploadStartForm(forms.Form):
    """What a coordinator is about to send: a subject's visit and procedure, or a site qualification scan.

    Choices narrow as the coordinator picks (site, then subject, then visit): each list holds only what the
    choice above allows, so a subject of another site or another subject's visit cannot be chosen.
    """

    SUBJECT, QUALIFICATION = "subject", "qualification"

    site = forms.ModelChoiceField(queryset=None, empty_label=None)
    kind = forms.ChoiceField(label="What are you sending?", widget=forms.RadioSelect, initial=SUBJECT, choices=[
        (SUBJECT, "Scans of a trial subject"),
        (QUALIFICATION, "A qualification scan (phantom or test subject)")])
    subject = forms.ModelChoiceField(queryset=Subject.objects.none(), required=False, empty_label="Choose a subject")
    visit = forms.ModelChoiceField(queryset=Visit.objects.none(), required=False, empty_label="Choose a visit")
    procedure = forms.ChoiceField(required=False)
    qualification = forms.ModelChoiceField(queryset=SiteQualification.objects.none(), required=False,
                                           empty_label="Choose a qualification")
    declared_rescan = forms.BooleanField(
        required=False, label="This is a declared rescan",
        help_text="Tick only when the site re-sends a study that was already uploaded (a repeat acquisition or "
                  "a corrected export); it becomes a new version and the earlier one is kept.")

    def __init__(self, data=None, *, sites, refresh_url: str, **kwargs):
        super().__init__(data, **kwargs)
        values = data if data is not None else (kwargs.get("initial") or {})
        self.fields["site"].queryset = sites
        self.fields["site"].label_from_instance = lambda s: f"{s.trial.protocol_number} · site {s.number} {s.name}"
        site = _pick(sites, values.get("site")) or sites.first()
        subjects = Subject.objects.filter(site=site).order_by("code") if site else Subject.objects.none()
        subject = _pick(subjects, values.get("subject"))
        visits = Visit.objects.filter(subject=subject).select_related("protocol_version") \
            if subject else Visit.objects.none()
        visit = _pick(visits, values.get("visit"))
        self.fields["subject"].queryset = subjects
        self.fields["visit"].queryset = visits
        self.fields["visit"].label_from_instance = lambda v: (
            f"{v.label} ({v.timepoint}), window {v.window_start:%Y-%m-%d} to {v.window_end:%Y-%m-%d}")
        if visit is not None:
            charter = visit.protocol_version.parsed_charter
            self.fields["procedure"].choices = [("", "Choose a procedure")] + [
                (code, f"{code}: {charter.procedure(code).name}") for code in visit.procedures]
        else:
            self.fields["procedure"].choices = [("", "Choose a visit first")]
        self.fields["qualification"].queryset = SiteQualification.objects.filter(
            site=site, status__in=[SiteQualification.Status.PENDING, SiteQualification.Status.SUBMITTED]
        ).select_related("scanner") if site else SiteQualification.objects.none()
        self.fields["qualification"].label_from_instance = lambda q: (
            f"{q.procedure} on {q.scanner.manufacturer} {q.scanner.model} ({q.get_status_display().lower()})")
        self.chosen_kind = values.get("kind") if values.get("kind") in (self.SUBJECT, self.QUALIFICATION) else self.SUBJECT
        # picking a site, a kind, a subject or a visit re-renders the form with the choices that follow from it
        for name in ("site", "kind", "subject", "visit"):
            self.fields[name].widget.attrs.update({
                "hx-get": refresh_url, "hx-include": "closest form", "hx-target": "#upload-start",
                "hx-swap": "outerHTML"})

    def clean(self):
        data = super().clean()
        if data.get("kind") == self.QUALIFICATION:
            if not data.get("qualification"):
                self.add_error("qualification", "choose the qualification this scan is for")
            data.update(subject=None, visit=None, procedure="")
        else:
            for name, what in (("subject", "subject"), ("visit", "visit"), ("procedure", "procedure")):
                if not data.get(name):
                    self.add_error(name, f"choose the {what} these scans belong to")
            data["qualification"] = None
        return data


# -- DICOM senders (intake.views.peers); the services validate, these only collect ---------------------------

class GatewayPeerForm(forms.Form):
    site = forms.ModelChoiceField(queryset=None, empty_label=None)
    ae_title = forms.CharField(max_length=16, label="Calling AE title",
                               help_text="the AE title the site's PACS or modality sends as (-aet), 1 to 16 "
                                         "characters")
    source_address = forms.CharField(max_length=45, required=False, label="Source address",
                                     help_text="optional: when set, associations from any other IP address are "
                                               "refused")

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites
        self.fields["site"].label_from_instance = lambda site: f"{site.number} — {site.name}"


class GatewayPeerEditForm(forms.Form):
    ae_title = forms.CharField(max_length=16, label="Calling AE title")
    source_address = forms.CharField(max_length=45, required=False, label="Source address",
                                     help_text="leave empty to accept any address")
    reason = forms.CharField(max_length=500, help_text="why the sender changes (kept in its history)")


class GatewayPeerActiveForm(forms.Form):
    reason = forms.CharField(max_length=500, help_text="kept in the sender's history")
