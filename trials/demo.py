"""The demo trial that `make run` loads into an empty database."""

import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from .charter import DEMO_CHARTER
from .models import Role, Trial
from .services import (
    membership_grant,
    protocol_version_release,
    qualification_decide,
    qualification_request,
    qualification_submit,
    scanner_register,
    site_create,
    subject_enroll,
    training_record_add,
    trial_create,
)
from .signals import demo_loaded

DEMO_PROTOCOL = "CORE-DEMO-01"


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
    protocol_version_release(actor=None, trial=trial, label="1.0", effective_date=datetime.date(2026, 1, 15),
                             approved_on=datetime.date(2026, 1, 8), approved_by="Central ethics committee",
                             charter=DEMO_CHARTER, change_summary="First release of the imaging charter.")
    User = get_user_model()
    users = {}
    for username, role, site_number, password in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username,
                                                   defaults={"email": f"{username}@demo.corelab.invalid"})
        if created:
            user.set_password(password)
            user.save()
        users[username] = user
        membership_grant(actor=None, user=user, trial=trial, role=role,
                         site=sites[site_number] if site_number else None)
    _demo_site_readiness(trial=trial, sites=sites, users=users)
    transaction.on_commit(lambda: demo_loaded.send(sender=Trial, trial_id=trial.pk))
    return trial


def _demo_site_readiness(*, trial: Trial, sites: dict, users: dict) -> None:
    """Site 101 is qualified and trained and has subjects; site 102 is half-way, so its page shows gaps."""
    version = trial.protocol_versions.get(is_current=True)
    coord101, coord102, qc = users["coord101"], users["coord102"], users["qc"]
    ct101 = scanner_register(actor=coord101, site=sites["101"], manufacturer="SIEMENS", model="SOMATOM Force",
                             serial="75123", software_version="syngo CT VA50A", station_name="RUH-CT1",
                             modality="CT")
    mr101 = scanner_register(actor=coord101, site=sites["101"], manufacturer="GE MEDICAL SYSTEMS",
                             model="SIGNA Premier", serial="MR4401", software_version="MR30.1",
                             station_name="RUH-MR2", modality="MR")
    ct102 = scanner_register(actor=coord102, site=sites["102"], manufacturer="Philips", model="IQon Spectral CT",
                             serial="200981", software_version="5.0.2", station_name="KAS-CT", modality="CT")
    for scanner, procedure in [(ct101, "CT_CAP"), (mr101, "MR_BRAIN")]:
        qualification = qualification_request(actor=coord101, site=sites["101"], scanner=scanner,
                                              procedure=procedure)
        qualification_submit(actor=coord101, qualification=qualification,
                             study_reference=f"PHANTOM-101-{procedure}")
        qualification_decide(actor=qc, qualification=qualification, approve=True,
                             reason="Phantom acquisition within charter limits.")
    pending = qualification_request(actor=coord102, site=sites["102"], scanner=ct102, procedure="CT_CAP")
    qualification_submit(actor=coord102, qualification=pending, study_reference="PHANTOM-102-CT_CAP")
    training_record_add(actor=users["manager"], user=coord101, site=sites["101"], protocol_version=version,
                        topic="Imaging manual v1.0, upload portal and query workflow",
                        trained_on=datetime.date(2026, 1, 20), trainer="Corelab imaging scientist")
    for number, (patient_id, enrolled) in enumerate([("RUH-448812", datetime.date(2026, 2, 2)),
                                                     ("RUH-448907", datetime.date(2026, 2, 16)),
                                                     ("RUH-449150", datetime.date(2026, 3, 9))], start=1):
        subject_enroll(actor=coord101, site=sites["101"], code=f"101-{number:04d}", patient_id=patient_id,
                       enrollment_date=enrolled)
