"""Reader pool, qualification, assignment balance, the same two readers across timepoints, and the
randomized, recorded worklist order."""

import datetime
import random

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditEvent
from reads.blinding import reading_id
from reads.exceptions import NotEnoughReaders, ReaderNotQualified, ReaderUnavailable, ReadsError
from reads.models import ReadTask, WorklistOrder
from reads.selectors import worklist_for
from reads.services import (
    qualified_readers,
    reader_add,
    reader_deactivate,
    tasks_create_for_timepoint,
    worklist_randomize,
)
from trials.models import Role

from ..trials.factories import ProtocolVersionFactory, demo_charter
from .conftest import member, pool_add

pytestmark = pytest.mark.django_db


def test_an_accepted_timepoint_gets_two_tasks_for_two_different_readers(reading, enroll, accept):
    subject = enroll("101-0001")
    accept(subject, "BL")

    tasks = list(ReadTask.objects.filter(subject=subject))
    assert sorted(t.slot for t in tasks) == ["A", "B"]
    assert len({t.reader_id for t in tasks}) == 2
    assert {t.reader.user.username for t in tasks} == {"reader1", "reader2"}  # the adjudicator holds no READ
    assert AuditEvent.objects.filter(action="reads.task_created", subject_id=subject.pk).count() == 2


def test_a_timepoint_with_a_required_study_missing_gets_no_task(reading, enroll, accept):
    subject = enroll("101-0001")
    accept(subject, "BL", procedures=["CT_CAP"])  # MR_BRAIN still missing

    assert not ReadTask.objects.filter(subject=subject).exists()
    accept(subject, "BL", procedures=["MR_BRAIN"])
    assert ReadTask.objects.filter(subject=subject).count() == 2


def test_task_creation_is_idempotent(reading, enroll, accept):
    subject = enroll("101-0001")
    accept(subject, "BL")
    visit = subject.visits.get(timepoint="BL")

    again = tasks_create_for_timepoint(subject=subject, visit=visit)

    assert sorted(t.pk for t in again) == sorted(ReadTask.objects.filter(visit=visit).values_list("pk", flat=True))
    assert ReadTask.objects.filter(visit=visit).count() == 2


def test_the_same_two_readers_read_every_timepoint_of_a_subject(reading, enroll, accept, reader3):
    subject = enroll("101-0001")
    accept(subject, "BL")
    first = {t.slot: t.reader_id for t in ReadTask.objects.filter(subject=subject)}
    # another subject loads the first two readers; the subject's later timepoints still go to them
    accept(enroll("101-0002"), "BL")
    for timepoint in ("W6", "W12"):
        accept(subject, timepoint)

    for timepoint in ("W6", "W12"):
        tasks = ReadTask.objects.filter(subject=subject, visit__timepoint=timepoint)
        assert {t.slot: t.reader_id for t in tasks} == first


def test_new_subjects_go_to_the_least_loaded_readers_with_a_stable_tie_break(reading, enroll, accept, reader3):
    r1, r2, r3 = (reading.readers[name] for name in ("reader1", "reader2", "reader3"))
    accept(enroll("101-0001"), "BL")  # all idle: ties go to the earliest readers
    assert set(ReadTask.objects.filter(subject__code="101-0001").values_list("reader", flat=True)) == {r1.pk, r2.pk}

    accept(enroll("101-0002"), "BL")  # r3 idle, r1 and r2 one open task each: r3 and r1
    assert set(ReadTask.objects.filter(subject__code="101-0002").values_list("reader", flat=True)) == {r3.pk, r1.pk}

    accept(enroll("101-0003"), "BL")  # r1 2, r2 1, r3 1: r2 and r3
    assert set(ReadTask.objects.filter(subject__code="101-0003").values_list("reader", flat=True)) == {r2.pk, r3.pk}

    load = {r.pk: ReadTask.objects.filter(reader=r).count() for r in (r1, r2, r3)}
    assert sorted(load.values()) == [2, 2, 2]


def test_an_unqualified_reader_is_never_assigned(reading, enroll, accept):
    untrained = member(reading.trial, Role.READER, "untrained")
    reader_add(actor=reading.manager, trial=reading.trial, user=untrained)  # in the pool, no training
    wrong_criteria = member(reading.trial, Role.READER, "lugano")
    reader_add(actor=reading.manager, trial=reading.trial, user=wrong_criteria, qualifications=["Lugano 2014"])

    for n in range(3):
        accept(enroll(f"101-000{n + 1}"), "BL")

    assigned = set(ReadTask.objects.values_list("reader__user__username", flat=True))
    assert assigned == {"reader1", "reader2"}


def test_training_on_an_older_charter_version_does_not_qualify(reading):
    assert {r.user.username for r in qualified_readers(trial=reading.trial)} == {"reader1", "reader2"}
    reading.version.is_current = False
    reading.version.save(update_fields=["is_current"])
    ProtocolVersionFactory(trial=reading.trial, label="2.0", charter=demo_charter())

    assert qualified_readers(trial=reading.trial) == []


def test_fewer_than_two_qualified_readers_is_a_clear_error(reading, enroll):
    reader_deactivate(actor=reading.manager, reader=reading.readers["reader2"], reason="left the core lab")
    subject = enroll("101-0001")
    visit = subject.visits.get(timepoint="BL")
    from qc.services import study_accept

    from .conftest import pending_study

    for procedure in visit.procedures:
        study_accept(analyst=reading.qc, study=pending_study(subject, visit, procedure))

    with pytest.raises(NotEnoughReaders, match="two are needed"):
        tasks_create_for_timepoint(subject=subject, visit=visit)


def test_a_subject_whose_reader_left_waits_for_reassignment(reading, enroll, accept):
    subject = enroll("101-0001")
    accept(subject, "BL")
    reader_deactivate(actor=reading.manager, reader=reading.readers["reader2"], reason="left the core lab")
    accept(subject, "W6")  # the receiver logs and leaves the timepoint for the sweeper

    assert not ReadTask.objects.filter(subject=subject, visit__timepoint="W6").exists()
    with pytest.raises(ReaderUnavailable, match="reassign"):
        tasks_create_for_timepoint(subject=subject, visit=subject.visits.get(timepoint="W6"))


def test_the_sweeper_finds_a_ready_timepoint_without_tasks(reading, enroll, accept):
    from django.utils import timezone

    from reads.receivers import timepoint_tasks_ensure, timepoints_without_tasks

    subject = enroll("101-0001")
    accept(subject, "BL")
    reader_deactivate(actor=reading.manager, reader=reading.readers["reader2"], reason="left")
    w6 = accept(subject, "W6")
    later = timezone.now() + datetime.timedelta(hours=1)
    found = timepoints_without_tasks(later)
    assert found == [w6[0].pk]

    reader3 = member(reading.trial, Role.READER, "reader3")
    pool_add(reading, reader3)
    from reads.services import task_reassign

    task_reassign(actor=reading.manager, task=ReadTask.objects.get(subject=subject, slot="B"),
                  new_reader=reading.readers["reader3"], reason="reader2 left the core lab")
    timepoint_tasks_ensure(found[0])
    assert timepoints_without_tasks(later) == []
    assert ReadTask.objects.get(visit__timepoint="W6", slot="B", subject=subject).reader == reading.readers["reader3"]


def test_reader_pool_changes_are_refused_clearly(reading, outsider):
    with pytest.raises(ReaderNotQualified, match="holds no reader or adjudicator role"):
        reader_add(actor=reading.manager, trial=reading.trial, user=reading.qc)
    with pytest.raises(ReadsError, match="already in the reader pool"):
        reader_add(actor=reading.manager, trial=reading.trial, user=reading.users["reader1"])
    with pytest.raises(ReaderNotQualified, match="at least one qualification"):
        reader_add(actor=reading.manager, trial=reading.trial, user=member(reading.trial, Role.READER, "r9"),
                   qualifications=[" "])
    with pytest.raises(PermissionDenied):
        reader_deactivate(actor=outsider, reader=reading.readers["reader1"], reason="x")
    with pytest.raises(ReadsError, match="say why"):
        reader_deactivate(actor=reading.manager, reader=reading.readers["reader1"], reason="  ")


def test_each_reader_worklist_order_is_a_recorded_reproducible_permutation(reading, enroll, accept):
    subjects = [enroll(f"101-{n:04d}") for n in range(1, 7)]
    for subject in subjects:
        accept(subject, "BL")
    reader = reading.readers["reader1"]

    record = WorklistOrder.objects.filter(reader=reader).order_by("-created_at", "-pk").first()
    mine = sorted(set(ReadTask.objects.filter(reader=reader).values_list("subject_id", flat=True)))
    expected = list(mine)
    random.Random(record.seed).shuffle(expected)
    assert record.order == expected
    event = AuditEvent.objects.filter(action="reads.worklist_randomized", target_id=str(record.pk)).get()
    assert event.details == {"reader": reader.pk, "seed": record.seed, "order": expected}

    rows = worklist_for(user=reading.users["reader1"], trial=reading.trial)
    codes = {s.pk: reading_id(subject=s) for s in subjects}
    assert [r.reading_id for r in rows] == [codes[pk] for pk in expected]


def test_a_given_seed_gives_the_same_order(reading, enroll, accept):
    for n in range(1, 6):
        accept(enroll(f"101-{n:04d}"), "BL")
    reader = reading.readers["reader2"]

    first = worklist_randomize(actor=reading.manager, reader=reader, seed=424242)
    second = worklist_randomize(actor=reading.manager, reader=reader, seed=424242)
    other = worklist_randomize(actor=reading.manager, reader=reader, seed=7)

    assert first.order == second.order
    assert sorted(first.order) == sorted(other.order)
    assert first.order != other.order  # five subjects: the two seeds give different permutations
