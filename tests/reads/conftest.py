"""Reads fixtures: a trial with a qualified reader pool, subjects enrolled through the trials services, and
timepoints accepted through the real QC service (its on-commit signal drives reads' receiver).

Studies are created as ImagingStudy rows awaiting QC rather than uploaded from DICOM: reads only cares that
QC accepted them, and four timepoints x two procedures x several subjects of real uploads would cost minutes.
test_reread.py also runs the full path once with real DICOM (upload, de-identification, QC)."""

import datetime
import secrets
from types import SimpleNamespace

import pytest

from intake.models import ImagingStudy
from qc.services import study_accept
from reads.models import ReadTask
from reads.services import read_save_draft, read_sign, reader_add, reader_training_add, task_open
from trials.models import Role, Subject
from trials.services import subject_enroll

from ..trials.factories import MembershipFactory, ProtocolVersionFactory, UserFactory, demo_charter

PASSWORD = "correct-horse-battery"  # UserFactory's password
ENROLLED = datetime.date(2026, 3, 2)

# a valid RECIST 1.1 baseline: two measurable targets (sum 50 mm), one non-target
BASELINE = {
    "targets": [
        {"id": "T1", "organ": "LIVER", "nodal": False, "mm": 30, "modality": "CT", "slice_thickness_mm": 5},
        {"id": "T2", "organ": "LUNG", "nodal": False, "mm": 20, "modality": "CT", "slice_thickness_mm": 5},
    ],
    "non_targets": [{"id": "NT1", "organ": "BONE", "nodal": False, "modality": "CT", "slice_thickness_mm": 5}],
}


def followup(t1, t2, *, non_target: str = "NON-CR/NON-PD", new_lesions: str = "NO") -> dict:
    return {"targets": {"T1": t1, "T2": t2}, "non_target": non_target, "new_lesions": new_lesions}


def member(trial, role, username):
    user = UserFactory(username=username, first_name=username.title(), last_name="Tester")
    MembershipFactory(user=user, trial=trial, role=role)
    return user


def pool_add(ctx, user):
    reader = reader_add(actor=ctx.manager, trial=ctx.trial, user=user)
    reader_training_add(actor=ctx.manager, reader=reader, protocol_version=ctx.version,
                        topic="RECIST 1.1 and the imaging charter", trained_on=datetime.date(2026, 2, 1),
                        trainer="Core lab medical lead")
    ctx.readers[user.username] = reader
    return reader


@pytest.fixture
def reads_charter():
    """The charter of the trial's current protocol version (a module may override this fixture)."""
    return demo_charter()


@pytest.fixture
def reading(trial, site1, coordinator_site1, qc_analyst, trial_manager, reader1, reader2, adjudicator,
            reads_charter):
    """The current protocol version, readers reader1 and reader2 and the adjudicator in the pool, trained."""
    ctx = SimpleNamespace(trial=trial, site=site1, coordinator=coordinator_site1, qc=qc_analyst,
                          manager=trial_manager, readers={}, users={}, n=0)
    ctx.version = ProtocolVersionFactory(trial=trial, charter=reads_charter)
    for user in (reader1, reader2, adjudicator):
        ctx.users[user.username] = user
        pool_add(ctx, user)
    return ctx


@pytest.fixture
def enroll(reading):
    def make(code: str) -> Subject:
        reading.n += 1
        return subject_enroll(actor=reading.coordinator, site=reading.site, code=code,
                              patient_id=f"MRN-{reading.n:04d}", enrollment_date=ENROLLED)
    return make


def pending_study(subject, visit, procedure: str, *, version: int = 1) -> ImagingStudy:
    return ImagingStudy.objects.create(
        trial=subject.trial, site=subject.site, subject=subject, visit=visit, procedure=procedure, version=version,
        status=ImagingStudy.Status.QC_PENDING, study_uid_hash=secrets.token_hex(32),
        patient_id_hash=subject.patient_id_hash, acquisition_date=visit.nominal_date + datetime.timedelta(days=1),
        modality="CT" if procedure.startswith("CT") else "MR")


@pytest.fixture
def accept(reading, django_capture_on_commit_callbacks):
    """accept(subject, "BL") accepts a study of every procedure the timepoint requires, through qc.services."""
    def run(subject: Subject, timepoint: str, procedures: list[str] | None = None) -> list[ImagingStudy]:
        visit = subject.visits.get(timepoint=timepoint)
        studies = []
        for procedure in procedures if procedures is not None else visit.procedures:
            latest = ImagingStudy.objects.filter(visit=visit, procedure=procedure).order_by("-version").first()
            study = pending_study(subject, visit, procedure, version=latest.version + 1 if latest else 1)
            with django_capture_on_commit_callbacks(execute=True):
                studies.append(study_accept(analyst=reading.qc, study=study))
        return studies
    return run


@pytest.fixture
def reader3(reading):
    user = member(reading.trial, Role.READER, "reader3")
    reading.users[user.username] = user
    return pool_add(reading, user)


def task_of(subject, timepoint: str, slot: str) -> ReadTask:
    return ReadTask.objects.get(subject=subject, visit__timepoint=timepoint, slot=slot, status__in=ReadTask.LIVE)


def read_and_sign(subject, timepoint: str, slot: str, lesions: dict):
    """The task's reader opens it, saves the lesions and signs with their password."""
    task = task_of(subject, timepoint, slot)
    user = task.reader.user
    task_open(task=task, user=user)
    read_save_draft(task=task, user=user, lesions=lesions)
    return read_sign(task=task, user=user, password=PASSWORD)
