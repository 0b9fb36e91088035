"""What a WADO-RS frame request costs in SQL. The viewer fetches a CT series one frame per request (500 requests
for 500 slices), so every query here is paid 500 times: the counts are pinned, and the reader's timepoint lock,
which the selector decides in Python from one query, is checked against ``services.lock_reason`` itself."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from reads.dicomweb.selectors import _reader_visit_ids
from reads.models import ReadTask
from reads.services import lock_reason
from trials.models import Membership, Role
from trials.permissions import Perm, trial_ids_by_perm, trial_ids_with

from ..qc.conftest import deidentify, make_study, ready_site, stores, upload  # noqa: F401  (QC's fixtures)
from .conftest import BASELINE, followup, read_and_sign
from .test_dicomweb import uids
from .test_dicomweb_blinding import read_study  # noqa: F401  (an accepted study with a reader's task on it)

FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
AUTH_QUERIES = 2  # the session and its user (SessionAuthentication), before the view runs


def frame_queries(user, study) -> list[str]:
    """The SQL of one frame request by the user (asserting it succeeds)."""
    study_uid, series_uid, sops = uids(study)
    client = Client()
    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sops[1]}/frames/1",
                              HTTP_ACCEPT=FRAME_ACCEPT)
        body = b"".join(response.streaming_content)
    assert response.status_code == 200 and body
    return [query["sql"] for query in ctx.captured_queries]


def assert_queries(queries: list[str], expected: int, who: str) -> None:
    assert len(queries) == expected, (
        f"a frame request by {who} made {len(queries)} queries, not {expected}; the viewer pays each once per "
        "slice. The queries:\n" + "\n".join(f"{n}. {sql}" for n, sql in enumerate(queries, 1)))


@pytest.mark.django_db(transaction=True)
def test_a_frame_costs_the_qc_analyst_one_membership_query_and_one_records_query(qc_analyst, read_study):  # noqa: F811
    # no measurement-report query: the image answered the SOP Instance UID asked for
    assert_queries(frame_queries(qc_analyst, read_study), AUTH_QUERIES + 2, "a QC analyst")


@pytest.mark.django_db(transaction=True)
def test_a_frame_costs_the_reader_one_query_more_for_their_tasks(reader1, read_study):  # noqa: F811
    # memberships, the reader's tasks with what their locks depend on, the records; no report query (blinded)
    assert_queries(frame_queries(reader1, read_study), AUTH_QUERIES + 3, "a reader")


# -- the reader's timepoint lock, decided in one query, agrees with lock_reason ---------------------------

def open_visits(user, trial) -> set[int]:
    """What lock_reason lets the user open: the visits of their signed and unlocked live tasks."""
    tasks = ReadTask.objects.filter(reader__user=user, reader__active=True, trial=trial, status__in=ReadTask.LIVE)
    return {t.visit_id for t in tasks if t.status == ReadTask.Status.SIGNED or not lock_reason(task=t)}


@pytest.mark.django_db
def test_the_readers_open_visits_are_those_lock_reason_allows(reading, enroll, accept, reader1, reader2):
    first = enroll("101-0001")
    for timepoint in ("W6", "BL", "W12"):
        accept(first, timepoint)
    second = enroll("101-0002")
    accept(second, "W6")  # the baseline scans have not arrived: W6 stays locked

    def check() -> None:
        for user in (reader1, reader2):
            expected = open_visits(user, reading.trial)
            assert _reader_visit_ids(user=user, trial_ids={reading.trial.pk}) == expected, user.username
            live = set(ReadTask.objects.filter(reader__user=user, status__in=ReadTask.LIVE)
                       .values_list("visit_id", flat=True))
            assert expected < live  # some timepoint is still locked at every step: the check has teeth

    check()
    read_and_sign(first, "BL", "A", BASELINE)
    check()
    read_and_sign(first, "W6", "A", followup(28, 18))
    check()
    read_and_sign(first, "BL", "B", BASELINE)
    check()
    assert _reader_visit_ids(user=reader1, trial_ids=set()) == set()


@pytest.mark.django_db
def test_the_one_membership_query_answers_as_trial_ids_with_does_for_each_perm(trial, qc_analyst, reader1, auditor,
                                                                                 coordinator_site1, trial_manager):
    Membership.objects.create(user=reader1, trial=trial, role=Role.ADJUDICATOR)  # two roles in one trial
    for user in (qc_analyst, reader1, auditor, coordinator_site1, trial_manager, AnonymousUser()):
        assert trial_ids_by_perm(user=user, perms=list(Perm)) == {
            perm: trial_ids_with(user=user, perm=perm) for perm in Perm}, user
    assert trial_ids_by_perm(user=reader1, perms=[Perm.READ]) == {Perm.READ: {trial.pk}}
