"""De-identification profiles (versioned per trial) and the record of every instance de-identified.

A profile version is never edited: changing a trial's de-identification creates
version n+1 (deid.services.profile_create_version), and every DeidRecord names the
version it was made with. Records hold counts, hashes, object keys and attribute
tags, never a value read from the original file.
"""

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from intake.models import Instance
from trials.models import Trial


class DeidProfile(models.Model):
    """One version of a trial's de-identification: Basic Profile options, allowlist, pixel regions, retention."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="deid_profiles")
    version = models.PositiveIntegerField()
    # option names from deid.engine.OPTIONS, sorted
    options = models.JSONField(default=list)
    # [[private creator, element offset 0-255], ...]: kept under retain_safe_private
    safe_private = models.JSONField(default=list)
    # [{"manufacturer": "", "model": "", "rows": null, "columns": null, "boxes": [[x, y, w, h], ...]}, ...]:
    # blank / null fields match anything; used under clean_pixel_data
    pixel_regions = models.JSONField(default=list)
    # OCR of files routed to pixel review (deid.engine.pixel_review_reasons), after the regions are blanked:
    # text still read in the output holds the file for QC review. Off for trials whose ultrasound shows
    # plain anatomy Tesseract keeps misreading (regions then carry the whole burden).
    ocr_text_review = models.BooleanField(
        default=True,
        help_text="read burned-in annotation, secondary capture, ultrasound and screen-capture files with OCR "
                  "after pixel cleaning, and hold the file for QC review when text remains")
    ocr_min_confidence = models.PositiveSmallIntegerField(
        default=70, help_text="Tesseract word confidence (0-100) from which a word counts as text")
    purge_raw_after_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="delete the raw file from quarantine this many days after its output is verified "
                  "(0: at the next purge run); empty: keep raw files")
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["trial", "-version"]
        constraints = [models.UniqueConstraint(fields=["trial", "version"], name="deidprofile_version_unique")]

    def __str__(self) -> str:
        return f"{self.trial.protocol_number} de-identification profile v{self.version}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("a de-identification profile version is never edited; create a new version")
        super().save(*args, **kwargs)


class DeidRecord(models.Model):
    """One instance de-identified (or held, or refused) under one profile version."""

    class Outcome(models.TextChoices):
        RELEASED = "released", "Released to the archive"
        HELD = "held", "Held for QC review"
        ERROR = "error", "Refused: cannot be de-identified as asked"
        REJECTED = "rejected", "Held, then rejected by QC review"

    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="deid_records")
    profile = models.ForeignKey(DeidProfile, on_delete=models.PROTECT, related_name="records")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    # what the engine did: {"X": n, "Z": n, "D": n, "K": n, "C": n, "U": n}
    action_counts = models.JSONField(default=dict)
    removed_private = models.PositiveIntegerField(default=0)
    uids_mapped = models.PositiveIntegerField(default=0)
    dates_shifted = models.PositiveIntegerField(default=0)
    pixel_boxes = models.PositiveIntegerField(default=0, help_text="pixel-clean rectangles applied")
    duration_ms = models.PositiveIntegerField(default=0)
    verification_passed = models.BooleanField(null=True, help_text="empty when the engine refused the instance")
    # attribute tags and keywords only ("(0010,0030) PatientBirthDate: present, action X"): never a value
    findings = models.TextField(blank=True)
    raw_sha256 = models.CharField(max_length=64)
    output_storage = models.CharField(max_length=16, blank=True, help_text="archive (released) or quarantine (held)")
    output_key = models.CharField(max_length=255, blank=True)
    output_sha256 = models.CharField(max_length=64, blank=True)
    output_size = models.BigIntegerField(null=True, blank=True)
    # the pseudonymous UIDs of the output, for the trial's mapping export
    # text OCR read in the output's pixels after cleaning: [{"frame", "x", "y", "width", "height",
    # "confidence", "chars"}, ...] in pixels from the top-left; never the text itself (it may be PHI)
    text_boxes = models.JSONField(default=list, blank=True)
    # QC review of a held output (deid.services.held_release / held_reject)
    held_key = models.CharField(max_length=255, blank=True,
                                help_text="where the held output waits in quarantine (kept after review)")
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_reason = models.TextField(blank=True)
    study_uid = models.CharField(max_length=64, blank=True)
    series_uid = models.CharField(max_length=64, blank=True)
    sop_uid = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    raw_purged_at = models.DateTimeField(null=True, blank=True)

    # simple-history's records have an ``instance`` attribute of their own; the record's id ties them to
    # the row, and which instance a record is about never changes
    history = HistoricalRecords(excluded_fields=["instance"])

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["instance", "profile"], name="deidrecord_one_per_version")]
        indexes = [models.Index(fields=["outcome", "raw_purged_at"])]

    def __str__(self) -> str:
        return f"de-identification of instance {self.instance_id} (profile v{self.profile.version}): {self.outcome}"
