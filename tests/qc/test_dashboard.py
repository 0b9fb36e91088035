"""QC's dashboard panels and the site ranking: exact numbers from the seed (tests/trials/test_dashboard.py)."""

import datetime

import pytest

from qc.dashboard import (
    failing_checks_panel,
    first_pass_by_site_panel,
    first_pass_trend_panel,
    open_queries_panel,
    resolution_time_panel,
    site_ranking_panel,
)
from trials.dashboard import Filters

from ..trials.test_dashboard import DAY, seed_dashboard

pytestmark = pytest.mark.django_db

TODAY = datetime.date(2026, 6, 15)


@pytest.fixture
def seeded(trial, site1, site2):
    return seed_dashboard(trial=trial, site1=site1, site2=site2, today=TODAY)


def test_first_pass_by_site_counts_first_versions_only(trial, seeded):
    data = first_pass_by_site_panel(trial=trial, filters=Filters(today=TODAY))
    # site 101: 6 first-version decisions, 4 accepted (the rescan's accept is no first pass)
    assert data.rows == [{"site": "101", "decided": 6, "accepted": 4, "rate": 66.7},
                         {"site": "102", "decided": 1, "accepted": 1, "rate": 100.0}]
    assert data.chart["datasets"][0]["data"] == [66.7, 100.0]


def test_first_pass_trend_by_month(trial, seeded):
    data = first_pass_trend_panel(trial=trial, filters=Filters(today=TODAY))
    # decisions on 2026-03-12 (3 accepts), 2026-05-01 (1 accept), 2026-05-27/28/31 (2 rejects, 1 accept)
    assert [(r["month"], r["decided"], r["accepted"], r["rate"]) for r in data.rows] == [
        ("2026-03", 3, 3, 100.0), ("2026-05", 4, 2, 50.0)]
    assert data.chart["labels"] == ["2026-03", "2026-05"]
    assert [d["label"] for d in data.chart["datasets"]] == ["All sites"]


def test_first_pass_trend_draws_a_line_per_chosen_site(trial, site1, site2, seeded):
    data = first_pass_trend_panel(trial=trial, filters=Filters(today=TODAY, site_ids=(site1.pk, site2.pk)))
    assert {d["label"]: d["data"] for d in data.chart["datasets"]} == {
        "All sites": [100.0, 50.0], "Site 101": [100.0, 33.3], "Site 102": [None, 100.0]}


def test_failing_checks_by_rule(trial, seeded):
    data = failing_checks_panel(trial=trial, filters=Filters(today=TODAY))
    assert data.rows == [{"rule": "slice_thickness", "failures": 3, "studies": 2},
                         {"rule": "kvp", "failures": 1, "studies": 1}]
    # runs started in the last 17 days: only site 101's W12 run (day -16)
    recent = failing_checks_panel(trial=trial, filters=Filters(today=TODAY, date_from=TODAY - 17 * DAY))
    assert recent.rows == [{"rule": "kvp", "failures": 1, "studies": 1},
                           {"rule": "slice_thickness", "failures": 1, "studies": 1}]


def test_open_queries_by_age_bucket_and_overdue(trial, seeded):
    data = open_queries_panel(trial=trial, filters=Filters(today=TODAY))
    assert data.rows == [{"age": "0-7 days", "open": 2, "overdue": 0}, {"age": "8-14 days", "open": 1, "overdue": 1},
                         {"age": "15-30 days", "open": 1, "overdue": 0}, {"age": ">30 days", "open": 1, "overdue": 1}]
    assert data.note.startswith("2 overdue")


def test_open_queries_of_one_site(trial, site2, seeded):
    data = open_queries_panel(trial=trial, filters=Filters(today=TODAY, site_ids=(site2.pk,)))
    assert [r["open"] for r in data.rows] == [1, 0, 0, 0]
    # the day after its due date, site 102's open query is overdue
    later = open_queries_panel(trial=trial, filters=Filters(today=TODAY + DAY, site_ids=(site2.pk,)))
    assert [(r["open"], r["overdue"]) for r in later.rows] == [(0, 0), (1, 1), (0, 0), (0, 0)]


def test_median_resolution_time_per_site(trial, seeded):
    data = resolution_time_panel(trial=trial, filters=Filters(today=TODAY))
    # site 101: 1, 4, 10 days -> 4.0; site 102: 2 and 4 days -> 3.0 (the continuous median)
    assert data.rows == [{"site": "101", "closed": 3, "median_days": 4.0},
                         {"site": "102", "closed": 2, "median_days": 3.0}]
    # closed in the last 7 days: only site 102's 4-day query (closed day -1); site 102's other closed day -6
    recent = resolution_time_panel(trial=trial, filters=Filters(today=TODAY, date_from=TODAY - 5 * DAY))
    assert recent.rows == [{"site": "102", "closed": 1, "median_days": 4.0}]


def test_site_ranking(trial, seeded):
    data = site_ranking_panel(trial=trial, filters=Filters(today=TODAY))
    assert data.rows == [
        {"site": "101", "missing": 3, "rejected": 2, "failed_checks": 2, "overdue_queries": 2},
        {"site": "102", "missing": 1, "rejected": 0, "failed_checks": 0, "overdue_queries": 0},
    ]
    assert [d["data"] for d in data.chart["datasets"]] == [[3, 1], [2, 0], [2, 0], [2, 0]]


def test_site_ranking_leaves_out_sites_with_nothing(trial, seeded):
    from trials.models import Site

    Site.objects.create(trial=trial, number="199", name="Quiet site", country="DE")
    assert [r["site"] for r in site_ranking_panel(trial=trial, filters=Filters(today=TODAY)).rows] == ["101", "102"]
