"""Trials, their sites, protocol versions and who holds which role in them."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords


class Role(models.TextChoices):
    TRIAL_MANAGER = "trial_manager", "Trial manager"
    SITE_COORDINATOR = "site_coordinator", "Site coordinator"
    QC_ANALYST = "qc_analyst", "QC analyst"
    READER = "reader", "Reader"
    ADJUDICATOR = "adjudicator", "Adjudicator"
    SPONSOR_VIEWER = "sponsor_viewer", "Sponsor viewer"
    AUDITOR = "auditor", "Auditor"


SITE_SCOPED_ROLES = frozenset({Role.SITE_COORDINATOR})


class Trial(models.Model):
    class Status(models.TextChoices):
        SETUP = "setup", "In set-up"
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"

    class Phase(models.TextChoices):
        PHASE_1 = "1", "Phase I"
        PHASE_2 = "2", "Phase II"
        PHASE_3 = "3", "Phase III"
        PHASE_4 = "4", "Phase IV"

    protocol_number = models.CharField(max_length=50, unique=True)
    title = models.CharField(max_length=300)
    sponsor = models.CharField(max_length=200)
    phase = models.CharField(max_length=2, choices=Phase.choices, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SETUP)
    # blinding: who must not learn what (readers are always blinded to site and arm)
    sponsor_blinded = models.BooleanField(default=True, help_text="Sponsor viewers never see per-patient arm.")
    readers_blinded_to_site = models.BooleanField(default=True)
    # names this trial's keys (trials.keys); not secret by itself, never changes
    key_id = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["protocol_number"]

    def __str__(self) -> str:
        return f"{self.protocol_number} {self.title}"


class ProtocolVersion(models.Model):
    """One approved version of the protocol and its imaging charter. Released versions are never edited:
    an amendment is a new version (see trials.services.protocol_version_release)."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="protocol_versions")
    label = models.CharField(max_length=30)
    effective_date = models.DateField()
    approved_on = models.DateField(help_text="Date of ethics/regulatory approval of this version.")
    approved_by = models.CharField(max_length=200, blank=True, help_text="Approving body or signatory.")
    change_summary = models.TextField(blank=True)
    is_current = models.BooleanField(default=False)
    # the imaging charter: procedures with acquisition requirements and the visit schedule (trials.charter)
    charter = models.JSONField()
    released_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["trial", "effective_date", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "label"], name="protocolversion_label_unique"),
            models.UniqueConstraint(fields=["trial"], condition=models.Q(is_current=True),
                                    name="protocolversion_one_current"),
        ]

    def __str__(self) -> str:
        return f"{self.trial.protocol_number} v{self.label}"

    def save(self, *args, **kwargs):
        if self.pk is not None and kwargs.get("update_fields") != ["is_current"]:
            raise ValueError("a released protocol version is never edited; release a new version")
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from .charter import charter_parse

        try:
            charter_parse(self.charter)
        except ValidationError as exc:
            raise ValidationError({"charter": [f"{path}: {msg}" for path, msgs in exc.message_dict.items()
                                               for msg in msgs]}) from exc

    @property
    def parsed_charter(self):
        from .charter import charter_parse

        return charter_parse(self.charter)


class Site(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending activation"
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="sites")
    number = models.CharField(max_length=20)
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    time_zone = models.CharField(max_length=64, default="UTC")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)

    history = HistoricalRecords()

    class Meta:
        ordering = ["trial", "number"]
        constraints = [models.UniqueConstraint(fields=["trial", "number"], name="site_number_unique")]

    def __str__(self) -> str:
        return f"Site {self.number} {self.name}"


class Membership(models.Model):
    """A user's role in one trial; site coordinators are bound to one site."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships")
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, null=True, blank=True, related_name="memberships")
    granted_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["trial", "role", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "trial", "role", "site"], name="membership_unique",
                                    nulls_distinct=False),
            models.CheckConstraint(
                condition=models.Q(role=Role.SITE_COORDINATOR, site__isnull=False)
                | (~models.Q(role=Role.SITE_COORDINATOR) & models.Q(site__isnull=True)),
                name="membership_site_iff_coordinator",
            ),
        ]

    def __str__(self) -> str:
        where = f" at site {self.site.number}" if self.site_id else ""
        return f"{self.user} as {self.get_role_display()} in {self.trial.protocol_number}{where}"

    def clean(self) -> None:
        if self.role in SITE_SCOPED_ROLES and self.site_id is None:
            raise ValidationError({"site": "a site coordinator must be bound to a site"})
        if self.role not in SITE_SCOPED_ROLES and self.site_id is not None:
            raise ValidationError({"site": "only site coordinators are bound to a site"})
        if self.site_id is not None and self.site.trial_id != self.trial_id:
            raise ValidationError({"site": "the site belongs to another trial"})


class Scanner(models.Model):
    """A site's imaging device, identified as its DICOM headers identify it."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="scanners")
    manufacturer = models.CharField(max_length=64, help_text="(0008,0070) Manufacturer")
    model = models.CharField(max_length=64, help_text="(0008,1090) Manufacturer's Model Name")
    serial = models.CharField(max_length=64, help_text="(0018,1000) Device Serial Number")
    software_version = models.CharField(max_length=64, blank=True, help_text="(0018,1020) Software Versions")
    station_name = models.CharField(max_length=16, blank=True, help_text="(0008,1010) Station Name")
    modality = models.CharField(max_length=16, help_text="(0008,0060) Modality, e.g. CT or MR")
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["site", "modality", "manufacturer", "model"]
        constraints = [models.UniqueConstraint(fields=["site", "manufacturer", "model", "serial"],
                                               name="scanner_identity_unique")]

    def __str__(self) -> str:
        return f"{self.manufacturer} {self.model} (SN {self.serial})"

    def identity(self) -> dict[str, str]:
        return {"manufacturer": self.manufacturer, "model": self.model, "serial": self.serial,
                "software_version": self.software_version}


class SiteQualification(models.Model):
    """A site's qualification for one charter procedure on one scanner under one protocol version."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending: awaiting the test scan"
        SUBMITTED = "submitted", "Submitted for review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        INVALIDATED = "invalidated", "Invalidated"

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="qualifications")
    scanner = models.ForeignKey(Scanner, on_delete=models.PROTECT, related_name="qualifications")
    protocol_version = models.ForeignKey(ProtocolVersion, on_delete=models.PROTECT, related_name="qualifications")
    procedure = models.CharField(max_length=32, help_text="Charter procedure code")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    # the phantom or test-subject study judged; a study reference until intake links the study itself
    study_reference = models.CharField(max_length=128, blank=True)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="+")
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    invalidated_at = models.DateTimeField(null=True, blank=True)
    invalidated_reason = models.TextField(blank=True)
    # scanner identity as qualified: a scan from a device that differs invalidates the qualification
    scanner_identity = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["site", "procedure", "-created_at"]
        constraints = [
            # one live qualification per site, scanner, version and procedure; closed ones stay as record
            models.UniqueConstraint(
                fields=["site", "scanner", "protocol_version", "procedure"],
                condition=models.Q(status__in=["pending", "submitted", "approved"]),
                name="qualification_one_live",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site} {self.procedure} on {self.scanner} ({self.get_status_display()})"


def training_evidence_path(instance, filename: str) -> str:
    return f"training/{instance.site.trial_id}/{instance.site_id}/{filename}"


class TrainingRecord(models.Model):
    """Evidence that a site user was trained on a protocol version."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_records")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="training_records")
    protocol_version = models.ForeignKey(ProtocolVersion, on_delete=models.PROTECT, related_name="training_records")
    topic = models.CharField(max_length=200, help_text="What was trained, e.g. 'Imaging manual v2 and upload'")
    trained_on = models.DateField()
    trainer = models.CharField(max_length=200)
    evidence = models.FileField(upload_to=training_evidence_path, blank=True)
    evidence_sha256 = models.CharField(max_length=64, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["site", "user", "-trained_on"]

    def __str__(self) -> str:
        return f"{self.user} trained on {self.protocol_version} ({self.trained_on:%Y-%m-%d})"


class Subject(models.Model):
    """A trial patient, known everywhere by a pseudonymous code. No plaintext identifier is stored."""

    class Status(models.TextChoices):
        SCREENING = "screening", "Screening"
        ENROLLED = "enrolled", "Enrolled"
        WITHDRAWN = "withdrawn", "Withdrawn"
        COMPLETED = "completed", "Completed"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="subjects")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="subjects")
    code = models.CharField(max_length=32, help_text="Pseudonym shown everywhere, e.g. 101-0001")
    # HMAC-SHA256 of the site's local patient ID with the trial's key (trials.keys): matches incoming DICOM
    patient_id_hash = models.CharField(max_length=64)
    enrollment_date = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ENROLLED)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["trial", "code"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "code"], name="subject_code_unique"),
            models.UniqueConstraint(fields=["trial", "patient_id_hash"], name="subject_patient_unique"),
        ]

    def __str__(self) -> str:
        return self.code


class SubjectArm(models.Model):
    """Treatment arm, kept apart from Subject so that no blinded query can reach it by accident."""

    subject = models.OneToOneField(Subject, on_delete=models.PROTECT, related_name="arm_assignment")
    arm = models.CharField(max_length=100)
    assigned_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"arm of {self.subject}"


class Visit(models.Model):
    """A subject's timepoint, with the window its scans are expected in (from enrollment and the charter)."""

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="visits")
    timepoint = models.CharField(max_length=32, help_text="Charter visit code, e.g. BL or W6")
    label = models.CharField(max_length=100)
    nominal_date = models.DateField()
    window_start = models.DateField()
    window_end = models.DateField()
    procedures = models.JSONField(default=list)
    protocol_version = models.ForeignKey(ProtocolVersion, on_delete=models.PROTECT, related_name="+")

    history = HistoricalRecords()

    class Meta:
        ordering = ["subject", "nominal_date"]
        constraints = [models.UniqueConstraint(fields=["subject", "timepoint"], name="visit_unique")]

    def __str__(self) -> str:
        return f"{self.subject.code} {self.label}"


class SiteNotice(models.Model):
    """A message to a site's coordinators (qualification invalidated, query raised, ...)."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="notices")
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                                        blank=True, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.subject
