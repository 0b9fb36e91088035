"""The dashboard frame: registry, who may see it, filters, downloads that match the page, no PHI or arm.

``seed_dashboard`` builds a small trial whose every number is worked out in its docstring; the intake,
QC and browser tests count on the same numbers.
"""

import csv
import datetime
import io
import json

import pytest
from django.utils import timezone

from intake.models import ImagingStudy
from qc.models import CheckResult, QcDecision, QcRun, Query
from trials import dashboard
from trials.models import Subject, SubjectArm, Visit

from .factories import ProtocolVersionFactory, UserFactory

pytestmark = pytest.mark.django_db

ARM = "Drug X 200 mg arm"
DAY = datetime.timedelta(days=1)
SCHEDULE = [("BL", 0, 28, 0, ["CT_CAP", "MR_BRAIN"]), ("W6", 42, 7, 7, ["CT_CAP"]), ("W12", 84, 7, 7, ["CT_CAP"]),
            ("W18", 126, 7, 7, ["CT_CAP"])]


def _at(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(12, 0), tzinfo=datetime.UTC)


def seed_dashboard(*, trial, site1, site2, today: datetime.date) -> dict:
    """Three subjects, scans, QC runs, decisions and queries, every date relative to ``today``.

    Received (procedures per visit: BL CT_CAP + MR_BRAIN, W6/W12/W18 CT_CAP):
      site 101 (101-0001, 101-0002 enrolled today-100): BL 4 expected, 3 on time, 1 missing (75.0 %);
        W6 2: 1 late, 1 missing (0.0 %); W12 2: 1 on time (a rescan), 1 missing (only a rejected
        version) (50.0 %); W18 2 not yet due.
      site 102 (102-0001 enrolled today-20): BL 2: 1 on time, 1 missing (50.0 %); W6, W12, W18 not yet due.
    First-pass decisions (version 1): site 101 4 accepted of 6 (66.7 %), site 102 1 of 1.
    Failing checks: slice_thickness 3 failures in 2 studies, kvp 1 in 1 study.
    Open queries: 0-7 days 2, 8-14 1 (overdue), 15-30 1 (answered: not overdue), >30 1 (overdue).
    Median days to close: site 101 4.0 (1, 4, 10), site 102 3.0 (2, 4).
    """
    version = ProtocolVersionFactory(trial=trial)
    enrolled = {"101-0001": (site1, today - 100 * DAY), "101-0002": (site1, today - 100 * DAY),
                "102-0001": (site2, today - 20 * DAY)}
    subjects, visits = {}, {}
    for code, (site, enrolled_on) in enrolled.items():
        subjects[code] = Subject.objects.create(trial=trial, site=site, code=code, patient_id_hash=f"h-{code}",
                                                enrollment_date=enrolled_on)
        for timepoint, day, before, after, procedures in SCHEDULE:
            nominal = enrolled_on + day * DAY
            visits[code, timepoint] = Visit.objects.create(
                subject=subjects[code], timepoint=timepoint, label=timepoint, nominal_date=nominal,
                window_start=nominal - before * DAY, window_end=nominal + after * DAY, procedures=procedures,
                protocol_version=version)
    SubjectArm.objects.create(subject=subjects["101-0001"], arm=ARM)

    def study(code, timepoint, procedure, acquired_days, status, version_number=1):
        subject = subjects[code]
        return ImagingStudy.objects.create(
            trial=trial, site=subject.site, subject=subject, visit=visits[code, timepoint], procedure=procedure,
            version=version_number, status=status, study_uid_hash=f"{code}-{timepoint}-{procedure}-{version_number}",
            patient_id_hash=subject.patient_id_hash,
            acquisition_date=subject.enrollment_date + acquired_days * DAY)

    accepted, rejected = ImagingStudy.Status.ACCEPTED, ImagingStudy.Status.REJECTED
    s1_bl_ct = study("101-0001", "BL", "CT_CAP", -3, accepted)
    s1_bl_mr = study("101-0001", "BL", "MR_BRAIN", -1, accepted)
    s1_w6 = study("101-0001", "W6", "CT_CAP", 52, accepted)         # window closed on day 49: late
    s1_w12 = study("101-0001", "W12", "CT_CAP", 84, rejected)       # rejected only: missing
    s2_bl_ct = study("101-0002", "BL", "CT_CAP", 0, accepted)
    s2_w12_v1 = study("101-0002", "W12", "CT_CAP", 79, rejected)
    study("101-0002", "W12", "CT_CAP", 80, accepted, version_number=2)  # the rescan: on time
    s3_bl_mr = study("102-0001", "BL", "MR_BRAIN", -1, accepted)

    qc = UserFactory(username="dash-qc")
    for item, decision, days_ago in [(s1_bl_ct, "accept", 95), (s1_bl_mr, "accept", 95), (s1_w6, "accept", 45),
                                     (s1_w12, "reject", 15), (s2_bl_ct, "accept", 95), (s2_w12_v1, "reject", 18),
                                     (s3_bl_mr, "accept", 19)]:
        made = QcDecision.objects.create(study=item, analyst=qc, decision=decision)
        QcDecision.objects.filter(pk=made.pk).update(decided_at=_at(today - days_ago * DAY))

    for item, days_ago, results in [(s1_w12, 16, [("slice_thickness", "fail"), ("kvp", "fail"), ("min_slices", "pass")]),
                                    (s2_w12_v1, 19, [("slice_thickness", "fail"), ("slice_thickness", "fail"),
                                                     ("body_part", "warn")]),
                                    (s3_bl_mr, 20, [("field_strength", "pass")])]:
        run = QcRun.objects.create(study=item, protocol_version=version, trigger="deidentified",
                                   instances_digest=f"d{item.pk}", started_at=_at(today - days_ago * DAY),
                                   finished_at=_at(today - days_ago * DAY),
                                   failed=sum(o == "fail" for _, o in results))
        for rule, outcome in results:
            CheckResult.objects.create(run=run, rule=rule, outcome=outcome)

    def query(code, status, raised, due, closed=None):
        subject = subjects[code]
        return Query.objects.create(
            trial=trial, site=subject.site, subject=subject, category=Query.Category.OTHER, text="Please check",
            status=status, raised_at=_at(today - raised * DAY), due_date=today - due * DAY,
            closed_at=_at(today - closed * DAY) if closed is not None else None)

    query("101-0001", "open", 3, -4)
    query("101-0001", "open", 10, 1)        # overdue
    query("101-0002", "answered", 20, 5)    # past due, but waiting on QC
    query("101-0002", "reopened", 40, 30)   # overdue
    query("101-0001", "closed", 30, 23, closed=26)   # 4 days
    query("101-0002", "closed", 20, 13, closed=10)   # 10 days
    query("101-0002", "closed", 12, 5, closed=11)    # 1 day
    query("102-0001", "open", 7, 0)         # due today: not overdue yet
    query("102-0001", "closed", 8, 1, closed=6)      # 2 days
    query("102-0001", "closed", 5, -2, closed=1)     # 4 days
    return {"subjects": subjects, "version": version}


@pytest.fixture
def today():
    return timezone.localdate()


@pytest.fixture
def seeded(trial, site1, site2, today):
    return seed_dashboard(trial=trial, site1=site1, site2=site2, today=today)


# -- the registry -------------------------------------------------------------------------------------------

def test_the_apps_register_their_panels_on_their_pages():
    assert [p.key for p in dashboard.panels_for(dashboard.Page.RECEIVED)] == ["received-heatmap",
                                                                             "received-timepoints"]
    assert [p.key for p in dashboard.panels_for(dashboard.Page.QC)] == [
        "qc-first-pass-trend", "qc-first-pass-sites", "qc-failing-checks", "qc-open-queries", "qc-resolution"]
    assert [p.key for p in dashboard.panels_for(dashboard.Page.SITES)] == ["site-ranking"]
    assert dashboard.panel_get("received-heatmap").drilldown is not None
    assert all(p.perm == dashboard.Perm.VIEW_DASHBOARDS for page in dashboard.Page
               for p in dashboard.panels_for(page))


def test_a_registered_panel_is_drawn_and_a_bad_page_is_refused(client, trial, sponsor):
    def compute(*, trial, filters):
        return dashboard.PanelData(columns=[("n", "N")], rows=[{"n": 41}], chart={"type": "bar", "labels": ["x"],
                                                                                  "datasets": [{"label": "n",
                                                                                                "data": [41]}]})

    panel = dashboard.Panel(key="test-reads", title="Reads by status", page=dashboard.Page.READS, compute=compute)
    dashboard.register(panel)
    try:
        client.force_login(sponsor)
        response = client.get(f"/trials/{trial.pk}/dashboards/reads/")
        assert response.status_code == 200
        assert b"Reads by status" in response.content and b"<td>41</td>" in response.content
    finally:
        dashboard._panels.pop("test-reads")
    with pytest.raises(ValueError, match="unknown dashboard page"):
        dashboard.register(dashboard.Panel(key="x", title="x", page="wards", compute=compute))


def test_an_empty_page_says_so(client, trial, sponsor):
    reads_panels = {p.key: dashboard._panels.pop(p.key) for p in dashboard.panels_for(dashboard.Page.READS)}
    try:
        client.force_login(sponsor)
        response = client.get(f"/trials/{trial.pk}/dashboards/reads/")
    finally:
        dashboard._panels.update(reads_panels)
    assert response.status_code == 200
    assert b"No panels on this dashboard yet" in response.content


# -- who may see it -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["coordinator_site1", "qc_analyst", "reader1", "auditor", "outsider"])
def test_roles_without_view_dashboards_get_404_everywhere(client, request, trial, seeded, who):
    client.force_login(request.getfixturevalue(who))
    base = f"/trials/{trial.pk}/dashboards"
    for url in (f"{base}/received/", f"{base}/qc/", f"{base}/sites/", f"{base}/panels/qc-open-queries.csv",
                f"{base}/panels/qc-open-queries.json", f"{base}/panels/received-heatmap/subjects/?site_id=1"
                "&timepoint=BL"):
        assert client.get(url).status_code == 404, url
    index = client.get("/dashboards/")  # the outsider manages another trial: sent to that one's
    assert index.status_code == 404 or f"/trials/{trial.pk}/" not in index["Location"]


def test_anonymous_is_sent_to_sign_in(client, trial):
    response = client.get(f"/trials/{trial.pk}/dashboards/received/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_sponsor_and_manager_see_every_page_and_the_nav_entry(client, trial, seeded, sponsor, trial_manager):
    for user in (sponsor, trial_manager):
        client.force_login(user)
        home = client.get("/")
        assert b'href="/dashboards/"' in home.content
        assert client.get("/dashboards/")["Location"] == f"/trials/{trial.pk}/dashboards/received/"
        for page in ("received", "qc", "sites", "reads"):
            assert client.get(f"/trials/{trial.pk}/dashboards/{page}/").status_code == 200
    assert client.get(f"/trials/{trial.pk}/dashboards/wards/").status_code == 404
    assert client.get(f"/trials/{trial.pk}/dashboards/panels/no-such-panel.csv").status_code == 404
    assert client.get(f"/trials/{trial.pk}/dashboards/panels/qc-open-queries.xml").status_code == 404


def test_coordinator_sees_no_dashboards_entry(client, coordinator_site1):
    client.force_login(coordinator_site1)
    assert b'href="/dashboards/"' not in client.get("/").content


# -- filters ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, field, message", [
    ("from=2026-13-01", "from", "give the date as YYYY-MM-DD (not &#x27;2026-13-01&#x27;)"),
    ("to=yesterday", "to", "give the date as YYYY-MM-DD"),
    ("from=2026-05-01&to=2026-04-01", "to", "the end date 2026-04-01 is before the start date 2026-05-01"),
    ("site=abc", "site", "a site is given by its id, a whole number"),
    ("site=999999", "site", "no site 999999 in this trial"),
])
def test_bad_filters_are_refused_with_the_reason(client, trial, seeded, sponsor, query, field, message):
    client.force_login(sponsor)
    response = client.get(f"/trials/{trial.pk}/dashboards/qc/?{query}")
    assert response.status_code == 400
    assert message.encode() in response.content
    assert b'id="dash-errors"' in response.content and b'id="panel-' not in response.content
    download = client.get(f"/trials/{trial.pk}/dashboards/panels/qc-open-queries.csv?{query}")
    assert download.status_code == 400 and field in download.content.decode()


def test_a_site_of_another_trial_is_refused(client, trial, seeded, sponsor, outsider):
    from qc.models import Site

    other = Site.objects.create(trial=outsider.memberships.get().trial, number="900", name="Elsewhere", country="US")
    client.force_login(sponsor)
    response = client.get(f"/trials/{trial.pk}/dashboards/received/?site={other.pk}")
    assert response.status_code == 400 and f"no site {other.pk} in this trial".encode() in response.content


def test_site_filter_narrows_every_panel(client, trial, site2, seeded, sponsor):
    client.force_login(sponsor)
    data = json.loads(client.get(f"/trials/{trial.pk}/dashboards/panels/received-heatmap.json?site={site2.pk}").content)
    assert {row["site"] for row in data["rows"]} == {"102"}
    assert data["filters"]["sites"] == [site2.pk]
    ranking = json.loads(client.get(f"/trials/{trial.pk}/dashboards/panels/site-ranking.json?site={site2.pk}").content)
    assert ranking["rows"] == [{"site": "102", "missing": 1, "rejected": 0, "failed_checks": 0, "overdue_queries": 0}]


def test_date_filter_is_carried_into_tabs_and_downloads(client, trial, seeded, sponsor, today):
    client.force_login(sponsor)
    start = (today - 20 * DAY).isoformat()
    page = client.get(f"/trials/{trial.pk}/dashboards/qc/?from={start}").content.decode()
    assert f"/dashboards/panels/qc-first-pass-sites.csv?from={start}" in page
    assert f"/dashboards/sites/?from={start}" in page
    rows = json.loads(client.get(f"/trials/{trial.pk}/dashboards/panels/qc-first-pass-sites.json?from={start}")
                      .content)["rows"]
    assert rows == [{"site": "101", "decided": 2, "accepted": 0, "rate": 0.0},
                    {"site": "102", "decided": 1, "accepted": 1, "rate": 100.0}]


# -- downloads match the table ------------------------------------------------------------------------------

def _table(html: str, key: str) -> list[list[str]]:
    """The cells of a panel's table, as text (the drill-down link column left out)."""
    import re
    from html import unescape

    body = html.split(f'id="table-{key}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)
    return [[unescape(re.sub(r"<.*?>", "", cell)) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)
             if "subjects</a>" not in cell and cell != ""] for row in rows]


@pytest.mark.parametrize("page, key", [("received", "received-heatmap"), ("received", "received-timepoints"),
                                       ("qc", "qc-first-pass-trend"), ("qc", "qc-first-pass-sites"),
                                       ("qc", "qc-failing-checks"), ("qc", "qc-open-queries"),
                                       ("qc", "qc-resolution"), ("sites", "site-ranking")])
def test_csv_and_json_downloads_match_the_table(client, trial, seeded, sponsor, page, key):
    client.force_login(sponsor)
    html = client.get(f"/trials/{trial.pk}/dashboards/{page}/").content.decode()
    table = _table(html, key)
    assert table, "the seeded trial fills every panel"
    response = client.get(f"/trials/{trial.pk}/dashboards/panels/{key}.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith(f'attachment; filename="CL-TEST-001-{key}-')
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    assert [["—" if cell == "" else cell for cell in line] for line in lines[1:]] == table
    data = json.loads(client.get(f"/trials/{trial.pk}/dashboards/panels/{key}.json").content)
    assert [c["label"] for c in data["columns"]] == lines[0]
    assert [["—" if v is None else str(v) for v in row.values()] for row in data["rows"]] == table


# -- no PHI, no arm -----------------------------------------------------------------------------------------

def test_a_sponsor_sees_no_arm_no_identifier_and_subject_codes_only_in_the_drilldown(client, trial, site1, seeded,
                                                                                   sponsor):
    client.force_login(sponsor)
    bodies = []
    for page in ("received", "qc", "sites", "reads"):
        bodies.append(client.get(f"/trials/{trial.pk}/dashboards/{page}/").content.decode())
    for key in [p.key for page in dashboard.Page for p in dashboard.panels_for(page)]:
        for fmt in ("csv", "json"):
            bodies.append(client.get(f"/trials/{trial.pk}/dashboards/panels/{key}.{fmt}").content.decode())
    for body in bodies:
        assert ARM not in body and "Drug X" not in body
        assert "h-101-0001" not in body  # the patient ID hash
        assert "101-0001" not in body and "102-0001" not in body  # no subject on an aggregate
    drill = client.get(f"/trials/{trial.pk}/dashboards/panels/received-heatmap/subjects/?site_id={site1.pk}"
                       "&timepoint=BL").content.decode()
    assert "101-0001" in drill and "101-0002" in drill
    assert ARM not in drill and "h-101-0001" not in drill and "102-0001" not in drill
