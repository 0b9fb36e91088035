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


@pytest.fixture
def reads_trial(transactional_db):
    """A trial read through the reads services as tests/reads/test_dashboard.py seeds it (test_metrics.seed:
    three subjects read in April and May 2026, two adjudicated) plus one subject awaiting read; the demo
    sponsor is its sponsor viewer. Its readers are not demo users: they sign with the test password."""
    from types import SimpleNamespace

    from qc.services import study_accept
    from reads.services import reader_add, reader_training_add
    from trials.services import subject_enroll

    from ..reads.conftest import ENROLLED, pending_study
    from ..reads.test_metrics import seed
    from ..trials.factories import MembershipFactory, ProtocolVersionFactory, UserFactory, demo_charter

    call_command("load_demo")
    trial = TrialFactory(protocol_number="CL-READS-E2E", title="Reads dashboard trial")
    site = SiteFactory(trial=trial, number="101", name="Site One Hospital")

    def member(username, role, site=None):
        user = UserFactory(username=username, first_name=username.title(), last_name="Readerperson")
        MembershipFactory(user=user, trial=trial, role=role, site=site)
        return user

    ctx = SimpleNamespace(trial=trial, site=site, coordinator=member("e2e-coord", Role.SITE_COORDINATOR, site),
                          qc=member("e2e-qc", Role.QC_ANALYST), manager=member("e2e-manager", Role.TRIAL_MANAGER),
                          readers={}, users={}, n=0)
    ctx.version = ProtocolVersionFactory(trial=trial, charter=demo_charter())
    for key, username, role in (("reader1", "e2e-reader-ada", Role.READER), ("reader2", "e2e-reader-bob", Role.READER),
                                ("adjudicator", "e2e-adjudicator-cy", Role.ADJUDICATOR)):
        user = ctx.users[key] = member(username, role)
        ctx.readers[key] = reader_add(actor=ctx.manager, trial=trial, user=user)
        reader_training_add(actor=ctx.manager, reader=ctx.readers[key], protocol_version=ctx.version,
                            topic="RECIST 1.1", trained_on=ENROLLED, trainer="Core lab medical lead")

    def enroll(code):
        ctx.n += 1
        return subject_enroll(actor=ctx.coordinator, site=site, code=code, patient_id=f"MRN-E2E-{ctx.n}",
                              enrollment_date=ENROLLED)

    def accept(subject, timepoint):
        visit = subject.visits.get(timepoint=timepoint)
        for procedure in visit.procedures:  # each acceptance commits: reads' receiver creates the tasks
            study_accept(analyst=ctx.qc, study=pending_study(subject, visit, procedure))

    seed(ctx, enroll, accept)
    accept(enroll("101-0004"), "BL")
    Membership.objects.create(user=get_user_model().objects.get(username="sponsor"), trial=trial,
                              role=Role.SPONSOR_VIEWER)
    return trial


def test_a_sponsor_opens_the_reads_dashboard_and_sees_the_seeded_numbers(app_server, page, reads_trial):
    demo_login(page, app_server, "sponsor")
    page.goto(f"{app_server.url}/trials/{reads_trial.pk}/dashboards/received/")
    page.get_by_role("navigation", name="Dashboards").get_by_role("link", name="Reads").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Reads")
    _wait_for_charts(page, ["reads-status", "reads-adjudication", "reads-agreement", "reads-throughput"])

    # site 101: 1 timepoint awaiting read, none in progress, 8 signed by both readers
    assert _data(page, "reads-status") == [[1], [0], [8]]
    # April: 1 of 2 subjects compared adjudicated, May: 1 of 1
    assert _data(page, "reads-adjudication") == [[50, 100]]
    assert _data(page, "reads-agreement") == [[0.375]]
    assert _data(page, "reads-throughput") == [[6, 2], [6, 2]]
    expect(page.locator("#table-reads-agreement tbody tr").first).to_contain_text("Reader 1 & Reader 2")
    labels = page.evaluate("""() => Chart.getChart(document.querySelector('canvas[data-chart="chart-reads-throughput"]'))
        .data.datasets.map(d => d.label)""")
    assert labels == ["Reader 1", "Reader 2"]
    content = page.content()
    for word in ("e2e-reader", "e2e-adjudicator", "Readerperson", "101-0001", "MRN-E2E"):
        assert word not in content, word
    page.screenshot(path=ARTIFACTS / "dashboard-reads.png", full_page=True)
