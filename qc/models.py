"""What QC checked and decided: automated runs with one result per rule (and series), and the analyst's
decision. Results name the rule, what the charter expected, what was measured and the charter version,
so the record shows what was verified, not just that QC happened. Queries are QC's questions to a site
about a study (or a subject's visit when the study is missing), with their threaded conversation and
attachments.
"""

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from intake.models import ImagingStudy, Series
from trials.models import ProtocolVersion, Site, Subject, Trial, Visit


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


class Query(models.Model):
    """A question QC puts to a site about one study, or about a subject's visit when the study is missing.

    Open (or reopened) queries wait on the site; an answered one waits on QC, who closes or reopens it.
    """

    class Category(models.TextChoices):
        MISSING_SERIES = "missing_series", "Missing series"
        PROTOCOL_DEVIATION = "protocol_deviation", "Protocol deviation"
        WRONG_SUBJECT_VISIT = "wrong_subject_visit", "Wrong subject / visit"
        PHI_FOUND = "phi_found", "PHI found"
        IMAGE_QUALITY = "image_quality", "Image quality"
        MISSING_TIMEPOINT = "missing_timepoint", "Missing timepoint"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ANSWERED = "answered", "Answered"
        CLOSED = "closed", "Closed"
        REOPENED = "reopened", "Reopened"

    WAITING_ON_SITE = (Status.OPEN, Status.REOPENED)

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="qc_queries")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="qc_queries")
    study = models.ForeignKey(ImagingStudy, on_delete=models.PROTECT, null=True, blank=True, related_name="qc_queries")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    procedure = models.CharField(max_length=32, blank=True)
    category = models.CharField(max_length=24, choices=Category.choices)
    text = models.TextField()
    due_date = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    raised_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="+", help_text="empty: raised automatically")
    raised_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="+")
    # the rescan the site's answer points to (a later version of the same subject/visit/procedure)
    rescan = models.ForeignKey(ImagingStudy, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    overdue = models.BooleanField(default=False, help_text="past its due date while waiting on the site")
    escalated_at = models.DateTimeField(null=True, blank=True)
    automatic = models.BooleanField(default=False, help_text="raised by the missing-timepoint sweep")

    history = HistoricalRecords()

    class Meta:
        ordering = ["-raised_at", "-pk"]
        verbose_name_plural = "queries"
        indexes = [models.Index(fields=["status", "due_date"]), models.Index(fields=["site", "status"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(study__isnull=False) | models.Q(subject__isnull=False),
                                   name="query_about_a_study_or_subject"),
            # the missing-timepoint sweep raises one query per visit and procedure, however often it runs
            models.UniqueConstraint(fields=["visit", "procedure"], condition=models.Q(automatic=True),
                                    name="query_auto_once_per_visit_procedure"),
        ]

    def __str__(self) -> str:
        return f"Query {self.pk} ({self.get_category_display()})"

    @property
    def waiting_on_site(self) -> bool:
        return self.status in self.WAITING_ON_SITE


class QueryMessage(models.Model):
    """One entry of a query's conversation: a message, the site's answer, or QC closing / reopening it."""

    class Side(models.TextChoices):
        QC = "qc", "QC"
        SITE = "site", "Site"
        SYSTEM = "system", "System"

    class Kind(models.TextChoices):
        MESSAGE = "message", "Message"
        ANSWER = "answer", "Answer"
        CLOSE = "close", "Closed"
        REOPEN = "reopen", "Reopened"

    query = models.ForeignKey(Query, on_delete=models.PROTECT, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                               related_name="+")
    side = models.CharField(max_length=6, choices=Side.choices)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.MESSAGE)
    text = models.TextField(blank=True)
    rescan = models.ForeignKey(ImagingStudy, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["query", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on query {self.query_id} by {self.get_side_display()}"


class QueryAttachment(models.Model):
    """A file added to a query (a scanner report, a screenshot), kept in the default store under a random key."""

    query = models.ForeignKey(Query, on_delete=models.PROTECT, related_name="attachments")
    message = models.ForeignKey(QueryMessage, on_delete=models.PROTECT, null=True, blank=True,
                                related_name="attachments")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200, help_text="the file name as uploaded (shown, never used as a key)")
    content_type = models.CharField(max_length=100, blank=True)
    key = models.CharField(max_length=200, unique=True)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["query", "uploaded_at", "pk"]

    def __str__(self) -> str:
        return self.name
