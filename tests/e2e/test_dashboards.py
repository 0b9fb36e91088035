"""A sponsor viewer opens each dashboard in a real browser: chart.js draws every chart with the seeded
numbers, a heat-map cell opens its subjects, and each page is saved as a screenshot under test-artifacts/."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from trials.models import Membership, Role, Site

from ..trials.factories import SiteFactory, TrialFactory
from ..trials.test_dashboard import ARM, seed_dashboard
from .conftest import ARTIFACTS
from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHART_DATA = """key => {
    const chart = Chart.getChart(document.querySelector(`canvas[data-chart="chart-${key}"]`));
    return chart.data.datasets.map(d => d.data.map(p => (p !== null && typeof p === "object") ? p.v : p));
}"""


def _wait_for_charts(page, keys: list[str]) -> None:
    for key in keys:
        expect(page.locator(f'canvas[data-chart="chart-{key}"]')).to_be_visible()
        page.wait_for_function("key => window.Chart && Chart.getChart("
                               "document.querySelector(`canvas[data-chart=\"chart-${key}\"]`))", arg=key)


def _data(page, key: str) -> list[list]:
    return page.evaluate(CHART_DATA, key)


@pytest.fixture
def sponsor_trial(transactional_db):
    """The seeded trial of tests/trials/test_dashboard.py, with the demo sponsor as its sponsor viewer."""
    from django.utils import timezone

    call_command("load_demo")
    trial = TrialFactory(protocol_number="CL-DASH-E2E", title="Dashboard trial")
    site1 = SiteFactory(trial=trial, number="101", name="Site One Hospital")
    site2 = SiteFactory(trial=trial, number="102", name="Site Two Clinic")
    seed_dashboard(trial=trial, site1=site1, site2=site2, today=timezone.localdate())
    Membership.objects.create(user=get_user_model().objects.get(username="sponsor"), trial=trial, role=Role.SPONSOR_VIEWER)
    return trial


def test_a_sponsor_opens_every_dashboard_and_sees_the_seeded_numbers(app_server, page, sponsor_trial):
    demo_login(page, app_server, "sponsor")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboards").click()
    row = page.locator("#dashboard-trials li", has_text="CL-DASH-E2E")
    row.get_by_role("link", name="Imaging received").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Imaging received")

    _wait_for_charts(page, ["received-heatmap", "received-timepoints"])
    # heat map cells, site 101 then 102, timepoints BL, W6, W12, W18: % of due scans that came on time
    assert _data(page, "received-heatmap") == [[75, 0, 50, None, 50, None, None, None]]
    assert _data(page, "received-timepoints") == [[4, 0, 1, 0], [0, 1, 0, 0], [2, 1, 1, 0], [0, 1, 1, 3]]
    assert ARM not in page.content() and "101-0001" not in page.content()
    page.screenshot(path=ARTIFACTS / "dashboard-received.png", full_page=True)

    # a click on the heat map's first cell (site 101, BL) opens its subjects, by code
    point = page.evaluate("""() => {
        const canvas = document.querySelector('canvas[data-chart="chart-received-heatmap"]');
        const p = Chart.getChart(canvas).getDatasetMeta(0).data[0];
        return {x: p.x, y: p.y};
    }""")
    page.locator('canvas[data-chart="chart-received-heatmap"]').click(position=point)
    expect(page.get_by_role("heading", level=1)).to_contain_text("subjects")
    table = page.locator("#drilldown-table")
    expect(table).to_contain_text("101-0001")
    expect(table.locator("tbody tr")).to_have_count(4)
    expect(table.locator("tbody tr", has_text="MR_BRAIN").filter(has_text="101-0002")).to_contain_text("Missing")
    page.go_back()

    page.get_by_role("navigation", name="Dashboards").get_by_role("link", name="Quality control").click()
    _wait_for_charts(page, ["qc-first-pass-trend", "qc-first-pass-sites", "qc-failing-checks", "qc-open-queries",
                            "qc-resolution"])
    assert _data(page, "qc-first-pass-sites") == [[66.7, 100]]
    assert _data(page, "qc-failing-checks") == [[3, 1]]
    assert _data(page, "qc-open-queries") == [[2, 1, 1, 1], [0, 1, 0, 1]]
    assert _data(page, "qc-resolution") == [[4, 3]]
    page.screenshot(path=ARTIFACTS / "dashboard-qc.png", full_page=True)

    page.get_by_role("navigation", name="Dashboards").get_by_role("link", name="Sites needing attention").click()
    _wait_for_charts(page, ["site-ranking"])
    assert _data(page, "site-ranking") == [[3, 1], [2, 0], [2, 0], [2, 0]]
    expect(page.locator("#table-site-ranking tbody tr").first).to_contain_text("101")
    page.screenshot(path=ARTIFACTS / "dashboard-sites.png", full_page=True)


def test_a_sponsor_filters_by_site_and_the_charts_follow(app_server, page, sponsor_trial):
    site2 = Site.objects.get(trial=sponsor_trial, number="102")
    demo_login(page, app_server, "sponsor")
    page.goto(f"{app_server.url}/trials/{sponsor_trial.pk}/dashboards/qc/")
    page.get_by_label("Sites").select_option(str(site2.pk))
    page.get_by_role("button", name="Apply").click()
    _wait_for_charts(page, ["qc-first-pass-sites", "qc-open-queries"])
    assert _data(page, "qc-first-pass-sites") == [[100]]
    assert _data(page, "qc-open-queries") == [[1, 0, 0, 0], [0, 0, 0, 0]]
    page.screenshot(path=ARTIFACTS / "dashboard-qc-site-102.png", full_page=True)
