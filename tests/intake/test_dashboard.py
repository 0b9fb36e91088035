"""Intake's dashboard panels: received vs. expected by site and timepoint, exact numbers from the seed."""

import datetime

import pytest

from intake.dashboard import (
    overdue_scans_by_site,
    received_by_site_timepoint,
    received_by_timepoint_panel,
    received_drilldown,
    received_heatmap_panel,
)
from trials.dashboard import Filters

from ..trials.test_dashboard import ARM, DAY, seed_dashboard

pytestmark = pytest.mark.django_db

TODAY = datetime.date(2026, 6, 15)
KEYS = ("site", "timepoint", "expected", "on_time", "late", "missing", "not_yet_due", "on_time_pct")


@pytest.fixture
def seeded(trial, site1, site2):
    return seed_dashboard(trial=trial, site1=site1, site2=site2, today=TODAY)


def _cells(rows):
    return [tuple(row[k] for k in KEYS) for row in rows]


def test_received_by_site_and_timepoint(trial, seeded):
    rows = received_by_site_timepoint(trial=trial, filters=Filters(today=TODAY))
    assert _cells(rows) == [
        ("101", "BL", 4, 3, 0, 1, 0, 75.0),
        ("101", "W6", 2, 0, 1, 1, 0, 0.0),
        ("101", "W12", 2, 1, 0, 1, 0, 50.0),
        ("101", "W18", 2, 0, 0, 0, 2, None),
        ("102", "BL", 2, 1, 0, 1, 0, 50.0),
        ("102", "W6", 1, 0, 0, 0, 1, None),
        ("102", "W12", 1, 0, 0, 0, 1, None),
        ("102", "W18", 1, 0, 0, 0, 1, None),
    ]


def test_a_later_today_turns_not_yet_due_into_missing(trial, site1, site2, seeded):
    later = TODAY + 60 * DAY  # site 102's W6 (window closes today+29) and site 101's W18 (today+33) have closed
    missing = overdue_scans_by_site(trial=trial, filters=Filters(today=later))
    assert missing == {site1.pk: 5, site2.pk: 2}
    assert overdue_scans_by_site(trial=trial, filters=Filters(today=TODAY)) == {site1.pk: 3, site2.pk: 1}


def test_filters_narrow_by_site_and_by_nominal_date(trial, site2, seeded):
    rows = received_by_site_timepoint(trial=trial, filters=Filters(today=TODAY, site_ids=(site2.pk,)))
    assert {row["site"] for row in rows} == {"102"}
    # visits with a nominal date in the last 30 days: site 101's W12 (today-16) and site 102's BL (today-20)
    recent = received_by_site_timepoint(trial=trial, filters=Filters(today=TODAY, date_from=TODAY - 30 * DAY,
                                                                       date_to=TODAY))
    assert _cells(recent) == [("101", "W12", 2, 1, 0, 1, 0, 50.0), ("102", "BL", 2, 1, 0, 1, 0, 50.0)]


def test_heatmap_chart_has_sites_down_and_timepoints_across_in_schedule_order(trial, site1, seeded):
    data = received_heatmap_panel(trial=trial, filters=Filters(today=TODAY))
    assert data.chart["x"] == ["BL", "W6", "W12", "W18"]
    assert data.chart["y"] == ["101", "102"]
    first = data.chart["cells"][0]
    assert first == {"x": "BL", "y": "101", "v": 75.0, "drill": {"site_id": site1.pk, "timepoint": "BL"},
                     "text": "3 on time, 0 late, 1 missing, 0 not yet due of 4"}
    assert len(data.rows) == len(data.chart["cells"]) == 8


def test_by_timepoint_adds_the_sites_up(trial, seeded):
    data = received_by_timepoint_panel(trial=trial, filters=Filters(today=TODAY))
    assert data.rows == [
        {"timepoint": "BL", "expected": 6, "on_time": 4, "late": 0, "missing": 2, "not_yet_due": 0},
        {"timepoint": "W6", "expected": 3, "on_time": 0, "late": 1, "missing": 1, "not_yet_due": 1},
        {"timepoint": "W12", "expected": 3, "on_time": 1, "late": 0, "missing": 1, "not_yet_due": 1},
        {"timepoint": "W18", "expected": 3, "on_time": 0, "late": 0, "missing": 0, "not_yet_due": 3},
    ]
    assert [d["data"] for d in data.chart["datasets"]] == [[4, 0, 1, 0], [0, 1, 0, 0], [2, 1, 1, 0], [0, 1, 1, 3]]


def test_drilldown_lists_the_subjects_of_one_cell_by_code(trial, site1, seeded, sponsor):
    data = received_drilldown(trial=trial, filters=Filters(today=TODAY), user=sponsor,
                              params={"site_id": str(site1.pk), "timepoint": "BL"})
    assert [(r["subject"], r["procedure"], r["state"]) for r in data.rows] == [
        ("101-0001", "CT_CAP", "On time"), ("101-0001", "MR_BRAIN", "On time"),
        ("101-0002", "CT_CAP", "On time"), ("101-0002", "MR_BRAIN", "Missing")]
    assert data.rows[0]["acquired"] == TODAY - 103 * DAY
    assert ARM not in str(data.rows)
    late = received_drilldown(trial=trial, filters=Filters(today=TODAY), user=sponsor,
                              params={"site_id": str(site1.pk), "timepoint": "W6"})
    assert [(r["subject"], r["state"]) for r in late.rows] == [("101-0001", "Late"), ("101-0002", "Missing")]


def test_drilldown_shows_only_subjects_the_user_may_see(trial, site1, seeded, reader1):
    data = received_drilldown(trial=trial, filters=Filters(today=TODAY), user=reader1,
                              params={"site_id": str(site1.pk), "timepoint": "BL"})
    assert data.rows == []


@pytest.mark.parametrize("params, message", [
    ({}, "choose a cell of the heat map"),
    ({"site_id": "x", "timepoint": "BL"}, "choose a cell of the heat map"),
    ({"site_id": "1", "timepoint": ""}, "choose a cell of the heat map"),
    ({"site_id": "987654", "timepoint": "BL"}, "no site 987654 in this trial"),
])
def test_drilldown_refuses_a_bad_cell(trial, seeded, sponsor, params, message):
    with pytest.raises(ValueError, match=message):
        received_drilldown(trial=trial, filters=Filters(today=TODAY), user=sponsor, params=params)


def test_drilldown_page_answers_400_with_the_reason(client, trial, seeded, sponsor):
    client.force_login(sponsor)
    response = client.get(f"/trials/{trial.pk}/dashboards/panels/received-heatmap/subjects/?timepoint=BL")
    assert response.status_code == 400 and b"choose a cell of the heat map" in response.content


def test_drilldown_page_and_its_csv(client, trial, site1, seeded, sponsor):
    client.force_login(sponsor)
    url = f"/trials/{trial.pk}/dashboards/panels/received-heatmap/subjects/?site_id={site1.pk}&timepoint=W6"
    page = client.get(url)
    assert page.status_code == 200 and b"101-0001" in page.content and b"Late" in page.content
    csv_text = client.get(url + "&format=csv").content.decode()
    assert csv_text.splitlines()[0] == "Subject,Procedure,Window opens,Window closes,State,Acquired"
    assert len(csv_text.splitlines()) == 3


def test_heatmap_rows_link_to_the_drilldown_for_a_sponsor(client, trial, site1, seeded, sponsor):
    client.force_login(sponsor)
    html = client.get(f"/trials/{trial.pk}/dashboards/received/").content.decode()
    assert f"/panels/received-heatmap/subjects/?site_id={site1.pk}&amp;timepoint=BL" in html
