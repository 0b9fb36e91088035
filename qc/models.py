"""What QC checked and decided: automated runs with one result per rule (and series), and the analyst's
decision. Results name the rule, what the charter expected, what was measured and the charter version,
so the record shows what was verified, not just that QC happened. Queries (the site conversation) will
live here too; they are not built yet.
"""

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from intake.models import ImagingStudy, Series
from trials.models import ProtocolVersion


class QcRun(models.Model):
    """One pass of every registered check over a study, as it stood (instances, charter) at that moment."""

    class Trigger(models.TextChoices):
        DEIDENTIFIED = "deidentified", "Study de-identified"
        SWEEPER = "sweeper", "Re-enqueued by the sweeper"
        MANUAL = "manual", "Run by hand"

    study = models.ForeignKey(ImagingStudy, on_delete=models.PROTECT, related_name="qc_runs")
    protocol_version = models.ForeignKey(ProtocolVersion, on_delete=models.PROTECT, null=True, blank=True,
                                         related_name="+")
    charter_version = models.CharField(max_length=30, blank=True, help_text="the protocol version's label")
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    # the instances checked: a rerun with the same set is the same run (idempotent)
    instance_count = models.PositiveIntegerField(default=0)
    instances_digest = models.CharField(max_length=64)
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    warned = models.PositiveIntegerField(default=0)
    # per series, the header values the checks read (what the study page shows beside the results)
    series_metadata = models.JSONField(default=list)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    history = HistoricalRecords()

    class Meta:
        ordering = ["study", "-started_at", "-pk"]
        get_latest_by = ["started_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["study", "instances_digest", "protocol_version"],
                                               name="qcrun_once_per_content")]

    def __str__(self) -> str:
        return f"QC run {self.pk} of study {self.study_id}: {self.failed} failed, {self.warned} warnings"


class CheckResult(models.Model):
    class Outcome(models.TextChoices):
        PASS = "pass", "Pass"
        WARN = "warn", "Warning"
        FAIL = "fail", "Fail"

    run = models.ForeignKey(QcRun, on_delete=models.PROTECT, related_name="results")
    rule = models.CharField(max_length=64)
    series = models.ForeignKey(Series, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    expected = models.CharField(max_length=300, blank=True)
    measured = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=4, choices=Outcome.choices)
    message = models.TextField(blank=True)
    charter_version = models.CharField(max_length=30, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["run", "rule", "series__series_number", "pk"]
        indexes = [models.Index(fields=["run", "outcome"])]

    def __str__(self) -> str:
        return f"{self.rule}: {self.outcome}"


class QcDecision(models.Model):
    """An analyst's accept or reject of one study version."""

    class Decision(models.TextChoices):
        ACCEPT = "accept", "Accepted"
        REJECT = "reject", "Rejected"

    study = models.ForeignKey(ImagingStudy, on_delete=models.PROTECT, related_name="qc_decisions")
    run = models.ForeignKey(QcRun, on_delete=models.PROTECT, null=True, blank=True, related_name="decisions",
                            help_text="the automated results the analyst saw")
    analyst = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    reason = models.TextField(blank=True, help_text="required to reject; a note when accepting")
    superseded = models.JSONField(default=list, help_text="ids of earlier versions this accept superseded")
    decided_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-decided_at"]
        # one decision per study version: the status machine allows no second one, this backs it up
        constraints = [models.UniqueConstraint(fields=["study"], name="qcdecision_one_per_study")]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} study {self.study_id}"
