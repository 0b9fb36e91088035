"""Signed responses that an earlier timepoint's correction made out of date are shown as such, to the reader,
until the reader corrects the later read (which recomputes them); signed records never change by themselves."""

import copy

import pytest

from reads.models import Read
from reads.selectors import task_for_reader, worklist_for
from reads.services import read_correct

from .conftest import BASELINE, PASSWORD, followup, read_and_sign, task_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def subject(reading, enroll, accept):
    subject = enroll("101-0001")
    for timepoint in ("BL", "W6"):
        accept(subject, timepoint)
    read_and_sign(subject, "BL", "A", copy.deepcopy(BASELINE))   # sum 50 mm
    read_and_sign(subject, "W6", "A", followup(20, 14))           # 34 mm: -32 %, a partial response
    return subject


def _correct(subject, timepoint: str, lesions: dict) -> Read:
    task = task_of(subject, timepoint, "A")
    read = task.reads.get(status=Read.Status.SIGNED)
    return read_correct(read=read, user=task.reader.user, lesions=lesions, reason="wrong lesion size entered",
                        password=PASSWORD)


def test_correcting_the_baseline_marks_the_signed_follow_up_out_of_date_until_it_is_corrected(subject):
    w6 = task_of(subject, "W6", "A")
    user = w6.reader.user
    assert task_for_reader(user=user, task_id=w6.pk).stale_because == ""

    baseline = copy.deepcopy(BASELINE)
    baseline["targets"][0]["mm"] = 22  # sum 42 mm: week 6's 34 mm is now -19 %, stable disease
    _correct(subject, "BL", baseline)

    view = task_for_reader(user=user, task_id=w6.pk)
    assert "Baseline" in view.stale_because and "was corrected on" in view.stale_because
    assert view.current.overall == "PR"  # the signed record is unchanged
    rows = {row.timepoint: row.stale_because for row in worklist_for(user=user, trial=subject.trial)}
    assert rows["BL"] == "" and rows["W6"] == view.stale_because

    corrected = _correct(subject, "W6", followup(20, 14))

    assert corrected.overall == "SD"  # recomputed against the corrected baseline
    assert task_for_reader(user=user, task_id=w6.pk).stale_because == ""
    assert all(row.stale_because == "" for row in worklist_for(user=user, trial=subject.trial))


def test_the_other_readers_reads_are_not_affected(subject):
    read_and_sign(subject, "BL", "B", copy.deepcopy(BASELINE))
    read_and_sign(subject, "W6", "B", followup(20, 14))
    _correct(subject, "BL", copy.deepcopy(BASELINE))

    w6_b = task_of(subject, "W6", "B")
    assert task_for_reader(user=w6_b.reader.user, task_id=w6_b.pk).stale_because == ""
    w6_a = task_of(subject, "W6", "A")
    assert task_for_reader(user=w6_a.reader.user, task_id=w6_a.pk).stale_because != ""


def test_the_read_page_and_the_worklist_say_what_to_correct(client, subject):
    _correct(subject, "BL", copy.deepcopy(BASELINE))
    w6 = task_of(subject, "W6", "A")
    client.force_login(w6.reader.user)

    page = client.get(f"/reads/tasks/{w6.pk}").content.decode()
    worklist = client.get(f"/reads/trials/{subject.trial.pk}/worklist").content.decode()

    assert 'id="read-stale"' in page and "was corrected on" in page
    assert worklist.count("Signed · to correct") == 1


def test_the_api_says_it_too(client, subject):
    _correct(subject, "BL", copy.deepcopy(BASELINE))
    w6 = task_of(subject, "W6", "A")
    client.force_login(w6.reader.user)

    task = client.get(f"/api/reads/tasks/{w6.pk}/").json()
    rows = client.get(f"/api/reads/trials/{subject.trial.pk}/worklist/").json()

    assert "was corrected on" in task["stale_because"]
    assert {row["timepoint"]: bool(row["stale_because"]) for row in rows} == {"BL": False, "W6": True}
