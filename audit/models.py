"""The audit trail: append-only, hash-chained events.

AuditEvent holds no foreign key into domain tables, so no delete of a trial,
study or read can cascade into the record of what happened to it. The actor is
a protected reference to the user: a user with audit history cannot be deleted.

Rows are inserted unsealed by ``audit_record`` inside the caller's transaction.
A single sealer (``audit.chain.chain_seal``) later assigns each committed row
its place in the chain (``seq``) and ``hash = sha256(prev_hash + canonical row)``.
A PostgreSQL trigger (migration 0002) refuses DELETE, and UPDATE other than
sealing an unsealed row once.
"""

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    occurred_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                              related_name="+")
    actor_label = models.CharField(max_length=150, blank=True)  # username at the time
    actor_role = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    trial_id = models.BigIntegerField(null=True, blank=True)
    site_id = models.BigIntegerField(null=True, blank=True)
    subject_id = models.BigIntegerField(null=True, blank=True)
    subject_code = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    # the seal, set once by the sealer
    seq = models.BigIntegerField(null=True, blank=True, unique=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)
    sealed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [
            models.Index(fields=["trial_id", "occurred_at"], name="audit_trial_time"),
            # the patient timeline's keyset: WHERE subject_id = ? AND (occurred_at, id) > (?, ?) ORDER BY 2, 3
            models.Index(fields=["subject_id", "occurred_at", "id"], name="audit_subject_keyset"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
            models.Index(fields=["action", "occurred_at"], name="audit_action_time"),
            models.Index(fields=["id"], name="audit_unsealed", condition=models.Q(seq__isnull=True)),
            # audit search: by user, by site, and by action within a trial (see bench/README.md for the plans)
            models.Index(fields=["actor_label", "occurred_at"], name="audit_actor_time"),
            models.Index(fields=["site_id", "occurred_at"], name="audit_site_time"),
            # pattern ops: serves action = 'x' and the family prefix action LIKE 'intake.%' alike
            models.Index(fields=["trial_id", "action", "occurred_at"], name="audit_trial_action_time",
                         opclasses=["int8_ops", "varchar_pattern_ops", "timestamptz_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_label or 'system'} {self.action}"

    @property
    def sealed(self) -> bool:
        return self.seq is not None


class ElectronicSignature(models.Model):
    """A 21 CFR Part 11 signature: who (printed name), when (UTC), what it means, and the sha256 of the exact
    content signed. Written once by ``audit.signatures.signature_sign``; a change to the signed record shows
    as a hash that no longer matches (``signature_verify``), never as an edit of this row."""

    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signer_username = models.CharField(max_length=150)
    printed_name = models.CharField(max_length=300)
    meaning = models.CharField(max_length=200)
    record_type = models.CharField(max_length=100)
    record_id = models.CharField(max_length=64)
    content_sha256 = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    audit_event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["signed_at", "id"]
        indexes = [models.Index(fields=["record_type", "record_id", "signed_at"], name="signature_record")]

    def __str__(self) -> str:
        return f"{self.printed_name}: {self.meaning} ({self.record_type} {self.record_id})"


class PdfExport(models.Model):
    """A patient-timeline PDF too large to make within a request: made by a Celery task (``audit.pdf_export``)
    and kept in storage for its requester. The export's audit event (chain head, verification) is recorded
    once, when the rows are read; a redelivered task reuses it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Being prepared"
        RUNNING = "running", "Being prepared"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    # the file holds the subject's events up to this moment, whenever the task runs
    as_of = models.DateTimeField()
    trial_id = models.BigIntegerField()
    site_id = models.BigIntegerField(null=True, blank=True)
    subject_id = models.BigIntegerField()
    subject_code = models.CharField(max_length=64)
    family = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    storage_key = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    audit_event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["status", "requested_at"], name="audit_pdfexport_status")]

    def __str__(self) -> str:
        return f"PDF export {self.pk} of {self.subject_code} ({self.get_status_display()})"

    @property
    def pending(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)
