import json

from django import forms

from .models import Role, Scanner, Site, Trial


class DateInput(forms.DateInput):
    input_type = "date"


class ProtocolVersionForm(forms.Form):
    label = forms.CharField(max_length=30, help_text="e.g. 2.0")
    effective_date = forms.DateField(widget=DateInput)
    approved_on = forms.DateField(widget=DateInput, help_text="ethics / regulatory approval date")
    approved_by = forms.CharField(max_length=200, required=False)
    change_summary = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    charter = forms.CharField(widget=forms.Textarea(attrs={"rows": 24, "class": "code", "spellcheck": "false"}),
                              help_text="The imaging charter as JSON: procedures and visits.")

    def clean_charter(self):
        try:
            charter = json.loads(self.cleaned_data["charter"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
        if not isinstance(charter, dict):
            raise forms.ValidationError("the charter must be a JSON object with procedures and visits")
        return charter


class TrialForm(forms.Form):
    title = forms.CharField(max_length=300)
    sponsor = forms.CharField(max_length=200)
    phase = forms.ChoiceField(choices=Trial.Phase.choices)
    status = forms.ChoiceField(choices=Trial.Status.choices)
    sponsor_blinded = forms.BooleanField(required=False, label="Sponsor viewers are blinded to treatment arm")
    reason = forms.CharField(max_length=500, help_text="why the trial record changes (kept in its history)")


class SiteForm(forms.Form):
    number = forms.CharField(max_length=20)
    name = forms.CharField(max_length=200)
    country = forms.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, e.g. DE")
    time_zone = forms.CharField(max_length=64, initial="UTC", help_text="IANA name, e.g. Europe/Berlin")


class ScannerForm(forms.Form):
    modality = forms.CharField(max_length=16, help_text="DICOM Modality, e.g. CT or MR")
    manufacturer = forms.CharField(max_length=64)
    model = forms.CharField(max_length=64, label="Model name")
    serial = forms.CharField(max_length=64, label="Serial number")
    software_version = forms.CharField(max_length=64, required=False)
    station_name = forms.CharField(max_length=16, required=False)


class QualificationRequestForm(forms.Form):
    scanner = forms.ModelChoiceField(queryset=Scanner.objects.none())
    procedure = forms.ChoiceField()

    def __init__(self, *args, site: Site, procedures: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scanner"].queryset = Scanner.objects.filter(site=site, active=True)
        self.fields["procedure"].choices = procedures


class QualificationSubmitForm(forms.Form):
    study_reference = forms.CharField(max_length=128, help_text="accession or study ID of the phantom scan")


class QualificationDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")], widget=forms.RadioSelect)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                             help_text="required when rejecting")


class TrainingForm(forms.Form):
    user = forms.ChoiceField(label="Trained user")
    topic = forms.CharField(max_length=200)
    trained_on = forms.DateField(widget=DateInput)
    trainer = forms.CharField(max_length=200)
    evidence = forms.FileField(required=False, help_text="certificate or signed attendance sheet")

    def __init__(self, *args, users: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].choices = users


class EnrollForm(forms.Form):
    code = forms.CharField(max_length=32, label="Subject code", help_text="e.g. 101-0004")
    patient_id = forms.CharField(max_length=64, label="Local patient ID",
                                 help_text="as in your PACS; stored only as a keyed hash for matching scans")
    enrollment_date = forms.DateField(widget=DateInput)


class MembershipForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)
    site = forms.ModelChoiceField(queryset=Site.objects.none(), required=False,
                                  help_text="site coordinators only")

    def __init__(self, *args, trial, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = Site.objects.filter(trial=trial)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500)
