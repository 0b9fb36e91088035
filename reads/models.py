"""Blinded independent central review: the reader pool, read tasks, versioned reads, adjudication, BICR result.

A read is never edited once signed: a correction is a new version that names the one it corrects and why.
A task that must be read again (its study was superseded, or its reader left) is kept, marked with the
reason, and replaced by a new task; nothing a reader signed is ever deleted.
"""

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from audit.models import ElectronicSignature
from trials.models import ProtocolVersion, Subject, Trial, Visit

RECIST_11 = "RECIST 1.1"


class ReadSettings(models.Model):
    """A trial's reading rules: criteria, engine options, and what disagreement sends a subject to adjudication."""

    trial = models.OneToOneField(Trial, on_delete=models.PROTECT, related_name="read_settings")
    criteria = models.CharField(max_length=30, default=RECIST_11)
    adjudicate_on_overall = models.BooleanField(default=True, help_text="overall response at any timepoint")
    adjudicate_on_bor = models.BooleanField(default=True, help_text="best overall response")
    adjudicate_on_pd_date = models.BooleanField(default=True, help_text="date of progression")
    confirmation_required = models.BooleanField(default=False)
    min_confirm_days = models.PositiveIntegerField(default=28)
    max_ne_between = models.PositiveIntegerField(default=1)
    min_sd_days = models.PositiveIntegerField(default=42)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"read settings of {self.trial.protocol_number}"

    def engine_options(self) -> dict:
        return {"confirmation_required": self.confirmation_required, "min_confirm_days": self.min_confirm_days,
                "max_ne_between": self.max_ne_between, "min_sd_days": self.min_sd_days, "reference_date": None}


class Reader(models.Model):
    """A user in a trial's reader pool (primary readers and adjudicators alike)."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="readers")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reader_records")
    # criteria the reader is qualified for, e.g. ["RECIST 1.1"]
    qualifications = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    added_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivated_reason = models.TextField(blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["trial", "pk"]
        constraints = [models.UniqueConstraint(fields=["trial", "user"], name="reader_unique")]

    def __str__(self) -> str:
        return f"reader {self.user.get_username()} in {self.trial.protocol_number}"


class ReaderTraining(models.Model):
    """Evidence that a reader was trained on one protocol version's imaging charter.

    Kept here rather than in trials.TrainingRecord, which is bound to a site: readers are blinded to sites.
    """

    reader = models.ForeignKey(Reader, on_delete=models.PROTECT, related_name="trainings")
    protocol_version = models.ForeignKey(ProtocolVersion, on_delete=models.PROTECT, related_name="+")
    topic = models.CharField(max_length=200)
    trained_on = models.DateField()
    trainer = models.CharField(max_length=200)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["reader", "-trained_on"]

    def __str__(self) -> str:
        return f"{self.reader} trained on {self.protocol_version}"


class ReadTask(models.Model):
    """One reader's read of one subject timepoint. Slot A/B: the two independent primary reads."""

    class Slot(models.TextChoices):
        A = "A", "Reader A"
        B = "B", "Reader B"

    class Status(models.TextChoices):
        OPEN = "open", "Not started"
        IN_PROGRESS = "in_progress", "In progress"
        SIGNED = "signed", "Signed"
        # replaced by a new task; kept with the reason
        SUPERSEDED = "superseded", "Superseded: re-read"
        REASSIGNED = "reassigned", "Reassigned"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="read_tasks")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="read_tasks")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="read_tasks")
    reader = models.ForeignKey(Reader, on_delete=models.PROTECT, related_name="tasks")
    slot = models.CharField(max_length=1, choices=Slot.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    # the scan date as the reader's images carry it (shifted by the subject's de-identification offset)
    scan_date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    replaced_at = models.DateTimeField(null=True, blank=True)
    replaced_reason = models.TextField(blank=True)

    history = HistoricalRecords()

    LIVE = (Status.OPEN, Status.IN_PROGRESS, Status.SIGNED)

    class Meta:
        ordering = ["subject", "visit__nominal_date", "slot", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["visit", "slot"], condition=models.Q(status__in=["open", "in_progress",
                                                                                              "signed"]),
                                    name="readtask_one_live_per_slot"),
        ]
        indexes = [models.Index(fields=["reader", "status"])]

    def __str__(self) -> str:
        return f"read {self.slot} of {self.subject.code} {self.visit.timepoint}"

    @property
    def live(self) -> bool:
        return self.status in self.LIVE


class Read(models.Model):
    """One version of a task's assessment: the lesions as the engine takes them, and its computed responses.

    ``lesions`` is the engine's input for this timepoint: at baseline ``{"targets": [...], "non_targets": [...]}``,
    at a follow-up ``{"targets": {...}, "non_target": ... or "non_targets": {...}, "new_lesions": ...}``; the date
    is the task's scan date. ``responses`` is the engine's output over the reader's signed history up to and
    including this timepoint, as computed when it was signed.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SIGNED = "signed", "Signed"
        CORRECTED = "corrected", "Corrected by a later version"
        SUPERSEDED = "superseded", "Superseded: task replaced"

    task = models.ForeignKey(ReadTask, on_delete=models.PROTECT, related_name="reads")
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    lesions = models.JSONField(default=dict)
    responses = models.JSONField(default=dict, blank=True)
    overall = models.CharField(max_length=16, blank=True)
    corrects = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    correction_reason = models.TextField(blank=True)
    signature = models.OneToOneField(ElectronicSignature, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    signed_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["task", "version"]
        constraints = [
            models.UniqueConstraint(fields=["task", "version"], name="read_version_unique"),
            models.UniqueConstraint(fields=["task"], condition=models.Q(status__in=["draft", "signed"]),
                                    name="read_one_current_per_task"),
        ]

    def __str__(self) -> str:
        return f"{self.task} v{self.version}"

    @property
    def record_id(self) -> str:
        return record_id_for(task_id=self.task_id, version=self.version)


def record_id_for(*, task_id: int, version: int) -> str:
    """The id a read's signature names: the task and version, known before the row exists."""
    return f"{task_id}.v{version}"


class WorklistOrder(models.Model):
    """The randomization record: the seed and the permutation of a reader's subjects it gave."""

    reader = models.ForeignKey(Reader, on_delete=models.PROTECT, related_name="worklist_orders")
    seed = models.BigIntegerField()
    # subject ids, in the order the reader's worklist presents them
    order = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["reader", "-created_at", "-pk"]

    def __str__(self) -> str:
        return f"worklist order {self.pk} of {self.reader}"


class Adjudication(models.Model):
    """The readers disagreed on a subject: an adjudicator picks read A or B with a rationale, and signs."""

    class Status(models.TextChoices):
        OPEN = "open", "Awaiting the adjudicator"
        RESOLVED = "resolved", "Resolved"
        SUPERSEDED = "superseded", "Superseded: the reads changed"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="adjudications")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="adjudications")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    # [{"kind": "overall"|"bor"|"pd_date", "visit": code or "", "A": value, "B": value}]
    triggers = models.JSONField(default=list)
    # the signed reads compared, per slot (ids), timepoint by timepoint in visit order
    reads_a = models.JSONField(default=list)
    reads_b = models.JSONField(default=list)
    visits = models.JSONField(default=list, help_text="timepoint codes compared")
    adjudicator = models.ForeignKey(Reader, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="adjudications")
    selected = models.CharField(max_length=1, choices=ReadTask.Slot.choices, blank=True)
    rationale = models.TextField(blank=True)
    signature = models.OneToOneField(ElectronicSignature, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["trial", "created_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["subject"], condition=models.Q(status="open"),
                                               name="adjudication_one_open_per_subject")]

    def __str__(self) -> str:
        return f"adjudication {self.pk} of {self.subject.code}"


class BicrResult(models.Model):
    """The BICR result of one subject timepoint: the read it comes from (agreement or adjudication)."""

    class Source(models.TextChoices):
        AGREEMENT = "agreement", "Readers agreed"
        ADJUDICATION = "adjudication", "Selected at adjudication"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="bicr_results")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="bicr_results")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="+")
    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=12, choices=Source.choices)
    adjudication = models.ForeignKey(Adjudication, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    overall = models.CharField(max_length=16)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["subject", "visit__nominal_date"]
        constraints = [models.UniqueConstraint(fields=["visit"], name="bicr_one_per_visit")]

    def __str__(self) -> str:
        return f"BICR {self.subject.code} {self.visit.timepoint}: {self.overall}"


class MeasurementReport(models.Model):
    """A signed read's measurements on one study, as a DICOM SR (TID 1500) stored in the archive with the study.

    Planned (pending) in the transaction that signs or corrects the read, made after commit by the task
    ``reads.measurement_report_make``; a correction gets its own reports and the earlier ones stay. The UIDs
    are fixed when the row is planned, so a retried task writes the same object.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Being made"
        STORED = "stored", "Stored"
        FAILED = "failed", "Could not be made"

    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="measurement_reports")
    study = models.ForeignKey("intake.ImagingStudy", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # the de-identified study the report belongs to, and the report's own series and SOP instance
    study_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64)
    sop_uid = models.CharField(max_length=64, unique=True)
    archive_key = models.CharField(max_length=255, blank=True, help_text="object name in archive storage")
    sha256 = models.CharField(max_length=64, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    stored_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["read", "study_uid"]
        constraints = [models.UniqueConstraint(fields=["read", "study"], name="measurementreport_one_per_study")]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"measurement report of {self.read} ({self.get_status_display().lower()})"
