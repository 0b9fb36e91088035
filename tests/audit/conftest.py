"""A subject with a small audit history, for the timeline, search and export tests."""

import datetime

import pytest
from django.db import transaction

from audit.chain import chain_seal
from audit.services import audit_record
from trials.services import subject_enroll

from ..trials.factories import ProtocolVersionFactory

ENROLLED = datetime.date(2026, 3, 2)


def record(*, actor=None, action: str, subject, target=None, **details):
    with transaction.atomic():
        return audit_record(actor=actor, action=action, target=target, trial_id=subject.trial_id,
                            site_id=subject.site_id, subject_id=subject.pk, subject_code=subject.code,
                            details=details)


@pytest.fixture
def subject(trial, site2, trial_manager):
    """Enrolled at site 2 (Europe/Paris), so site-local time differs from UTC."""
    ProtocolVersionFactory(trial=trial)
    return subject_enroll(actor=trial_manager, site=site2, code="102-0001", patient_id="MRN-7-TIMELINE",
                          enrollment_date=ENROLLED)


@pytest.fixture
def history(subject, coordinator_site2, qc_analyst):
    """Enrolled, then received, de-identified and a QC decision: four events, sealed."""
    record(actor=coordinator_site2, action="intake.instance_received", subject=subject,
           target=("intake.instance", 11, "CT 1.2.3.4"), channel="web", sha256="ab" * 32)
    record(actor=None, action="deid.instance_deidentified", subject=subject,
           target=("intake.instance", 11, "CT 1.2.3.4"), profile_version=3, verified=True)
    record(actor=qc_analyst, action="qc.study_accepted", subject=subject,
           target=("intake.imagingstudy", 5, "CT baseline"), note="complete")
    chain_seal()
    return subject


def tamper(sql: str, params: list) -> None:
    """What a database superuser could do: switch the append-only trigger off, edit, switch it on."""
    from django.db import connection

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses while deferred checks are pending
        cur.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cur.execute(sql, params)
        cur.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
