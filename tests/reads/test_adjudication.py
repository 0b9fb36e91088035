"""Adjudication: triggers (overall response, best overall response, date of progression, each switchable per
trial), the adjudicator's A/B choice with a rationale and signature, and the BICR result it sets."""

import pytest

from audit.exceptions import SignatureError
from audit.models import AuditEvent
from reads.exceptions import AdjudicationStateError, ReadsError, ReasonRequired
from reads.models import Adjudication, BicrResult, Read
from reads.services import adjudication_resolve, read_settings_update

from .conftest import BASELINE, PASSWORD, followup, read_and_sign

pytestmark = pytest.mark.django_db


@pytest.fixture
def subject(reading, enroll, accept):
    subject = enroll("101-0001")
    for timepoint in ("BL", "W6", "W12", "W18"):
        accept(subject, timepoint)
    return subject


def read_both(subject, timepoint, a, b):
    read_and_sign(subject, timepoint, "A", a)
    return read_and_sign(subject, timepoint, "B", b)


def test_agreement_sets_the_bicr_result_from_read_a_and_opens_nothing(subject):
    read_both(subject, "BL", BASELINE, BASELINE)
    read_both(subject, "W6", followup(18, 12), followup(19, 12))  # both PR

    assert not Adjudication.objects.exists()
    results = {r.visit.timepoint: r for r in BicrResult.objects.filter(subject=subject)}
    assert set(results) == {"BL", "W6"}
    assert results["W6"].overall == "PR" and results["W6"].source == BicrResult.Source.AGREEMENT
    assert results["W6"].read.task.slot == "A"
    assert AuditEvent.objects.filter(action="reads.bicr_result_set", subject_id=subject.pk).exists()


def test_nothing_is_compared_until_both_readers_signed_the_timepoint(subject):
    read_both(subject, "BL", BASELINE, BASELINE)
    read_and_sign(subject, "W6", "A", followup(18, 12))  # PR; B has not read W6

    assert not Adjudication.objects.exists()
    assert not BicrResult.objects.filter(visit__timepoint="W6").exists()


def test_disagreement_on_overall_response_opens_an_adjudication_for_the_adjudicator(subject, reading):
    read_both(subject, "BL", BASELINE, BASELINE)
    read_both(subject, "W6", followup(18, 12), followup(25, 15))  # PR against SD

    adjudication = Adjudication.objects.get(subject=subject)
    assert adjudication.status == Adjudication.Status.OPEN
    assert adjudication.adjudicator == reading.readers["adjudicator"]
    assert {"kind": "overall", "visit": "W6", "A": "PR", "B": "SD"} in adjudication.triggers
    assert {"kind": "bor", "visit": "", "A": "PR", "B": "SD"} in adjudication.triggers
    assert adjudication.visits == ["BL", "W6"]
    assert adjudication.reads_a == list(Read.objects.filter(task__slot="A").order_by("task__visit__nominal_date")
                                        .values_list("pk", flat=True))
    assert AuditEvent.objects.filter(action="reads.adjudication_created", target_id=str(adjudication.pk)).exists()


def test_each_trigger_can_be_switched_off_per_trial(subject, reading):
    read_settings_update(actor=reading.manager, trial=reading.trial, reason="charter: adjudicate on PD date only",
                         adjudicate_on_overall=False, adjudicate_on_bor=False)
    read_both(subject, "BL", BASELINE, BASELINE)
    read_both(subject, "W6", followup(18, 12), followup(25, 15))  # PR against SD, no progression

    assert not Adjudication.objects.exists()
    assert AuditEvent.objects.filter(action="reads.settings_changed", reason__startswith="charter").exists()


def test_a_one_millimetre_difference_that_moves_the_progression_date_triggers(subject, reading):
    read_settings_update(actor=reading.manager, trial=reading.trial, reason="charter: adjudicate on PD date only",
                         adjudicate_on_overall=False, adjudicate_on_bor=False)
    read_both(subject, "BL", BASELINE, BASELINE)
    read_both(subject, "W6", followup(24, 16), followup(24, 16))  # 40 mm: SD, the nadir
    # W12: 48.5 mm is PD (≥ 48 and +8.5 mm over the nadir); 47.5 mm, one millimetre less, is not
    read_both(subject, "W12", followup(28.5, 20), followup(27.5, 20))
    w12 = subject.read_tasks.filter(visit__timepoint="W12").first().scan_date.isoformat()
    first = Adjudication.objects.get(subject=subject, status=Adjudication.Status.OPEN)
    assert first.triggers == [{"kind": "pd_date", "visit": "", "A": w12, "B": None}]

    read_both(subject, "W18", followup(35, 20), followup(35, 20))  # B sees progression one visit later

    first.refresh_from_db()
    assert first.status == Adjudication.Status.SUPERSEDED  # the compared reads changed
    adjudication = Adjudication.objects.get(subject=subject, status=Adjudication.Status.OPEN)
    w18 = subject.read_tasks.filter(visit__timepoint="W18").first().scan_date.isoformat()
    assert adjudication.triggers == [{"kind": "pd_date", "visit": "", "A": w12, "B": w18}]
    assert adjudication.visits == ["BL", "W6", "W12", "W18"]


def test_the_same_measurements_give_the_same_progression_date_and_no_adjudication(subject, reading):
    read_settings_update(actor=reading.manager, trial=reading.trial, reason="PD date only",
                         adjudicate_on_overall=False, adjudicate_on_bor=False)
    read_both(subject, "BL", BASELINE, BASELINE)
    read_both(subject, "W6", followup(24, 16), followup(24, 16))
    read_both(subject, "W12", followup(28.5, 20), followup(28.5, 20))

    assert not Adjudication.objects.exists()
    assert BicrResult.objects.get(visit__timepoint="W12").overall == "PD"


@pytest.fixture
def disagreement(subject):
    read_both(subject, "BL", BASELINE, BASELINE)
    read_both(subject, "W6", followup(18, 12), followup(25, 15))
    return Adjudication.objects.get(subject=subject)


def test_resolving_selects_the_read_as_bicr_result_with_a_signature(disagreement, reading):
    user = reading.users["adjudicator"]

    adj = adjudication_resolve(adjudication=disagreement, user=user, selected="B",
                               rationale="T1 margin is better seen on the portal venous phase", password=PASSWORD)

    assert adj.status == Adjudication.Status.RESOLVED and adj.selected == "B"
    assert adj.signature.signer == user and adj.signature.record_type == "reads.adjudication"
    results = {r.visit.timepoint: r for r in BicrResult.objects.filter(subject=disagreement.subject)}
    assert results["W6"].overall == "SD" and results["W6"].source == BicrResult.Source.ADJUDICATION
    assert results["W6"].read.task.slot == "B" and results["W6"].adjudication == adj
    assert results["BL"].read.task.slot == "B"
    event = AuditEvent.objects.get(action="reads.adjudication_resolved", target_id=str(adj.pk))
    assert event.reason.startswith("T1 margin") and event.details["selected"] == "B"


def test_a_settled_disagreement_is_not_adjudicated_again_and_carries_the_choice(disagreement, reading, subject):
    adjudication_resolve(adjudication=disagreement, user=reading.users["adjudicator"], selected="B",
                         rationale="B measured the right lesion", password=PASSWORD)

    # 35.5 mm: SD for both (A: +18 % over its 30 mm nadir; B: under its 40 mm nadir); BOR stays PR against SD
    read_both(subject, "W12", followup(23.5, 12), followup(23.5, 12))

    assert Adjudication.objects.filter(subject=subject).count() == 1
    w12 = BicrResult.objects.get(visit__timepoint="W12")
    assert w12.read.task.slot == "B"


@pytest.mark.parametrize(("selected", "rationale", "error", "match"), [
    ("C", "why", ReadsError, "read A or read B"),
    ("A", "  ", ReasonRequired, "say why"),
])
def test_bad_choices_are_refused(disagreement, reading, selected, rationale, error, match):
    with pytest.raises(error, match=match):
        adjudication_resolve(adjudication=disagreement, user=reading.users["adjudicator"], selected=selected,
                             rationale=rationale, password=PASSWORD)
    disagreement.refresh_from_db()
    assert disagreement.status == Adjudication.Status.OPEN


def test_a_wrong_password_resolves_nothing(disagreement, reading):
    with pytest.raises(SignatureError):
        adjudication_resolve(adjudication=disagreement, user=reading.users["adjudicator"], selected="A",
                             rationale="A is right", password="nope")

    disagreement.refresh_from_db()
    assert disagreement.status == Adjudication.Status.OPEN and disagreement.signature is None
    assert not BicrResult.objects.filter(source=BicrResult.Source.ADJUDICATION).exists()


def test_only_the_assigned_adjudicator_resolves_and_only_once(disagreement, reading):
    with pytest.raises(AdjudicationStateError, match="not assigned to you"):
        adjudication_resolve(adjudication=disagreement, user=reading.users["reader1"], selected="A",
                             rationale="mine is right", password=PASSWORD)
    adjudication_resolve(adjudication=disagreement, user=reading.users["adjudicator"], selected="A",
                         rationale="A is right", password=PASSWORD)
    with pytest.raises(AdjudicationStateError, match="resolved"):
        adjudication_resolve(adjudication=disagreement, user=reading.users["adjudicator"], selected="B",
                             rationale="changed my mind", password=PASSWORD)


def test_a_correction_that_ends_the_disagreement_closes_the_open_adjudication(disagreement, subject):
    from reads.services import read_correct

    b_week6 = Read.objects.get(task__slot="B", task__visit__timepoint="W6")
    read_correct(read=b_week6, user=b_week6.task.reader.user, lesions=followup(18, 12),
                 reason="measured the wrong slice", password=PASSWORD)

    disagreement.refresh_from_db()
    assert disagreement.status == Adjudication.Status.SUPERSEDED
    assert not Adjudication.objects.filter(status=Adjudication.Status.OPEN).exists()
    assert BicrResult.objects.get(visit__timepoint="W6").overall == "PR"


def test_a_reader_of_the_subject_never_adjudicates_it_and_a_manager_assigns_one_later(subject, reading):
    from reads.exceptions import ReaderNotQualified
    from reads.services import adjudication_assign, reader_deactivate
    from trials.models import Role

    from ..trials.factories import MembershipFactory
    from .conftest import member, pool_add

    reader1 = reading.users["reader1"]
    MembershipFactory(user=reader1, trial=reading.trial, role=Role.ADJUDICATOR)  # reads and adjudicates
    reader_deactivate(actor=reading.manager, reader=reading.readers["adjudicator"], reason="on leave")
    read_both(subject, "BL", BASELINE, BASELINE)
    read_both(subject, "W6", followup(18, 12), followup(25, 15))

    adjudication = Adjudication.objects.get(subject=subject)
    assert adjudication.adjudicator is None  # reader1 is qualified to adjudicate, but reads this subject
    with pytest.raises(ReadsError, match="never adjudicates a subject they read"):
        adjudication_assign(actor=reading.manager, adjudication=adjudication, adjudicator=reading.readers["reader1"])
    with pytest.raises(ReaderNotQualified):
        adjudication_assign(actor=reading.manager, adjudication=adjudication,
                            adjudicator=reading.readers["adjudicator"])

    second = pool_add(reading, member(reading.trial, Role.ADJUDICATOR, "adjudicator2"))
    adjudication_assign(actor=reading.manager, adjudication=adjudication, adjudicator=second)
    adjudication.refresh_from_db()
    assert adjudication.adjudicator == second
    assert AuditEvent.objects.filter(action="reads.adjudication_assigned", target_id=str(adjudication.pk)).exists()


def test_reading_settings_refuse_unknown_fields_and_a_missing_reason(reading):
    with pytest.raises(ReadsError, match="unknown reading settings: adjudicate_on_mood"):
        read_settings_update(actor=reading.manager, trial=reading.trial, reason="x", adjudicate_on_mood=True)
    with pytest.raises(ReasonRequired):
        read_settings_update(actor=reading.manager, trial=reading.trial, reason="", adjudicate_on_bor=False)
    assert not AuditEvent.objects.filter(action="reads.settings_changed").exists()
