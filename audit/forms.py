import datetime as dt

from django import forms

from .selectors import ACTION_FAMILIES, SearchFilters


class TimelineFilterForm(forms.Form):
    family = forms.ChoiceField(label="Show", required=False,
                               choices=[("", "Everything")] + list(ACTION_FAMILIES.items()))
    order = forms.ChoiceField(label="Order", required=False,
                              choices=[("", "Oldest first"), ("desc", "Newest first")])


class SearchForm(forms.Form):
    trial = forms.TypedChoiceField(label="Trial", coerce=int, required=False, empty_value=None)
    site = forms.IntegerField(label="Site id", required=False, min_value=1)
    subject = forms.CharField(label="Subject code", required=False, max_length=64)
    subject_id = forms.IntegerField(label="Subject id", required=False, min_value=1)
    user = forms.CharField(label="User", required=False, max_length=150, help_text="username as recorded")
    action = forms.CharField(label="Action", required=False, max_length=100,
                             help_text="a code (intake.instance_received) or a family (intake)")
    target_type = forms.CharField(label="Object type", required=False, max_length=100,
                                  help_text="e.g. intake.submission")
    target_id = forms.CharField(label="Object id", required=False, max_length=64)
    since = forms.DateField(label="From (UTC)", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="Until (UTC, inclusive)", required=False,
                            widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, trials: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["trial"].choices = [("", "All my trials")] + trials

    def filters(self) -> SearchFilters:
        data = self.cleaned_data

        def start(day):
            return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) if day else None

        return SearchFilters(
            trial_id=data.get("trial"), site_id=data.get("site"), subject_id=data.get("subject_id"),
            subject_code=(data.get("subject") or "").strip(), actor=(data.get("user") or "").strip(),
            action=(data.get("action") or "").strip(), target_type=(data.get("target_type") or "").strip(),
            target_id=(data.get("target_id") or "").strip(), since=start(data.get("since")),
            until=start(data["until"] + dt.timedelta(days=1)) if data.get("until") else None)
