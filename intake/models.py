"""What arrived, through which door, and where it stands.

No identifier from the DICOM header is stored in plain text: original UIDs and
the Patient ID are kept as HMACs with the trial's key (trials.keys), enough to
recognise duplicates, assemble studies across associations and match subjects.
The raw file itself sits in quarantine storage; its sha256 is recorded.
"""

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from trials.models import Site, SiteQualification, Subject, Trial, Visit


class Submission(models.Model):
    """One upload batch, association or STOW-RS request, with per-file results."""

    class Channel(models.TextChoices):
        WEB = "web", "Web upload"
        DICOM = "dicom", "DICOM C-STORE"
        STOWRS = "stowrs", "DICOMweb STOW-RS"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="submissions")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="submissions")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    calling_ae = models.CharField(max_length=16, blank=True)
    remote_address = models.GenericIPAddressField(null=True, blank=True)
    # what the coordinator declared (web portal); the gateway and STOW-RS match instead
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    procedure = models.CharField(max_length=32, blank=True)
    qualification = models.ForeignKey(SiteQualification, on_delete=models.PROTECT, null=True, blank=True,
                                      related_name="submissions", help_text="phantom / test-subject submission")
    declared_rescan = models.BooleanField(default=False)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=list)  # [{"file": ..., "outcome": accepted|duplicate|rejected, "reason": ...}]

    history = HistoricalRecords()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} submission {self.pk} at site {self.site.number}"


class ImagingStudy(models.Model):
    """One version of a study for a subject, visit and procedure (or a phantom, or still unassigned)."""

    class Status(models.TextChoices):
        UNASSIGNED = "unassigned", "Unassigned: awaiting the coordinator"
        RECEIVED = "received", "Received"
        DEIDENTIFYING = "deidentifying", "De-identifying"
        DEIDENTIFIED = "deidentified", "De-identified"
        QC_PENDING = "qc_pending", "QC pending"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="studies")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="studies")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, null=True, blank=True, related_name="studies")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="studies")
    procedure = models.CharField(max_length=32, blank=True)
    qualification = models.ForeignKey(SiteQualification, on_delete=models.PROTECT, null=True, blank=True,
                                      related_name="studies")
    version = models.PositiveIntegerField(default=1)
    supersedes = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="superseded_by")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    study_uid_hash = models.CharField(max_length=64)
    patient_id_hash = models.CharField(max_length=64)
    acquisition_date = models.DateField(null=True, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    unassigned_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "imaging studies"
        constraints = [
            models.UniqueConstraint(fields=["subject", "visit", "procedure", "version"],
                                    condition=models.Q(subject__isnull=False), name="study_version_unique"),
            models.UniqueConstraint(fields=["trial", "study_uid_hash", "version"], name="study_uid_version_unique"),
        ]
        indexes = [models.Index(fields=["site", "status"]), models.Index(fields=["status", "status_changed_at"])]

    def __str__(self) -> str:
        who = self.subject.code if self.subject_id else "unassigned"
        what = f"{self.visit.timepoint} {self.procedure}" if self.visit_id else self.procedure or "study"
        return f"{who} {what} v{self.version}"


class Series(models.Model):
    study = models.ForeignKey(ImagingStudy, on_delete=models.PROTECT, related_name="series")
    series_uid_hash = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["study", "series_number"]
        verbose_name_plural = "series"
        constraints = [models.UniqueConstraint(fields=["study", "series_uid_hash"], name="series_unique")]

    def __str__(self) -> str:
        return f"series {self.series_number} ({self.modality})"


class Instance(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        DEIDENTIFYING = "deidentifying", "De-identifying"
        DEIDENTIFIED = "deidentified", "De-identified"
        FAILED = "failed", "De-identification failed"

    study = models.ForeignKey(ImagingStudy, on_delete=models.PROTECT, related_name="instances")
    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="instances")
    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="instances")
    sop_class_uid = models.CharField(max_length=64)
    sop_uid_hash = models.CharField(max_length=64)
    transfer_syntax_uid = models.CharField(max_length=64)
    raw_key = models.CharField(max_length=255, help_text="object name in quarantine storage")
    raw_sha256 = models.CharField(max_length=64)
    raw_size = models.BigIntegerField()
    deid_key = models.CharField(max_length=255, blank=True, help_text="object name in archive storage")
    deid_sha256 = models.CharField(max_length=64, blank=True)
    deid_size = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    received_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)

    # rows filed in bulk (bulk_create) get no creation record; every later save() is recorded
    history = HistoricalRecords()

    class Meta:
        ordering = ["series", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "sop_uid_hash"], name="instance_unique_in_study")]
        indexes = [models.Index(fields=["status", "status_changed_at"])]

    def __str__(self) -> str:
        return f"instance {self.pk} of {self.study}"


class GatewayPeer(models.Model):
    """A site's DICOM sender: which calling AE title (and optionally source address) belongs to which site."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="gateway_peers")
    ae_title = models.CharField(max_length=16, unique=True)
    source_address = models.GenericIPAddressField(null=True, blank=True,
                                                  help_text="when set, associations from other addresses are refused")
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"{self.ae_title} (site {self.site.number})"
