"""De-identification fixtures: private quarantine/archive folders, a qualified site, uploads of real files."""

import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from intake.models import ImagingStudy, Submission
from intake.services import instance_receive, submission_close, submission_open
from trials.services import (
    qualification_decide,
    qualification_request,
    qualification_submit,
    subject_enroll,
    training_record_add,
)

from ..intake.dicom import make_study
from ..trials.factories import ProtocolVersionFactory, ScannerFactory

ENROLLED = datetime.date(2026, 3, 2)
SCANNER = {"Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM Force", "DeviceSerialNumber": "75123",
           "SoftwareVersions": "syngo CT VA50A"}
PATIENT_ID, PATIENT_NAME = "MRN-1001", "Doe^Jane"


@pytest.fixture
def stores(tmp_path, settings, monkeypatch):
    """Quarantine and archive in this test's own folders (also for worker processes it starts)."""
    roots = {"quarantine": tmp_path / "quarantine", "archive": tmp_path / "archive"}
    settings.STORAGES = {**settings.STORAGES, **{
        name: {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}
        for name, root in roots.items()}}
    monkeypatch.setenv("QUARANTINE_ROOT", str(roots["quarantine"]))
    monkeypatch.setenv("ARCHIVE_ROOT", str(roots["archive"]))
    return roots


def objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def ready_site(trial, site1, coordinator_site1, qc_analyst, trial_manager):
    """Site 1 qualified for CT_CAP on its CT, coordinator trained, one subject enrolled."""
    version = ProtocolVersionFactory(trial=trial)
    ct = ScannerFactory(site=site1, manufacturer="SIEMENS", model="SOMATOM Force", serial="75123",
                        software_version="syngo CT VA50A")
    q = qualification_request(actor=coordinator_site1, site=site1, scanner=ct, procedure="CT_CAP")
    qualification_submit(actor=coordinator_site1, qualification=q, study_reference="PH-1")
    qualification_decide(actor=qc_analyst, qualification=q, approve=True)
    training_record_add(actor=trial_manager, user=coordinator_site1, site=site1, protocol_version=version,
                        topic="manual", trained_on=datetime.date(2026, 2, 1), trainer="lab")
    subject = subject_enroll(actor=coordinator_site1, site=site1, code="101-0001", patient_id=PATIENT_ID,
                             enrollment_date=ENROLLED)
    return {"subject": subject, "baseline": subject.visits.get(timepoint="BL"), "version": version}


def phi_study(folder: Path, *, count: int = 3, patient_id: str = PATIENT_ID, seed: dict | None = None,
              **kwargs) -> list[Path]:
    """make_study's CT files with more synthetic PHI planted: name, birth date, accession, physician."""
    paths = make_study(folder, patient_id=patient_id, count=count, scanner=SCANNER, **kwargs)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate = PATIENT_NAME, "19610704"
        ds.AccessionNumber, ds.ReferringPhysicianName = "ACC-9931", "Roe^Richard"
        ds.OtherPatientIDs = "NHS-4471"
        ds.private_block(0x0009, "SITE PRIVATE", create=True).add_new(0x10, "LO", "Jane Doe home scan")
        for keyword, value in (seed or {}).items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
    return paths


def upload(*, coordinator, site, ready, paths, **kwargs) -> ImagingStudy:
    """File ``paths`` through the web portal's service path; returns the study."""
    submission = submission_open(actor=coordinator, site=site, channel=Submission.Channel.WEB,
                                 subject=ready["subject"], visit=ready["baseline"], procedure="CT_CAP", **kwargs)
    outcomes = [instance_receive(submission=submission, path=p, name=p.name) for p in paths]
    submission_close(submission=submission)
    assert {o.outcome for o in outcomes} == {"accepted"}, outcomes
    return ImagingStudy.objects.get(pk=outcomes[0].study_id)


class Worker:
    """A real Celery worker process on the test database and this run's queue; start, kill, stop."""

    def __init__(self):
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it on os.environ's REDIS_URL and wait until it answers a ping there."""
        from ..conftest import WORKER_START_SECONDS, database_url_for_children

        env = {**os.environ, "DATABASE_URL": database_url_for_children()}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "WARNING",
             "--hostname", f"deid-test-{os.getpid()}-{time.monotonic_ns()}@%h", "--without-gossip",
             "--without-mingle"], env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + WORKER_START_SECONDS
        while not self._answers(env):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail("the Celery worker did not start")

    @staticmethod
    def _answers(env: dict) -> bool:
        from django.conf import settings

        from config.celery import app

        if env["REDIS_URL"] == settings.REDIS_URL:
            return bool(app.control.ping(timeout=0.5))
        # another broker than this process's Celery app publishes to: ask from a process of its own
        return subprocess.run([sys.executable, "-m", "celery", "-A", "config", "inspect", "ping", "--timeout", "1"],
                              env=env, capture_output=True).returncode == 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def deid_worker(transactional_db, stores):
    """Not started yet: the test starts (and may SIGKILL and restart) it."""
    worker = Worker()
    yield worker
    worker.stop()
