"""Timepoint locking: baseline first, then each timepoint only after the reader signed the earlier ones."""

import pytest
from django.http import Http404

from audit.models import AuditEvent
from reads.exceptions import TaskNotAvailable, TimepointLocked
from reads.models import ReadTask
from reads.selectors import task_for_reader, worklist_for
from reads.services import read_save_draft, task_open

from .conftest import BASELINE, followup, read_and_sign, task_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def subject(reading, enroll, accept):
    subject = enroll("101-0001")
    for timepoint in ("W6", "BL", "W12"):  # order of arrival does not matter
        accept(subject, timepoint)
    return subject


def test_a_later_timepoint_cannot_be_opened_before_the_baseline_is_signed(subject):
    task = task_of(subject, "W6", "A")

    with pytest.raises(TimepointLocked, match="Week 6 is locked: sign the earlier timepoint.*Baseline"):
        task_open(task=task, user=task.reader.user)
    task.refresh_from_db()
    assert task.status == ReadTask.Status.OPEN and task.opened_at is None
    assert not AuditEvent.objects.filter(action="reads.task_opened", target_id=str(task.pk)).exists()


def test_opening_the_baseline_is_allowed_and_audited(subject):
    task = task_of(subject, "BL", "A")

    task_open(task=task, user=task.reader.user)

    task.refresh_from_db()
    assert task.status == ReadTask.Status.IN_PROGRESS and task.opened_at is not None
    assert AuditEvent.objects.filter(action="reads.task_opened", target_id=str(task.pk)).exists()


def test_signing_the_baseline_unlocks_the_next_timepoint_only(subject):
    read_and_sign(subject, "BL", "A", BASELINE)

    week6 = task_of(subject, "W6", "A")
    task_open(task=week6, user=week6.reader.user)
    week12 = task_of(subject, "W12", "A")
    with pytest.raises(TimepointLocked, match="Week 6"):
        task_open(task=week12, user=week12.reader.user)

    read_save_draft(task=week6, user=week6.reader.user, lesions=followup(28, 18))
    from reads.services import read_sign

    from .conftest import PASSWORD

    read_sign(task=week6, user=week6.reader.user, password=PASSWORD)
    task_open(task=week12, user=week12.reader.user)  # now allowed


def test_one_readers_signature_does_not_unlock_the_other_reader(subject):
    read_and_sign(subject, "BL", "A", BASELINE)

    other = task_of(subject, "W6", "B")
    with pytest.raises(TimepointLocked, match="Baseline"):
        task_open(task=other, user=other.reader.user)


def test_the_baseline_is_needed_even_when_no_earlier_task_exists_yet(reading, enroll, accept):
    subject = enroll("101-0002")
    accept(subject, "W6")  # the baseline scans have not arrived
    task = task_of(subject, "W6", "A")

    with pytest.raises(TimepointLocked, match="the baseline \\(Baseline\\) is read and signed first"):
        task_open(task=task, user=task.reader.user)


def test_the_task_view_refuses_a_locked_timepoint_and_the_worklist_marks_it(subject, reading):
    task = task_of(subject, "W12", "A")
    user = task.reader.user

    with pytest.raises(TimepointLocked):
        task_for_reader(user=user, task_id=task.pk)
    rows = {r.timepoint: r for r in worklist_for(user=user, trial=reading.trial)}
    assert not rows["BL"].locked
    assert rows["W6"].locked and rows["W12"].locked
    assert "Baseline" in rows["W12"].lock_reason


def test_a_reader_cannot_open_or_see_another_readers_task(subject):
    theirs = task_of(subject, "BL", "B")
    me = task_of(subject, "BL", "A").reader.user

    with pytest.raises(TaskNotAvailable, match="not assigned to you"):
        task_open(task=theirs, user=me)
    with pytest.raises(Http404):
        task_for_reader(user=me, task_id=theirs.pk)


def test_lesions_cannot_be_saved_on_an_unopened_task(subject):
    task = task_of(subject, "BL", "A")

    with pytest.raises(TaskNotAvailable, match="open the task"):
        read_save_draft(task=task, user=task.reader.user, lesions=BASELINE)
