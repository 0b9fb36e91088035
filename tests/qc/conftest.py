"""QC fixtures: private quarantine/archive folders, a qualified site, studies uploaded and de-identified
through the real intake and de-identification services."""

import datetime
from pathlib import Path

import pytest

from deid.services import profile_create_version, series_deidentify
from intake.models import ImagingStudy, Submission
from intake.services import instance_receive, submission_close, submission_open
from trials.services import (
    qualification_decide,
    qualification_request,
    qualification_submit,
    subject_enroll,
    training_record_add,
)

from ..trials.factories import ProtocolVersionFactory, ScannerFactory, demo_charter
from .files import ct_series

ENROLLED = datetime.date(2026, 3, 2)


@pytest.fixture
def stores(tmp_path, settings, monkeypatch):
    """Quarantine and archive in this test's own folders."""
    roots = {"quarantine": tmp_path / "quarantine", "archive": tmp_path / "archive"}
    settings.STORAGES = {**settings.STORAGES, **{
        name: {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}
        for name, root in roots.items()}}
    monkeypatch.setenv("QUARANTINE_ROOT", str(roots["quarantine"]))
    monkeypatch.setenv("ARCHIVE_ROOT", str(roots["archive"]))
    return roots


@pytest.fixture
def ready_site(trial, site1, coordinator_site1, qc_analyst, trial_manager, stores):
    """Site 1 qualified for CT_CAP on its CT (charter: 5 slices suffice), coordinator trained, one subject,
    and a de-identification profile that keeps descriptors and device identity (so every check can verify)."""
    version = ProtocolVersionFactory(trial=trial, charter=demo_charter(CT_CAP={"min_slices": 5}))
    ct = ScannerFactory(site=site1, manufacturer="SIEMENS", model="SOMATOM Force", serial="75123",
                        software_version="syngo CT VA50A")
    q = qualification_request(actor=coordinator_site1, site=site1, scanner=ct, procedure="CT_CAP")
    qualification_submit(actor=coordinator_site1, qualification=q, study_reference="PH-1")
    qualification_decide(actor=qc_analyst, qualification=q, approve=True)
    training_record_add(actor=trial_manager, user=coordinator_site1, site=site1, protocol_version=version,
                        topic="manual", trained_on=datetime.date(2026, 2, 1), trainer="lab")
    subject = subject_enroll(actor=coordinator_site1, site=site1, code="101-0001", patient_id="MRN-1001",
                             enrollment_date=ENROLLED)
    profile_create_version(actor=trial_manager, trial=trial, options=["clean_descriptors", "retain_device_identity"])
    return {"subject": subject, "baseline": subject.visits.get(timepoint="BL"), "version": version,
            "coordinator": coordinator_site1, "site": site1}


def upload(ready: dict, paths: list[Path], *, rescan: bool = False) -> ImagingStudy:
    """File ``paths`` through the web portal's service path; returns the study."""
    submission = submission_open(actor=ready["coordinator"], site=ready["site"], channel=Submission.Channel.WEB,
                                 subject=ready["subject"], visit=ready["baseline"], procedure="CT_CAP",
                                 declared_rescan=rescan)
    outcomes = [instance_receive(submission=submission, path=p, name=p.name) for p in paths]
    submission_close(submission=submission)
    assert {o.outcome for o in outcomes} == {"accepted"}, outcomes
    return ImagingStudy.objects.get(pk=outcomes[0].study_id)


def deidentify(study: ImagingStudy) -> ImagingStudy:
    for series in study.series.all():
        series_deidentify(series_id=series.pk)
    study.refresh_from_db()
    return study


@pytest.fixture
def make_study(tmp_path, ready_site):
    """make_study(**ct_series options) -> a de-identified study of the ready site's subject."""
    made = []

    def make(*, folder: str | None = None, **options) -> ImagingStudy:
        made.append(1)
        options.setdefault("BodyPartExamined", "CHEST")
        paths = ct_series(tmp_path / (folder or f"study{len(made)}"), **options)
        return deidentify(upload(ready_site, paths))
    return make
