"""The inspector's test: one subject walked through the whole flow, acquisition to adjudicated read, and the
exact sequence of event types its audit timeline shows.

Real DICOM is uploaded through the web door, de-identified, checked by QC (with a query answered by the
site), purged from quarantine and accepted; two readers read baseline and week 6, disagree, and the
adjudicator resolves it; the auditor exports the timeline. Consecutive events of one type (one per
instance of a series, say) count once: the sequence is what an inspector reads down the page."""

import datetime
import itertools

import pytest
from django.utils import timezone

from audit.selectors import subject_get_for_auditor, timeline_events
from deid.services import profile_create_version, quarantine_purge, series_deidentify
from intake.models import ImagingStudy, Submission
from intake.services import instance_receive, submission_close, submission_open
from qc.models import Query
from qc.services import qc_run, query_answer, query_close, query_raise, study_accept
from reads.models import Adjudication
from reads.services import adjudication_resolve
from trials.services import (
    qualification_decide,
    qualification_request,
    qualification_submit,
    subject_arm_assign,
    subject_enroll,
    training_record_add,
)

from ..qc.conftest import stores  # noqa: F401  (fixture)
from ..qc.files import ct_series
from ..trials.factories import ScannerFactory, demo_charter
from .conftest import BASELINE, ENROLLED, PASSWORD, followup, pending_study, read_and_sign

pytestmark = pytest.mark.django_db

SIGNED_READ = ["reads.task_opened", "reads.read_draft_saved", "audit.signature_signed", "reads.read_signed"]
EXPECTED = [
    "trials.subject_enrolled",
    "trials.subject_arm_assigned",
    # receipt
    "intake.submission_opened",
    "intake.study_created",
    "intake.instance_received",  # five, one per slice
    "intake.submission_closed",
    "intake.study_status_changed",  # received -> de-identifying
    # de-identification, instance by instance; the last one completes the study
    *["intake.instance_status_changed", "deid.instance_deidentified"] * 4,
    "intake.instance_status_changed",
    "intake.study_status_changed",  # -> de-identified
    "deid.instance_deidentified",
    # QC
    "qc.run_completed",
    "intake.study_status_changed",  # -> QC pending
    "qc.query_raised",
    "qc.query_answered",
    "qc.query_closed",
    "deid.raw_purged",  # five raw files
    "intake.study_status_changed",  # -> accepted
    "qc.study_accepted",
    # baseline reads
    "reads.task_created",
    *SIGNED_READ,
    *SIGNED_READ,
    "reads.bicr_result_set",  # the readers agree at baseline
    # week 6 (accepted at QC), read in disagreement and adjudicated
    "intake.study_status_changed",
    "qc.study_accepted",
    "reads.task_created",
    *SIGNED_READ,
    *SIGNED_READ,
    "reads.adjudication_created",
    "audit.signature_signed",
    "reads.adjudication_resolved",
    "reads.bicr_result_set",
    # the inspector's export
    "audit.timeline_exported",
]


@pytest.fixture
def reads_charter():
    charter = demo_charter(CT_CAP={"min_slices": 5})
    for visit in charter["visits"]:
        visit["procedures"] = ["CT_CAP"]
    return charter


def _collapsed(actions: list[str]) -> list[str]:
    return [action for action, _ in itertools.groupby(actions)]


def test_a_subjects_timeline_runs_from_receipt_to_the_adjudicated_read_in_order(
        reading, stores, tmp_path, client, auditor, django_capture_on_commit_callbacks):  # noqa: F811
    ctx = reading
    scanner = ScannerFactory(site=ctx.site, manufacturer="SIEMENS", model="SOMATOM Force", serial="75123",
                             software_version="syngo CT VA50A")
    qualification = qualification_request(actor=ctx.coordinator, site=ctx.site, scanner=scanner, procedure="CT_CAP")
    qualification_submit(actor=ctx.coordinator, qualification=qualification, study_reference="PH-1")
    qualification_decide(actor=ctx.qc, qualification=qualification, approve=True)
    training_record_add(actor=ctx.manager, user=ctx.coordinator, site=ctx.site, protocol_version=ctx.version,
                        topic="manual", trained_on=datetime.date(2026, 2, 1), trainer="lab")
    profile_create_version(actor=ctx.manager, trial=ctx.trial, purge_raw_after_days=0,
                           options=["clean_descriptors", "retain_device_identity"], note="purge at once")

    subject = subject_enroll(actor=ctx.coordinator, site=ctx.site, code="FL-0001", patient_id="MRN-2001",
                             enrollment_date=ENROLLED)
    subject_arm_assign(actor=ctx.manager, subject=subject, arm="ARM-A")

    # acquisition and receipt: the web door, five CT slices
    baseline = subject.visits.get(timepoint="BL")
    submission = submission_open(actor=ctx.coordinator, site=ctx.site, channel=Submission.Channel.WEB,
                                 subject=subject, visit=baseline, procedure="CT_CAP")
    outcomes = [instance_receive(submission=submission, path=p, name=p.name)
                for p in ct_series(tmp_path / "bl", BodyPartExamined="CHEST")]
    submission_close(submission=submission)
    study = ImagingStudy.objects.get(pk=outcomes[0].study_id)

    # de-identification, QC checks, a query the site answers, purge of the raw files, acceptance
    for series in study.series.all():
        series_deidentify(series_id=series.pk)
    qc_run(study_id=study.pk, trigger="test")
    query = query_raise(analyst=ctx.qc, category=Query.Category.OTHER, study=study,
                        text="Please confirm the contrast phase of series 1.")
    query_answer(coordinator=ctx.coordinator, query=query, text="Portal venous phase, 70 s.")
    query_close(analyst=ctx.qc, query=query, note="Confirmed.")
    assert quarantine_purge(now=timezone.now() + datetime.timedelta(days=1)) == len(outcomes)
    with django_capture_on_commit_callbacks(execute=True):
        study_accept(analyst=ctx.qc, study=study)

    # reads: baseline by both readers, week 6 in disagreement, adjudicated
    read_and_sign(subject, "BL", "A", BASELINE)
    read_and_sign(subject, "BL", "B", BASELINE)
    with django_capture_on_commit_callbacks(execute=True):
        study_accept(analyst=ctx.qc, study=pending_study(subject, subject.visits.get(timepoint="W6"), "CT_CAP"))
    read_and_sign(subject, "W6", "A", followup(18, 12))
    read_and_sign(subject, "W6", "B", followup(25, 15))
    adjudication_resolve(adjudication=Adjudication.objects.get(subject=subject), user=ctx.users["adjudicator"],
                         selected="B", rationale="B measured on the portal venous phase", password=PASSWORD)

    # the auditor's export is itself on the timeline
    client.force_login(auditor)
    assert client.get(f"/audit/subjects/{subject.pk}/timeline.csv").status_code == 200

    ref = subject_get_for_auditor(user=auditor, subject_id=subject.pk)
    actions = list(timeline_events(subject=ref).values_list("action", flat=True))
    assert _collapsed(actions) == EXPECTED
