"""Re-reads and reassignment: a superseded study sends its timepoint back to the reader, a reader who leaves
hands the subject to another; earlier reads are always kept and marked."""

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditEvent
from reads.exceptions import ReaderNotQualified, ReadsError, ReasonRequired, TaskNotAvailable, TimepointLocked
from reads.models import Read, ReadTask
from reads.selectors import worklist_for
from reads.services import task_open, task_reassign, task_reread

from .conftest import BASELINE, followup, read_and_sign, task_of

pytestmark = pytest.mark.django_db
T = ReadTask.Status


@pytest.fixture
def subject(reading, enroll, accept):
    subject = enroll("101-0001")
    for timepoint in ("BL", "W6"):
        accept(subject, timepoint)
    read_and_sign(subject, "BL", "A", BASELINE)
    read_and_sign(subject, "BL", "B", BASELINE)
    return subject


def test_a_read_timepoint_whose_study_is_superseded_is_read_again(subject, accept, reading):
    old = {slot: task_of(subject, "BL", slot) for slot in "AB"}

    accept(subject, "BL", procedures=["CT_CAP"])  # a rescan, accepted at QC: version 1 superseded

    for slot, task in old.items():
        task.refresh_from_db()
        assert task.status == T.SUPERSEDED and "superseded by a new version" in task.replaced_reason
        assert Read.objects.get(task=task).status == Read.Status.SUPERSEDED  # kept, marked
        new = task_of(subject, "BL", slot)
        assert task.replaced_by == new
        assert (new.reader, new.status) == (task.reader, T.OPEN)
        assert AuditEvent.objects.filter(action="reads.task_reread", target_id=str(task.pk)).exists()
    # the re-read baseline locks the next timepoint again
    week6 = task_of(subject, "W6", "A")
    with pytest.raises(TimepointLocked):
        task_open(task=week6, user=week6.reader.user)


def test_an_unopened_timepoint_is_not_re_read_on_a_rescan(subject, accept):
    before = set(ReadTask.objects.filter(visit__timepoint="W6").values_list("pk", flat=True))

    accept(subject, "W6", procedures=["MR_BRAIN"])

    assert set(ReadTask.objects.filter(visit__timepoint="W6").values_list("pk", flat=True)) == before
    assert not ReadTask.objects.filter(status=T.SUPERSEDED).exists()


def test_a_manager_can_send_a_timepoint_back_with_a_reason(subject, reading):
    task = task_of(subject, "BL", "A")

    with pytest.raises(ReasonRequired):
        task_reread(actor=reading.manager, task=task, reason="")
    with pytest.raises(PermissionDenied):
        task_reread(actor=reading.users["reader1"], task=task, reason="I want to")
    new = task_reread(actor=reading.manager, task=task, reason="wrong series read (site query 12)")

    task.refresh_from_db()
    assert task.status == T.SUPERSEDED and task.replaced_by == new
    event = AuditEvent.objects.get(action="reads.task_reread", target_id=str(task.pk))
    assert event.reason == "wrong series read (site query 12)" and event.actor == reading.manager
    with pytest.raises(TaskNotAvailable, match="already replaced"):
        task_reread(actor=reading.manager, task=task, reason="again")


def test_reassignment_moves_the_readers_slot_and_keeps_the_earlier_reads(subject, reading, reader3):
    leaving = task_of(subject, "BL", "B")
    signed = Read.objects.get(task=leaving)

    new_tasks = task_reassign(actor=reading.manager, task=leaving, new_reader=reader3,
                              reason="reader2 left the core lab")

    assert [t.visit.timepoint for t in new_tasks] == ["BL", "W6"]  # the new reader starts from baseline
    assert {t.reader for t in new_tasks} == {reader3} and {t.slot for t in new_tasks} == {"B"}
    leaving.refresh_from_db()
    signed.refresh_from_db()
    assert leaving.status == T.REASSIGNED and leaving.replaced_reason == "reader2 left the core lab"
    assert signed.status == Read.Status.SUPERSEDED and signed.signature is not None
    assert AuditEvent.objects.filter(action="reads.task_reassigned", reason="reader2 left the core lab").count() == 2
    assert worklist_for(user=reading.users["reader2"], trial=reading.trial) == []
    assert [r.timepoint for r in worklist_for(user=reading.users["reader3"], trial=reading.trial)] == ["BL", "W6"]
    with pytest.raises(TaskNotAvailable):
        task_open(task=leaving, user=reading.users["reader2"])
    # reader A's work is untouched
    assert task_of(subject, "BL", "A").status == T.SIGNED


def test_reassignment_is_refused_clearly(subject, reading, reader3):
    task = task_of(subject, "BL", "B")
    other_slot = task_of(subject, "BL", "A").reader

    with pytest.raises(ReasonRequired):
        task_reassign(actor=reading.manager, task=task, new_reader=reader3, reason=" ")
    with pytest.raises(ReadsError, match="independent"):
        task_reassign(actor=reading.manager, task=task, new_reader=other_slot, reason="balance")
    with pytest.raises(ReaderNotQualified):
        task_reassign(actor=reading.manager, task=task, new_reader=reading.readers["adjudicator"], reason="x")
    with pytest.raises(PermissionDenied):
        task_reassign(actor=reading.qc, task=task, new_reader=reader3, reason="x")
    assert task_of(subject, "BL", "B") == task


def test_after_reassignment_the_new_reader_reads_and_adjudication_compares_the_new_reads(subject, reading, reader3):
    from reads.models import Adjudication

    read_and_sign(subject, "W6", "A", followup(18, 12))  # PR
    task_reassign(actor=reading.manager, task=task_of(subject, "BL", "B"), new_reader=reader3, reason="left")
    read_and_sign(subject, "BL", "B", BASELINE)
    read_and_sign(subject, "W6", "B", followup(25, 15))  # SD

    adjudication = Adjudication.objects.get(subject=subject)
    assert {r.task.reader for r in Read.objects.filter(pk__in=adjudication.reads_b)} == {reader3}
