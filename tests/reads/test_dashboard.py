"""The reads dashboard: read status per site, adjudication rate, kappa per reader pair, throughput.

Seeded through the reads services (test_metrics.seed, whose docstring works out agreement by hand), plus two
subjects whose reading has not finished:

    site 101  101-0001 BL W6 W12, 101-0002 BL W6 W12, 101-0003 BL W6: every timepoint signed by both
              readers (8 timepoints); 101-0004 BL accepted, no read started: awaiting read.
    site 102  102-0001 BL accepted, reader A opened it: in progress.

Reads signed: 101-0001 and 101-0002 in April 2026 (3 timepoints each, both readers: 6 a reader),
101-0003 in May (2 each). Adjudication: compared April 101-0001 and 101-0002, adjudicated 101-0002 (50 %);
May 101-0003, adjudicated (100 %); overall 2 of 3 (66.7 %). Kappa of reader1 and reader2 (the pool's
Reader 1 and Reader 2) over 5 follow-up timepoints: 0.375, agreement 60 %; April alone: 0.6.
"""

import csv
import datetime
import io
import itertools
import json

import pytest
from django.utils import timezone

from reads import dashboard as panels
from reads.services import task_open
from trials import dashboard
from trials.dashboard import Filters
from trials.models import SubjectArm
from trials.services import subject_enroll

from .conftest import ENROLLED, task_of
from .test_metrics import seed

pytestmark = pytest.mark.django_db

ARM = "Drug Y 400 mg arm"
READS_PANELS = ["reads-status", "reads-adjudication", "reads-agreement", "reads-throughput"]


@pytest.fixture
def seeded(reading, enroll, accept, site2, coordinator_site2, reader1, reader2, adjudicator):
    for user, (first, last) in ((reader1, ("Ada", "Quimby")), (reader2, ("Bruno", "Vantongeren")),
                                (adjudicator, ("Cleo", "Marchetti"))):
        user.first_name, user.last_name = first, last
        user.save(update_fields=["first_name", "last_name"])
    subjects = seed(reading, enroll, accept)
    subjects["101-0004"] = enroll("101-0004")
    accept(subjects["101-0004"], "BL")
    other = subjects["102-0001"] = subject_enroll(actor=coordinator_site2, site=site2, code="102-0001",
                                                  patient_id="MRN-9001", enrollment_date=ENROLLED)
    accept(other, "BL")
    task = task_of(other, "BL", "A")
    task_open(task=task, user=task.reader.user)
    SubjectArm.objects.create(subject=subjects["101-0001"], arm=ARM)
    return subjects


def _table(data) -> list[dict]:
    return dashboard.panel_rows(data)


def test_the_reads_page_has_its_four_panels_in_order():
    assert [p.key for p in dashboard.panels_for(dashboard.Page.READS)] == READS_PANELS


def test_timepoints_awaiting_in_progress_and_signed_per_site(seeded, trial):
    data = panels.read_status_panel(trial=trial, filters=Filters())
    assert _table(data) == [
        {"site": "All sites", "timepoints": 10, "awaiting": 1, "in_progress": 1, "signed": 8},
        {"site": "101", "timepoints": 9, "awaiting": 1, "in_progress": 0, "signed": 8},
        {"site": "102", "timepoints": 1, "awaiting": 0, "in_progress": 1, "signed": 0},
    ]
    assert data.chart["labels"] == ["Site 101", "Site 102"]
    assert [d["data"] for d in data.chart["datasets"]] == [[1, 0], [0, 1], [8, 0]]


def test_read_status_follows_the_site_filter_and_the_day_tasks_were_created(seeded, trial, site2):
    only_102 = panels.read_status_panel(trial=trial, filters=Filters(site_ids=(site2.pk,)))
    assert [r["site"] for r in only_102.rows] == ["All sites", "102"]
    assert only_102.rows[0]["in_progress"] == 1 and only_102.rows[0]["timepoints"] == 1
    # every task was created today: a range ending yesterday has no timepoint
    before = panels.read_status_panel(trial=trial, filters=Filters(date_to=timezone.localdate() - datetime.timedelta(days=1)))
    assert _table(before) == [{"site": "All sites", "timepoints": 0, "awaiting": 0, "in_progress": 0, "signed": 0}]


def test_adjudication_rate_per_month_and_overall(seeded, trial):
    data = panels.adjudication_rate_panel(trial=trial, filters=Filters())
    assert _table(data) == [
        {"month": "All months", "compared": 3, "adjudicated": 2, "rate": 66.7},
        {"month": "2026-04", "compared": 2, "adjudicated": 1, "rate": 50.0},
        {"month": "2026-05", "compared": 1, "adjudicated": 1, "rate": 100.0},
    ]
    assert data.chart["labels"] == ["2026-04", "2026-05"]
    assert data.chart["datasets"][0]["data"] == [50.0, 100.0]
    assert data.note.startswith("2 of 3 subjects compared were adjudicated (66.7 %)")


def test_adjudication_rate_in_a_date_range_and_for_a_site_without_reads(seeded, trial, site2):
    april = Filters(date_from=datetime.date(2026, 4, 1), date_to=datetime.date(2026, 4, 30))
    assert _table(panels.adjudication_rate_panel(trial=trial, filters=april)) == [
        {"month": "All months", "compared": 2, "adjudicated": 1, "rate": 50.0},
        {"month": "2026-04", "compared": 2, "adjudicated": 1, "rate": 50.0},
    ]
    nothing = panels.adjudication_rate_panel(trial=trial, filters=Filters(site_ids=(site2.pk,)))
    assert _table(nothing) == [{"month": "All months", "compared": 0, "adjudicated": 0, "rate": None}]
    assert nothing.chart["labels"] == []


def test_kappa_per_reader_pair_under_pseudonymous_labels(seeded, trial, reading):
    data = panels.agreement_panel(trial=trial, filters=Filters())
    assert _table(data) == [{"pair": "Reader 1 & Reader 2", "timepoints": 5, "agreed": 3, "percent": 60.0,
                             "kappa": 0.375, "reason": ""}]
    assert data.chart["datasets"][0]["data"] == [0.375]
    # the pool's order: reader1 joined first, then reader2, then the adjudicator
    labels = panels.reader_labels(trial=trial)
    assert [labels[reading.readers[name].pk] for name in ("reader1", "reader2", "adjudicator")] == [
        "Reader 1", "Reader 2", "Reader 3"]


def test_kappa_in_april_and_in_may(seeded, trial):
    april = Filters(date_from=datetime.date(2026, 4, 1), date_to=datetime.date(2026, 4, 30))
    [row] = _table(panels.agreement_panel(trial=trial, filters=april))
    assert (row["timepoints"], row["agreed"], row["kappa"]) == (4, 3, 0.6)
    # May: one timepoint, (PR, SD): p_o 0, p_e 0, kappa 0
    [row] = _table(panels.agreement_panel(trial=trial, filters=Filters(date_from=datetime.date(2026, 5, 1))))
    assert (row["timepoints"], row["agreed"], row["percent"], row["kappa"]) == (1, 0, 0.0, 0.0)


def test_a_new_reader_gets_the_next_label_and_earlier_labels_stay(seeded, trial, reading, reader3):
    labels = panels.reader_labels(trial=trial)
    assert labels[reader3.pk] == "Reader 4"
    assert labels[reading.readers["reader1"].pk] == "Reader 1"


def test_throughput_per_month_and_reader(seeded, trial):
    data = panels.throughput_panel(trial=trial, filters=Filters())
    assert _table(data) == [
        {"month": "2026-04", "reader": "Reader 1", "signed": 6}, {"month": "2026-04", "reader": "Reader 2", "signed": 6},
        {"month": "2026-05", "reader": "Reader 1", "signed": 2}, {"month": "2026-05", "reader": "Reader 2", "signed": 2},
    ]
    assert data.chart["labels"] == ["2026-04", "2026-05"]
    assert [(d["label"], d["data"]) for d in data.chart["datasets"]] == [("Reader 1", [6, 2]), ("Reader 2", [6, 2])]
    assert data.note.startswith("16 reads signed")


def test_the_sponsor_sees_no_reader_name_no_subject_and_no_arm(client, seeded, trial, sponsor, reading):
    client.force_login(sponsor)
    page = client.get(f"/trials/{trial.pk}/dashboards/reads/")
    assert page.status_code == 200
    bodies = [page.content.decode()]
    for key, fmt in itertools.product(READS_PANELS, ("csv", "json")):
        response = client.get(f"/trials/{trial.pk}/dashboards/panels/{key}.{fmt}")
        assert response.status_code == 200, key
        bodies.append(response.content.decode())
    assert "Reader 1 &amp; Reader 2" in bodies[0]
    forbidden = [ARM, "Drug Y", "MRN-", "101-000", "102-0001"]
    for user in reading.users.values():
        forbidden += [user.username, user.email, user.first_name, user.last_name]
    for body in bodies:
        for word in forbidden:
            assert word not in body, word


def test_the_downloads_match_the_table(client, seeded, trial, sponsor):
    client.force_login(sponsor)
    lines = list(csv.reader(io.StringIO(
        client.get(f"/trials/{trial.pk}/dashboards/panels/reads-agreement.csv").content.decode())))
    assert lines == [["Reader pair", "Timepoints both read", "Same response", "Agreement %", "Cohen's kappa",
                      "Kappa not defined because"], ["Reader 1 & Reader 2", "5", "3", "60.0", "0.375", ""]]
    data = json.loads(client.get(f"/trials/{trial.pk}/dashboards/panels/reads-status.json").content)
    assert data["rows"][0] == {"site": "All sites", "timepoints": 10, "awaiting": 1, "in_progress": 1, "signed": 8}


def test_a_bad_filter_is_refused_with_the_reason(client, seeded, trial, sponsor):
    client.force_login(sponsor)
    response = client.get(f"/trials/{trial.pk}/dashboards/panels/reads-throughput.csv", {"from": "April"})
    assert response.status_code == 400
    assert "from: give the date as YYYY-MM-DD" in response.content.decode()
    page = client.get(f"/trials/{trial.pk}/dashboards/reads/", {"site": "abc"})
    assert page.status_code == 400 and "a site is given by its id" in page.content.decode()


@pytest.mark.parametrize("who", ["reader1", "adjudicator", "coordinator_site1", "outsider"])
def test_readers_coordinators_and_outsiders_get_404(client, seeded, trial, request, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/trials/{trial.pk}/dashboards/reads/").status_code == 404
    assert client.get(f"/trials/{trial.pk}/dashboards/panels/reads-agreement.json").status_code == 404


def test_the_reads_page_runs_a_bounded_number_of_queries(client, seeded, trial, sponsor,
                                                         django_assert_max_num_queries):
    """The navigation reads the user's roles once, the page asks for each permission once, and the adjudication
    and agreement panels share one statement: the count does not grow with navigation entries or panels."""
    client.force_login(sponsor)
    with django_assert_max_num_queries(25):
        assert client.get(f"/trials/{trial.pk}/dashboards/reads/").status_code == 200
