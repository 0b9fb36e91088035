"""Dashboard panels of intake: imaging received against the visit schedule, by site and timepoint.

Each charter procedure of each subject's visit (trials.Visit, made from the charter's schedule at
enrollment) is one expected scan. It is

- on time: a version that counts (neither rejected nor unassigned, as on the expected-vs-received page)
  was acquired (its header's acquisition date, else the day it arrived) by the window's last day;
- late: the first such version was acquired after the window closed;
- missing: the window has closed and nothing that counts has arrived;
- not yet due: nothing has arrived and the window is still open or has not opened.

The date filter selects visits by nominal date. Everything is counted in one SQL statement; the
drill-down lists one site's subjects for one timepoint by code.
"""

from django.db import connection

from trials.dashboard import Filters, PanelData
from trials.models import Site, Trial
from trials.selectors import subject_list_for_user

from .selectors import NOT_RECEIVED

STATUSES = (("on_time", "On time", "#2e7d32"), ("late", "Late", "#f9a825"), ("missing", "Missing", "#c62828"),
            ("not_yet_due", "Not yet due", "#90a4ae"))

# the first date a counting version of each visit's procedure was acquired
_ARRIVED = """
    arrived AS (
        SELECT st.visit_id, st.procedure,
               MIN(COALESCE(st.acquisition_date, (st.created_at AT TIME ZONE 'UTC')::date)) AS first_date
        FROM intake_imagingstudy st
        WHERE st.trial_id = %(trial)s AND st.subject_id IS NOT NULL AND st.visit_id IS NOT NULL
          AND st.status <> ALL(%(not_received)s) {study_where}
        GROUP BY st.visit_id, st.procedure
    )"""
# per site and timepoint, without unnesting each visit's procedures (the planner would guess 100 a visit,
# and the misestimate sends a trial-wide statement through JIT compilation) and without grouping by visit:
# what was expected (from the visits) and what arrived (joined to its visit) are each summed to site and
# timepoint, then put side by side
_PER_SITE_TIMEPOINT = """
    WITH {arrived}, expected AS (
        SELECT s.site_id, v.timepoint, MIN(v.nominal_date - s.enrollment_date) AS day,
               SUM(jsonb_array_length(v.procedures)) AS expected,
               COALESCE(SUM(jsonb_array_length(v.procedures)) FILTER (WHERE v.window_end < %(today)s), 0) AS closed
        FROM trials_visit v JOIN trials_subject s ON s.id = v.subject_id
        WHERE s.trial_id = %(trial)s {where}
        GROUP BY s.site_id, v.timepoint
    ), got AS (
        SELECT s.site_id, v.timepoint,
               COUNT(*) FILTER (WHERE listed AND a.first_date <= v.window_end) AS on_time,
               COUNT(*) FILTER (WHERE listed AND a.first_date > v.window_end) AS late,
               COUNT(*) FILTER (WHERE listed AND v.window_end < %(today)s) AS closed
        FROM arrived a
        JOIN trials_visit v ON v.id = a.visit_id
        JOIN trials_subject s ON s.id = v.subject_id
        -- a procedure the visit does not list is not expected (tested here, not in the join, where the
        -- planner would misjudge how many rows pass)
        CROSS JOIN LATERAL (SELECT v.procedures ? a.procedure AS listed) AS l
        WHERE s.trial_id = %(trial)s {where}
        GROUP BY s.site_id, v.timepoint
    ), per_site_timepoint AS (
        SELECT e.site_id, e.timepoint, e.day, e.expected, COALESCE(g.on_time, 0) AS on_time,
               COALESCE(g.late, 0) AS late, e.closed - COALESCE(g.closed, 0) AS missing,
               (e.expected - e.closed) - (COALESCE(g.on_time, 0) + COALESCE(g.late, 0) - COALESCE(g.closed, 0))
                   AS not_yet_due
        FROM expected e LEFT JOIN got g ON g.site_id = e.site_id AND g.timepoint = e.timepoint
    )
"""
# one row per expected scan (visit x procedure), for the drill-down's one site and timepoint
_EXPECTED = """
    WITH {arrived}, expected AS (
        SELECT v.id AS visit_id, s.code AS subject_code, v.window_start, v.window_end, p.procedure
        FROM trials_visit v
        JOIN trials_subject s ON s.id = v.subject_id
        CROSS JOIN LATERAL jsonb_array_elements_text(v.procedures) AS p(procedure)
        WHERE s.trial_id = %(trial)s {where}
    ), classified AS (
        SELECT e.*, a.first_date,
               CASE WHEN a.first_date IS NOT NULL AND a.first_date <= e.window_end THEN 'on_time'
                    WHEN a.first_date IS NOT NULL THEN 'late'
                    WHEN e.window_end < %(today)s THEN 'missing'
                    ELSE 'not_yet_due' END AS state
        FROM expected e LEFT JOIN arrived a ON a.visit_id = e.visit_id AND a.procedure = e.procedure
    )
"""
_BY_SITE_TIMEPOINT = """
    SELECT site.id, site.number, p.timepoint, p.day, p.expected, p.on_time, p.late, p.missing, p.not_yet_due
    FROM per_site_timepoint p JOIN trials_site site ON site.id = p.site_id
    ORDER BY site.number, p.day, p.timepoint"""
_SUBJECTS = """SELECT subject_code, procedure, window_start, window_end, state, first_date
               FROM classified ORDER BY subject_code, procedure"""


def _scope(*, trial: Trial, filters: Filters, template: str = _PER_SITE_TIMEPOINT, extra: str = "") -> tuple[str, dict]:
    where, params = [], {"trial": trial.pk, "today": filters.today, "not_received": [str(s) for s in NOT_RECEIVED]}
    if filters.site_ids:
        where.append("s.site_id = ANY(%(sites)s)")
        params["sites"] = list(filters.site_ids)
    if filters.date_from:
        where.append("v.nominal_date >= %(date_from)s")
        params["date_from"] = filters.date_from
    if filters.date_to:
        where.append("v.nominal_date <= %(date_to)s")
        params["date_to"] = filters.date_to
    if extra:
        where.append(extra)
    # the studies of the chosen sites only (a study's site is its subject's)
    arrived = _ARRIVED.format(study_where="AND st.site_id = ANY(%(sites)s)" if filters.site_ids else "")
    return template.format(arrived=arrived, where="".join(f" AND {w}" for w in where)), params


def received_by_site_timepoint(*, trial: Trial, filters: Filters) -> list[dict]:
    """Per site and timepoint: expected scans and how many are on time, late, missing, not yet due.
    Ordered by site number, then by the timepoint's nominal day. One statement, run once per page: the
    panels of one request share it through ``filters.memo``."""
    key = ("intake.received_by_site_timepoint", trial.pk)
    if key not in filters.memo:
        filters.memo[key] = _received_by_site_timepoint(trial=trial, filters=filters)
    return [dict(row) for row in filters.memo[key]]


def _received_by_site_timepoint(*, trial: Trial, filters: Filters) -> list[dict]:
    sql, params = _scope(trial=trial, filters=filters)
    with connection.cursor() as cur:
        cur.execute(sql + _BY_SITE_TIMEPOINT, params)
        rows = cur.fetchall()
    result = []
    for site_id, number, timepoint, day, *counts in rows:
        expected, on_time, late, missing, not_yet_due = (int(n) for n in counts)  # SUMs come back as numeric
        due = on_time + late + missing
        result.append({"site_id": site_id, "site": number, "timepoint": timepoint, "day": day,
                       "expected": expected, "on_time": on_time, "late": late, "missing": missing,
                       "not_yet_due": not_yet_due,
                       "on_time_pct": round(100 * on_time / due, 1) if due else None})
    return result


def overdue_scans_by_site(*, trial: Trial, filters: Filters) -> dict[int, int]:
    """Missing scans (window closed, nothing that counts arrived) per site id, sites with none left out:
    the site ranking's input."""
    missing: dict[int, int] = {}
    for row in received_by_site_timepoint(trial=trial, filters=filters):
        if row["missing"]:
            missing[row["site_id"]] = missing.get(row["site_id"], 0) + row["missing"]
    return missing


def _timepoint_order(rows: list[dict]) -> list[str]:
    days: dict[str, int] = {}
    for row in rows:
        days[row["timepoint"]] = min(days.get(row["timepoint"], row["day"]), row["day"])
    return sorted(days, key=lambda tp: (days[tp], tp))


def received_heatmap_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """The heat map: sites down, timepoints across, coloured by the share of due scans that came on time."""
    rows = received_by_site_timepoint(trial=trial, filters=filters)
    for row in rows:
        row["drill"] = {"site_id": row["site_id"], "timepoint": row["timepoint"]}
    sites = list(dict.fromkeys(row["site"] for row in rows))
    cells = [{"x": row["timepoint"], "y": row["site"], "v": row["on_time_pct"], "drill": row["drill"],
              "text": f"{row['on_time']} on time, {row['late']} late, {row['missing']} missing, "
                      f"{row['not_yet_due']} not yet due of {row['expected']}"} for row in rows]
    return PanelData(
        columns=[("site", "Site"), ("timepoint", "Timepoint"), ("expected", "Expected"), ("on_time", "On time"),
                 ("late", "Late"), ("missing", "Missing"), ("not_yet_due", "Not yet due"),
                 ("on_time_pct", "On time % of due")],
        rows=rows,
        chart={"type": "heatmap", "x": _timepoint_order(rows), "y": sites, "cells": cells,
               "v_label": "on time, % of scans due"},
        note="Each charter procedure of each visit is one expected scan; the date filter selects visits by "
             "nominal date. Green: every due scan came on time; red: none did; grey: nothing due yet.")


def received_by_timepoint_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """Trial-wide (or the filtered sites'): expected scans per timepoint, stacked by state."""
    by_site = received_by_site_timepoint(trial=trial, filters=filters)
    order = _timepoint_order(by_site)
    totals = {tp: {"timepoint": tp, "expected": 0, **{key: 0 for key, _, _ in STATUSES}} for tp in order}
    for row in by_site:
        total = totals[row["timepoint"]]
        total["expected"] += row["expected"]
        for key, _, _ in STATUSES:
            total[key] += row[key]
    rows = [totals[tp] for tp in order]
    return PanelData(
        columns=[("timepoint", "Timepoint"), ("expected", "Expected")] + [(k, label) for k, label, _ in STATUSES],
        rows=rows,
        chart={"type": "bar", "stacked": True, "labels": order, "y_label": "scans",
               "datasets": [{"label": label, "data": [r[key] for r in rows], "color": color}
                            for key, label, color in STATUSES]},
        note="Expected scans per timepoint, all sites in the filter together.")


def received_drilldown(*, trial: Trial, filters: Filters, user, params) -> PanelData:
    """One site's subjects at one timepoint: code, procedure, window, state and the date the scan was
    acquired. Subjects are those the user may see (trials.selectors.subject_list_for_user)."""
    try:
        site_id = int(params.get("site_id", ""))
    except ValueError:
        site_id = None
    timepoint = params.get("timepoint", "").strip()
    if site_id is None or not timepoint:
        raise ValueError("choose a cell of the heat map: a site (site_id) and a timepoint")
    if not Site.objects.filter(trial=trial, pk=site_id).exists():
        raise ValueError(f"no site {site_id} in this trial")
    visible = list(subject_list_for_user(user=user, trial=trial).filter(site_id=site_id).values_list("pk", flat=True))
    narrowed = Filters(date_from=filters.date_from, date_to=filters.date_to, site_ids=(site_id,), today=filters.today)
    sql, sql_params = _scope(trial=trial, filters=narrowed, template=_EXPECTED,
                             extra="v.timepoint = %(timepoint)s AND s.id = ANY(%(visible)s)")
    sql_params.update(timepoint=timepoint, visible=visible)
    with connection.cursor() as cur:
        cur.execute(sql + _SUBJECTS, sql_params)
        fetched = cur.fetchall()
    labels = {key: label for key, label, _ in STATUSES}
    rows = [{"subject": code, "procedure": procedure, "window_start": start, "window_end": end,
             "state": labels[state], "acquired": first} for code, procedure, start, end, state, first in fetched]
    counts = {label: sum(1 for r in rows if r["state"] == label) for _, label, _ in STATUSES}
    site_number = Site.objects.filter(pk=site_id).values_list("number", flat=True).first()
    return PanelData(
        columns=[("subject", "Subject"), ("procedure", "Procedure"), ("window_start", "Window opens"),
                 ("window_end", "Window closes"), ("state", "State"), ("acquired", "Acquired")],
        rows=rows,
        chart={"type": "bar", "labels": list(counts), "y_label": "scans",
               "datasets": [{"label": f"Site {site_number} {timepoint}", "data": list(counts.values())}]},
        note=f"Site {site_number}, timepoint {timepoint}: each subject's expected scans, by subject code.")
