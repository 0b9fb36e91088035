"""Trials, their sites, protocol versions and who holds which role in them."""

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
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["protocol_number"]

    def __str__(self) -> str:
        return f"{self.protocol_number} {self.title}"


class ProtocolVersion(models.Model):
    """One approved version of the protocol's imaging charter. Released versions are never edited."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="protocol_versions")
    label = models.CharField(max_length=30)
    effective_date = models.DateField()
    change_summary = models.TextField(blank=True)
    is_current = models.BooleanField(default=False)
    # visit schedule: [{"code": "BL", "label": "Baseline", "day": 0, "window_before": 28, "window_after": 0}, ...]
    visit_schedule = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["trial", "effective_date"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "label"], name="protocolversion_label_unique"),
            models.UniqueConstraint(fields=["trial"], condition=models.Q(is_current=True),
                                    name="protocolversion_one_current"),
        ]

    def __str__(self) -> str:
        return f"{self.trial.protocol_number} v{self.label}"

    def clean(self) -> None:
        codes = [visit.get("code") for visit in self.visit_schedule]
        if len(codes) != len(set(codes)) or not all(codes):
            raise ValidationError({"visit_schedule": "every visit needs a unique code"})


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
