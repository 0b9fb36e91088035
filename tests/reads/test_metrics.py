"""Agreement and performance metrics on a seeded trial, numbers worked out by hand from the reads below.

Three subjects, read by reader1 (slot A) and reader2 (slot B); overall responses (A, B):

    101-0001  W6 (PR, PR)  W12 (PR, PR)
    101-0002  W6 (SD, SD)  W12 (PD, SD)   -> adjudicated, the adjudicator selects A
    101-0003  W6 (PR, SD)                 -> adjudicated, the adjudicator selects A

Whole trial, 5 paired timepoints, 3 agree: percent agreement 60 %. Marginals A: PR 3, SD 1, PD 1; B: PR 2, SD 3.
p_o = 3/5, p_e = (3*2 + 1*3 + 1*0)/25 = 9/25, kappa = (15/25 - 9/25)/(16/25) = 6/16 = 0.375.
Adjudication rate 2/3; disagreement index 2/5 for both; adjudicator agreement reader1 2/2, reader2 0/2.
"""

import datetime

import pytest
from django.utils import timezone

from reads.metrics import TWO_READERS, agreement_report, rate
from reads.models import Adjudication, Read
from reads.services import adjudication_resolve

from .conftest import BASELINE, PASSWORD, followup, read_and_sign, task_of

pytestmark = pytest.mark.django_db

PR, SD, PD = followup(18, 12), followup(25, 15), followup(30, 20)  # sums 30, 40, 50 against a baseline of 50
PR2 = followup(17, 12)
APRIL = datetime.datetime(2026, 4, 10, 12, 0, tzinfo=datetime.UTC)
MAY = datetime.datetime(2026, 5, 12, 12, 0, tzinfo=datetime.UTC)


def read_both(subject, timepoint, a, b):
    read_and_sign(subject, timepoint, "A", a)
    read_and_sign(subject, timepoint, "B", b)


def resolve(subject, reading, slot: str):
    adjudication = Adjudication.objects.get(subject=subject, status=Adjudication.Status.OPEN)
    return adjudication_resolve(adjudication=adjudication, user=reading.users["adjudicator"], selected=slot,
                                rationale="Measurements of read A follow the charter", password=PASSWORD)


def backdate(subject, moment):
    """Time passing between reading sessions: the subject's reads and adjudications happened at ``moment``."""
    Read.objects.filter(task__subject=subject).update(signed_at=moment)
    Adjudication.objects.filter(subject=subject).update(created_at=moment)


def seed(reading, enroll, accept) -> dict:
    """The three subjects of the module docstring, read through the services; S1/S2 in April, S3 in May."""
    subjects = {}
    for code, timepoints in (("101-0001", ("BL", "W6", "W12")), ("101-0002", ("BL", "W6", "W12")),
                             ("101-0003", ("BL", "W6"))):
        subject = subjects[code] = enroll(code)
        for timepoint in timepoints:
            accept(subject, timepoint)
    s1, s2, s3 = subjects.values()
    for subject in (s1, s2, s3):
        assert task_of(subject, "BL", "A").reader == reading.readers["reader1"]
        assert task_of(subject, "BL", "B").reader == reading.readers["reader2"]
        read_both(subject, "BL", BASELINE, BASELINE)
    read_both(s1, "W6", PR, PR)
    read_both(s1, "W12", PR2, PR2)
    read_both(s2, "W6", SD, SD)
    read_both(s2, "W12", PD, SD)
    read_both(s3, "W6", PR, SD)
    resolve(s2, reading, "A")
    resolve(s3, reading, "A")
    backdate(s1, APRIL)
    backdate(s2, APRIL)
    backdate(s3, MAY)
    return subjects


@pytest.fixture
def seeded(reading, enroll, accept):
    return seed(reading, enroll, accept)


def by_reader(block: dict) -> dict:
    return {r["reader"]: r for r in block["readers"]}


def test_whole_trial_kappa_and_percent_agreement(seeded, reading):
    report = agreement_report(trial=reading.trial)
    overall = report["overall"]

    [pair] = overall["pairs"]
    assert pair["readers"] == ["reader1", "reader2"]
    assert pair["n"] == 5
    assert pair["percent_agreement"] == {"value": 60.0, "n": 5, "reason": ""}
    assert pair["cohen_kappa"] == {"value": 0.375, "n": 5, "reason": ""}
    assert overall["percent_agreement"]["value"] == 60.0
    # two readers: Fleiss' kappa is not reported
    assert overall["fleiss_kappa"] == {"value": None, "n": 5, "reason": TWO_READERS}


def test_whole_trial_adjudication_and_reader_rates(seeded, reading):
    overall = agreement_report(trial=reading.trial)["overall"]

    assert overall["adjudication"] == {"subjects_compared": 3, "subjects_adjudicated": 2, "open": 0, "resolved": 2,
                                       "rate": {"value": 0.6667, "numerator": 2, "denominator": 3}}
    readers = by_reader(overall)
    assert set(readers) == {"reader1", "reader2"}  # the adjudicator signs no reads and is no primary reader
    assert readers["reader1"]["disagreement_index"] == {"value": 0.4, "numerator": 2, "denominator": 5}
    assert readers["reader2"]["disagreement_index"] == {"value": 0.4, "numerator": 2, "denominator": 5}
    assert readers["reader1"]["adjudicator_agreement"] == {"value": 1.0, "numerator": 2, "denominator": 2}
    assert readers["reader2"]["adjudicator_agreement"] == {"value": 0.0, "numerator": 0, "denominator": 2}
    # 3 + 3 + 2 signatures each
    assert readers["reader1"]["signed_reads"] == 8 and readers["reader2"]["signed_reads"] == 8


def test_per_month_drift(seeded, reading):
    months = {m["month"]: m for m in agreement_report(trial=reading.trial)["months"]}
    assert list(months) == ["2026-04", "2026-05"]

    # April: (PR,PR) (PR,PR) (SD,SD) (PD,SD): p_o 3/4, p_e (2*2 + 1*2)/16 = 6/16, kappa (12/16-6/16)/(10/16) = 0.6
    april = months["2026-04"]
    assert april["pairs"][0]["cohen_kappa"]["value"] == 0.6
    assert april["percent_agreement"]["value"] == 75.0
    assert april["adjudication"]["rate"] == {"value": 0.5, "numerator": 1, "denominator": 2}
    assert by_reader(april)["reader1"]["disagreement_index"]["value"] == 0.25
    assert by_reader(april)["reader1"]["signed_reads"] == 6

    # May: one timepoint, (PR, SD): p_o 0, p_e 0, kappa 0
    may = months["2026-05"]
    assert may["pairs"][0]["cohen_kappa"] == {"value": 0.0, "n": 1, "reason": ""}
    assert may["percent_agreement"]["value"] == 0.0
    assert may["adjudication"]["rate"]["value"] == 1.0
    assert by_reader(may)["reader2"]["disagreement_index"]["value"] == 1.0
    assert by_reader(may)["reader2"]["adjudicator_agreement"]["value"] == 0.0
    assert by_reader(may)["reader2"]["signed_reads"] == 2


def test_a_corrected_read_counts_with_its_current_version(seeded, reading):
    from reads.services import read_correct

    s3 = seeded["101-0003"]
    read = Read.objects.get(task=task_of(s3, "W6", "B"), status=Read.Status.SIGNED)
    read_correct(read=read, user=reading.users["reader2"], lesions=PR, reason="T1 was measured on the wrong slice",
                 password=PASSWORD)

    overall = agreement_report(trial=reading.trial)["overall"]
    assert overall["percent_agreement"]["value"] == 80.0  # S3 W6 now (PR, PR): 4 of 5
    # the correction is one more signature, made now
    assert by_reader(overall)["reader2"]["signed_reads"] == 9
    this_month = timezone.now().strftime("%Y-%m")
    assert [m["month"] for m in agreement_report(trial=reading.trial)["months"]][-1] == this_month


def test_fleiss_kappa_when_more_than_two_readers_took_part(reading, enroll, accept, reader3):
    s4, s5 = enroll("101-0004"), enroll("101-0005")
    accept(s4, "BL")  # reader1 and reader2 (least open work, then the earlier readers)
    accept(s5, "BL")  # reader3 has no open work: reader3 and reader1
    assert task_of(s5, "BL", "A").reader == reader3
    accept(s4, "W6")
    accept(s5, "W6")
    for subject in (s4, s5):
        read_both(subject, "BL", BASELINE, BASELINE)
    read_both(s4, "W6", PR, SD)
    read_both(s5, "W6", SD, SD)

    overall = agreement_report(trial=reading.trial)["overall"]
    # items [PR, SD] and [SD, SD]: P = (0 + 1)/2; p_PR = 1/4, p_SD = 3/4, P_e = 10/16; (8/16 - 10/16)/(6/16) = -1/3
    assert overall["fleiss_kappa"] == {"value": -0.3333, "n": 2, "reason": ""}
    assert [p["readers"] for p in overall["pairs"]] == [["reader1", "reader2"], ["reader1", "reader3"]]
    # each pair rated one category only: Cohen's kappa is undefined there, and says why
    reader13 = overall["pairs"][1]
    assert reader13["cohen_kappa"]["value"] is None and "one category" in reader13["cohen_kappa"]["reason"]
    assert by_reader(overall)["reader3"]["disagreement_index"]["value"] == 0.0


def test_a_trial_without_reads_reports_nothing_and_says_why(reading):
    report = agreement_report(trial=reading.trial)
    assert report["months"] == []
    assert report["overall"]["pairs"] == []
    assert report["overall"]["percent_agreement"] == {"value": None, "n": 0, "reason": "no items"}
    assert report["overall"]["adjudication"]["rate"] == {"value": None, "numerator": 0, "denominator": 0}


def test_rate_rounds_half_up_to_four_places():
    assert rate(2, 3)["value"] == 0.6667
    assert rate(1, 8)["value"] == 0.125
    assert rate(0, 0)["value"] is None
