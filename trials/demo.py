"""The demo trial that `make run` loads into an empty database."""

import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from .models import Role, Trial
from .services import membership_grant, protocol_version_create, site_create, trial_create

DEMO_PROTOCOL = "CORE-DEMO-01"

DEMO_SCHEDULE = [
    {"code": "SCR", "label": "Screening / baseline", "day": 0, "window_before": 28, "window_after": 0},
    {"code": "W8", "label": "Week 8", "day": 56, "window_before": 7, "window_after": 7},
    {"code": "W16", "label": "Week 16", "day": 112, "window_before": 7, "window_after": 7},
    {"code": "EOT", "label": "End of treatment", "day": 168, "window_before": 14, "window_after": 14},
]

# (username, role, site number or None, password). Demo passwords are public: never use them in production.
DEMO_USERS = [
    ("manager", Role.TRIAL_MANAGER, None, "demo-manager-pass"),
    ("coord101", Role.SITE_COORDINATOR, "101", "demo-coord101-pass"),
    ("coord102", Role.SITE_COORDINATOR, "102", "demo-coord102-pass"),
    ("qc", Role.QC_ANALYST, None, "demo-qc-analyst-pass"),
    ("reader1", Role.READER, None, "demo-reader1-pass"),
    ("reader2", Role.READER, None, "demo-reader2-pass"),
    ("adjudicator", Role.ADJUDICATOR, None, "demo-adjudicator-pass"),
    ("sponsor", Role.SPONSOR_VIEWER, None, "demo-sponsor-pass"),
    ("auditor", Role.AUDITOR, None, "demo-auditor-pass"),
]


def database_is_empty() -> bool:
    return not Trial.objects.exists()


@transaction.atomic
def demo_load() -> Trial:
    """Create the demo trial, its sites, protocol version and one user per role. Not idempotent: check first."""
    trial = trial_create(actor=None, protocol_number=DEMO_PROTOCOL, sponsor="Corelab Demo Pharma",
                         title="Phase III imaging sub-study of drug X in metastatic NSCLC (demo)",
                         phase=Trial.Phase.PHASE_3, status=Trial.Status.ACTIVE)
    sites = {
        "101": site_create(actor=None, trial=trial, number="101", name="Riverside University Hospital",
                           country="US", time_zone="America/New_York", status="active"),
        "102": site_create(actor=None, trial=trial, number="102", name="Klinikum am See",
                           country="DE", time_zone="Europe/Berlin", status="active"),
    }
    protocol_version_create(actor=None, trial=trial, label="1.0", effective_date=datetime.date(2026, 1, 15),
                            visit_schedule=DEMO_SCHEDULE, change_summary="First release of the imaging charter.")
    User = get_user_model()
    for username, role, site_number, password in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username,
                                                   defaults={"email": f"{username}@demo.corelab.invalid"})
        if created:
            user.set_password(password)
            user.save()
        membership_grant(actor=None, user=user, trial=trial, role=role,
                         site=sites[site_number] if site_number else None)
    return trial
