"""Blinding, enforced in the selectors: a seeded trial is read by two readers who disagree and an adjudicator
who resolves it; everything each reader's and the adjudicator's selectors return is scanned for values they
must never see. The baseline is uploaded as real DICOM, de-identified and accepted at QC, so the reader's
study rows carry a real pseudonymous UID and a shifted date."""

import dataclasses
import datetime
import json
import re

import pytest
from django.http import Http404

from deid.models import DeidRecord
from deid.services import profile_create_version, series_deidentify
from intake.models import ImagingStudy, Submission
from intake.services import instance_receive, submission_close, submission_open
from qc.services import qc_run, study_accept
from reads.blinding import reading_id
from reads.models import Adjudication
from reads.selectors import (
    adjudication_for,
    adjudication_inputs,
    adjudication_list_for,
    agreement_inputs,
    bicr_results,
    task_for_reader,
    worklist_for,
)
from reads.services import adjudication_resolve
from trials.models import Site
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
from .conftest import BASELINE, ENROLLED, PASSWORD, followup, read_and_sign, task_of

pytestmark = pytest.mark.django_db

SITE_NAME, SITE_NUMBER, COUNTRY = "St Elsewhere Oncology Centre", "S9X7", "NZ"
SUBJECT_CODE = f"{SITE_NUMBER}-0007"  # numbered by site, as trials do: readers get its reading ID instead
ARM = "ARM-BLINDTEST-42mg"
RATIONALE = "RATIONALE-SECRET: portal venous phase shows the margin"


@pytest.fixture
def reads_charter():
    charter = demo_charter(CT_CAP={"min_slices": 5})
    for visit in charter["visits"]:
        visit["procedures"] = ["CT_CAP"]
    return charter


@pytest.fixture
def seeded(reading, stores, tmp_path, django_capture_on_commit_callbacks):  # noqa: F811
    """A subject with an arm at a distinctively named site; BL from real DICOM, W6 disagreement, adjudicated."""
    ctx = reading
    Site.objects.filter(pk=ctx.site.pk).update(name=SITE_NAME, number=SITE_NUMBER, country=COUNTRY)
    ctx.site.refresh_from_db()
    ct = ScannerFactory(site=ctx.site, manufacturer="SIEMENS", model="SOMATOM Force", serial="75123",
                        software_version="syngo CT VA50A")
    q = qualification_request(actor=ctx.coordinator, site=ctx.site, scanner=ct, procedure="CT_CAP")
    qualification_submit(actor=ctx.coordinator, qualification=q, study_reference="PH-1")
    qualification_decide(actor=ctx.qc, qualification=q, approve=True)
    training_record_add(actor=ctx.manager, user=ctx.coordinator, site=ctx.site, protocol_version=ctx.version,
                        topic="manual", trained_on=datetime.date(2026, 2, 1), trainer="lab")
    profile_create_version(actor=ctx.manager, trial=ctx.trial, options=["clean_descriptors", "retain_device_identity"])
    subject = subject_enroll(actor=ctx.coordinator, site=ctx.site, code=SUBJECT_CODE, patient_id="MRN-1001",
                             enrollment_date=ENROLLED)
    subject_arm_assign(actor=ctx.manager, subject=subject, arm=ARM)

    baseline = subject.visits.get(timepoint="BL")
    submission = submission_open(actor=ctx.coordinator, site=ctx.site, channel=Submission.Channel.WEB,
                                 subject=subject, visit=baseline, procedure="CT_CAP")
    paths = ct_series(tmp_path / "bl", BodyPartExamined="CHEST")
    outcomes = [instance_receive(submission=submission, path=p, name=p.name) for p in paths]
    submission_close(submission=submission)
    study = ImagingStudy.objects.get(pk=outcomes[0].study_id)
    for series in study.series.all():
        series_deidentify(series_id=series.pk)
    qc_run(study_id=study.pk, trigger="test")
    with django_capture_on_commit_callbacks(execute=True):
        study_accept(analyst=ctx.qc, study=study)
    from .conftest import pending_study

    week6 = subject.visits.get(timepoint="W6")
    with django_capture_on_commit_callbacks(execute=True):
        study_accept(analyst=ctx.qc, study=pending_study(subject, week6, "CT_CAP"))

    read_and_sign(subject, "BL", "A", BASELINE)
    read_and_sign(subject, "BL", "B", BASELINE)
    read_and_sign(subject, "W6", "A", followup(18, 12))
    read_and_sign(subject, "W6", "B", followup(25.25, 15))  # B's own, unmistakable measurement
    adjudication = Adjudication.objects.get(subject=subject)
    adjudication_resolve(adjudication=adjudication, user=ctx.users["adjudicator"], selected="B",
                         rationale=RATIONALE, password=PASSWORD)
    ctx.subject, ctx.study, ctx.adjudication = subject, study, adjudication
    return ctx


def dump(value) -> str:
    def plain(obj):
        if dataclasses.is_dataclass(obj):
            return dataclasses.asdict(obj)
        return str(obj)
    return json.dumps(value, default=plain)


def never_in(body: str, *values: str) -> None:
    for value in values:
        assert value not in body, f"{value!r} leaked"


def number_never_in(body: str, number: str) -> None:
    """A measurement as a number of its own: a pseudonymous UID ("2.25.25…") or a time may hold its digits."""
    assert not re.search(rf"(?<![\d.:]){re.escape(number)}(?!\d)", body), f"{number!r} leaked"


def test_a_readers_worklist_and_task_views_carry_nothing_they_must_not_see(seeded):
    reader1 = seeded.users["reader1"]
    rows = worklist_for(user=reader1, trial=seeded.trial)
    views = [task_for_reader(user=reader1, task_id=row.task_id) for row in rows]
    body = dump([rows, views])

    assert reading_id(subject=seeded.subject) in body and "W6" in body  # what a reader does see
    never_in(body, SITE_NAME, SITE_NUMBER, f'"{COUNTRY}"', ARM, "reader2", "adjudicator", RATIONALE,
             "RATIONALE", '"selected"', "adjudication")
    number_never_in(body, "25.25")
    assert {v.timepoint for v in views} == {"BL", "W6"}


def test_the_reader_sees_the_pseudonymous_uid_and_a_shifted_date(seeded):
    reader1 = seeded.users["reader1"]
    view = task_for_reader(user=reader1, task_id=task_of(seeded.subject, "BL", "A").pk)

    [row] = view.studies
    released = DeidRecord.objects.filter(instance__study=seeded.study, outcome="released").first()
    assert row.study_uid == released.study_uid and row.study_uid
    assert row.scan_date is not None and row.scan_date < seeded.study.acquisition_date - datetime.timedelta(days=364)
    assert row.scan_date == view.scan_date
    body = dump(view)
    never_in(body, seeded.study.acquisition_date.isoformat(), seeded.study.study_uid_hash)


def test_reader_b_sees_only_their_own_measurements(seeded):
    reader2 = seeded.users["reader2"]
    body = dump([task_for_reader(user=reader2, task_id=r.task_id)
                 for r in worklist_for(user=reader2, trial=seeded.trial)])

    assert "25.25" in body
    never_in(body, "reader1", '"T1": 18', RATIONALE, SITE_NAME, ARM)


def test_the_adjudicator_sees_reads_a_and_b_without_identities(seeded):
    user = seeded.users["adjudicator"]
    view = adjudication_for(user=user, adj_id=seeded.adjudication.pk)
    body = dump([view, adjudication_list_for(user=user, trial=seeded.trial)])

    assert set(view.reads) == {"A", "B"} and [tp for tp, _, _ in view.reads["B"]] == ["BL", "W6"]
    assert "25.25" in body
    never_in(body, "reader1", "reader2", "Tester", SITE_NAME, SITE_NUMBER, ARM)


def test_readers_cannot_reach_adjudications_or_oversight_selectors(seeded):
    reader1 = seeded.users["reader1"]
    with pytest.raises(Http404):
        adjudication_for(user=reader1, adj_id=seeded.adjudication.pk)
    with pytest.raises(Http404):
        adjudication_list_for(user=reader1, trial=seeded.trial)
    with pytest.raises(Http404):
        bicr_results(trial=seeded.trial, user=reader1)
    with pytest.raises(Http404):
        agreement_inputs(trial=seeded.trial, user=reader1)


def test_other_people_get_404_on_reader_selectors(seeded, outsider):
    task = task_of(seeded.subject, "BL", "A")
    for user in (outsider, seeded.users["reader2"], seeded.users["adjudicator"], seeded.manager):
        with pytest.raises(Http404):
            task_for_reader(user=user, task_id=task.pk)
    with pytest.raises(Http404):
        worklist_for(user=outsider, trial=seeded.trial)


def test_oversight_selectors_give_the_bicr_result_and_agreement_inputs(seeded, sponsor):
    results = {r["visit"]: r for r in bicr_results(trial=seeded.trial, user=sponsor)}
    assert results["W6"]["overall"] == "SD" and results["W6"]["slot"] == "B"
    assert results["W6"]["source"] == "adjudication"

    [group] = agreement_inputs(trial=seeded.trial, user=seeded.manager)
    r1, r2 = seeded.readers["reader1"], seeded.readers["reader2"]
    assert group["reader_ids"] == (r1.pk, r2.pk) and group["readers"] == ("reader1", "reader2")
    assert group["ratings"] == [("PR", "SD")]  # only follow-ups have an overall response
    assert len(group["month"]) == 7

    [adj] = adjudication_inputs(trial=seeded.trial, user=seeded.manager)
    assert adj["selected"] == "B" and adj["selected_reader"] == r2.pk
