"""Dashboard panels of the central review: read status, adjudication rate, inter-reader agreement, throughput.

Every role with the dashboards' permission sees these panels, sponsor viewers among them, so no panel
names a reader: a reader is "Reader 1", "Reader 2", ... numbered by when they joined the trial's reader pool
(``Reader`` rows are never deleted, so a label never moves to another person). The reader agreement page
(reads/metrics.py), with names, stays with trial managers and auditors. No panel names a subject, an arm
or a reader's site.

Each panel aggregates in PostgreSQL, in one statement (the adjudication and agreement panels share theirs
through ``filters.memo``); the kappas come from the confusion counts it returns, a handful of cells per reader
pair, never from rows. Definitions follow reads/metrics.py:

- a timepoint is one subject visit with live read tasks (open, in progress or signed): awaiting read when
  none of its tasks has been started, signed when all are signed, in progress otherwise. The date filter
  selects timepoints by the day their read tasks were created (the timepoint became ready to read).
- a subject is compared in the month the later of two readers' current signed reads of one of its follow-up
  timepoints was signed, adjudicated in a month when an adjudication (not superseded) was opened for it that
  month; the rate is adjudicated / compared.
- agreement: Cohen's kappa on overall response, over the follow-up timepoints both readers of a pair signed
  (current versions), by the month of the later read.
- throughput: signatures on reads (each signed version, corrections included) per month and reader.
"""


from django.db import connection

from trials.dashboard import Filters, PanelData
from trials.models import Trial

from .agreement import cohen_kappa_from_counts
from .models import Reader, ReadTask

# how many sites the read-status chart draws (most timepoints not yet signed first); the table has them all
STATUS_CHART_SITES = 25
STATUSES = (("awaiting", "Awaiting read", "#90a4ae"), ("in_progress", "In progress", "#f9a825"),
            ("signed", "Signed", "#2e7d32"))
PAIR_COLORS = ("#1565c0", "#6a1b9a", "#00838f", "#ef6c00", "#2e7d32", "#ad1457", "#4e342e", "#546e7a")


def _where(filters: Filters, *, day: str, subject: str) -> tuple[str, dict]:
    """SQL conditions (each starting with AND) for the filter's sites (of the subject in column ``subject``)
    and its date range on ``day`` (a timestamptz column, taken as a UTC day), and their parameters."""
    where, params = [], {}
    if filters.site_ids:
        # a subquery rather than a join, so that an unfiltered page does not join the subjects at all
        where.append(f"{subject} IN (SELECT id FROM trials_subject WHERE site_id = ANY(%(sites)s))")  # noqa: S608
        params["sites"] = list(filters.site_ids)
    if filters.date_from:
        where.append(f"({day} AT TIME ZONE 'UTC')::date >= %(date_from)s")
        params["date_from"] = filters.date_from
    if filters.date_to:
        where.append(f"({day} AT TIME ZONE 'UTC')::date <= %(date_to)s")
        params["date_to"] = filters.date_to
    return "".join(f" AND {w}" for w in where), params


def _fetch(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def reader_labels(*, trial: Trial, filters: Filters | None = None) -> dict[int, str]:
    """Reader id -> "Reader n", n counting the trial's reader pool in the order readers were added."""
    key = ("reads.reader_labels", trial.pk)
    memo = filters.memo if filters is not None else {}
    if key not in memo:
        ids = Reader.objects.filter(trial=trial).order_by("pk").values_list("pk", flat=True)
        memo[key] = {pk: f"Reader {n}" for n, pk in enumerate(ids, start=1)}
    return memo[key]


# -- timepoints by read status ------------------------------------------------------------------------------

_STATUS = """
    WITH per_timepoint AS (
        SELECT s.site_id, t.visit_id, COUNT(*) AS tasks,
               COUNT(*) FILTER (WHERE t.status = %(open)s) AS not_started,
               COUNT(*) FILTER (WHERE t.status = %(signed)s) AS signed
        FROM reads_readtask t JOIN trials_subject s ON s.id = t.subject_id
        WHERE t.trial_id = %(trial)s AND t.status = ANY(%(live)s) {where}
        GROUP BY s.site_id, t.visit_id
    )
    SELECT site.id, site.number,
           COUNT(*) FILTER (WHERE p.not_started = p.tasks) AS awaiting,
           COUNT(*) FILTER (WHERE p.not_started < p.tasks AND p.signed < p.tasks) AS in_progress,
           COUNT(*) FILTER (WHERE p.signed = p.tasks) AS signed
    FROM per_timepoint p JOIN trials_site site ON site.id = p.site_id
    GROUP BY site.id, site.number ORDER BY site.number"""


def read_status_by_site(*, trial: Trial, filters: Filters) -> list[dict]:
    """Per site (by number): timepoints awaiting read, in progress and signed."""
    where, params = _where(filters, day="t.created_at", subject="t.subject_id")
    params.update(trial=trial.pk, live=[str(s) for s in ReadTask.LIVE], open=str(ReadTask.Status.OPEN),
                  signed=str(ReadTask.Status.SIGNED))
    return [{"site": number, "awaiting": awaiting, "in_progress": in_progress, "signed": signed,
             "timepoints": awaiting + in_progress + signed}
            for _, number, awaiting, in_progress, signed in _fetch(_STATUS.format(where=where), params)]


def read_status_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """Timepoints awaiting read, in progress and signed: all sites in the filter, then each site."""
    by_site = read_status_by_site(trial=trial, filters=filters)
    total = {"site": "All sites", **{key: sum(r[key] for r in by_site)
                                     for key in ("awaiting", "in_progress", "signed", "timepoints")}}
    charted = sorted(by_site, key=lambda r: (-(r["awaiting"] + r["in_progress"]), r["site"]))[:STATUS_CHART_SITES]
    charted.sort(key=lambda r: r["site"])
    return PanelData(
        columns=[("site", "Site"), ("timepoints", "Timepoints"), ("awaiting", "Awaiting read"),
                 ("in_progress", "In progress"), ("signed", "Signed")],
        rows=[total, *by_site],
        chart={"type": "bar", "stacked": True, "horizontal": True, "y_label": "timepoints",
               "labels": [f"Site {r['site']}" for r in charted],
               "datasets": [{"label": label, "data": [r[key] for r in charted], "color": color}
                            for key, label, color in STATUSES]},
        note=f"{total['awaiting']} awaiting read, {total['in_progress']} in progress, {total['signed']} signed "
             f"(both reads). Timepoints that became ready to read in the date range; the chart shows the "
             f"{STATUS_CHART_SITES} sites with most not yet signed, the table every site.")


# -- adjudication rate and agreement: one statement for both panels ----------------------------------------

# both readers' current signed reads of a follow-up timepoint, one row per timepoint (a conditional aggregate
# rather than a self-join); the adjudication and the agreement panels both count from it, so a page reads the
# trial's reads once for the two (through filters.memo)
_PAIRED = """
    WITH paired AS (
        SELECT t.subject_id,
               MIN(t.reader_id) FILTER (WHERE t.slot = %(slot_a)s) AS reader_a,
               MIN(t.reader_id) FILTER (WHERE t.slot = %(slot_b)s) AS reader_b,
               MIN(r.overall) FILTER (WHERE t.slot = %(slot_a)s) AS overall_a,
               MIN(r.overall) FILTER (WHERE t.slot = %(slot_b)s) AS overall_b,
               MAX(r.signed_at) AS completed
        FROM reads_read r JOIN reads_readtask t ON t.id = r.task_id
        WHERE t.trial_id = %(trial)s AND t.status = ANY(%(live)s) AND r.status = %(read_signed)s
          AND r.overall <> '' {site_where}
        GROUP BY t.subject_id, t.visit_id
        -- a slot has at most one live task and a task one current read (constraints): one row each, and
        -- counting per slot (not COUNT(DISTINCT slot)) lets PostgreSQL hash instead of sorting 2 rows a timepoint
        HAVING COUNT(*) FILTER (WHERE t.slot = %(slot_a)s) = 1 AND COUNT(*) FILTER (WHERE t.slot = %(slot_b)s) = 1
    ), in_range AS (
        SELECT * FROM paired p WHERE true {compared_where}
    ), compared AS (
        SELECT DISTINCT date_trunc('month', completed AT TIME ZONE 'UTC')::date AS month, subject_id FROM in_range
    ), adjudicated AS (
        SELECT DISTINCT date_trunc('month', a.created_at AT TIME ZONE 'UTC')::date AS month, a.subject_id
        FROM reads_adjudication a
        WHERE a.trial_id = %(trial)s AND a.status <> %(superseded)s {adjudicated_where}
    )
    SELECT 'pair', NULL::date, LEAST(reader_a, reader_b), GREATEST(reader_a, reader_b),
           CASE WHEN reader_a <= reader_b THEN overall_a ELSE overall_b END,
           CASE WHEN reader_a <= reader_b THEN overall_b ELSE overall_a END, COUNT(*)
    FROM in_range GROUP BY 3, 4, 5, 6
    UNION ALL
    -- compared and adjudicated are distinct by month and subject, so within a month plain counts suffice
    SELECT 'month', c.month, COUNT(*), COUNT(a.subject_id), NULL, NULL, NULL
    FROM compared c LEFT JOIN adjudicated a ON a.subject_id = c.subject_id AND a.month = c.month
    GROUP BY c.month
    UNION ALL
    SELECT 'all', NULL, COUNT(DISTINCT c.subject_id), COUNT(DISTINCT c.subject_id) FILTER (WHERE a.subject_id IS NOT NULL),
           NULL, NULL, NULL
    FROM compared c LEFT JOIN (SELECT DISTINCT subject_id FROM adjudicated) a ON a.subject_id = c.subject_id"""


def paired_reads(*, trial: Trial, filters: Filters) -> dict:
    """From the timepoints both readers signed (the later read in the date range): the confusion counts per
    reader pair ``{(first reader id, second): {(first's overall, second's): n}}``, the first being the lower
    id; subjects compared and adjudicated per month ``[(month, compared, adjudicated)]`` and overall ``(compared,
    adjudicated)``. One statement, run once a page (``filters.memo``)."""
    key = ("reads.paired_reads", trial.pk)
    if key in filters.memo:
        return filters.memo[key]
    site_where, params = _where(Filters(site_ids=filters.site_ids), day="", subject="t.subject_id")
    compared_where, dates = _where(Filters(date_from=filters.date_from, date_to=filters.date_to),
                                   day="p.completed", subject="")
    adjudicated_where, _ = _where(filters, day="a.created_at", subject="a.subject_id")
    params.update(dates, trial=trial.pk, live=[str(s) for s in ReadTask.LIVE], read_signed="signed",
                  superseded="superseded", slot_a=str(ReadTask.Slot.A), slot_b=str(ReadTask.Slot.B))
    sql = _PAIRED.format(site_where=site_where, compared_where=compared_where, adjudicated_where=adjudicated_where)
    result = {"pairs": {}, "months": [], "all": (0, 0)}
    for kind, month, first, second, first_overall, second_overall, n in _fetch(sql, params):
        if kind == "pair":
            result["pairs"].setdefault((first, second), {})[first_overall, second_overall] = n
        elif kind == "month":
            result["months"].append((month, first, second))
        else:
            result["all"] = (first, second)
    result["months"].sort()
    filters.memo[key] = result
    return result


def adjudication_rate_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """Subjects compared and adjudicated, and the adjudication rate, per month and over the whole range."""
    paired = paired_reads(trial=trial, filters=filters)
    rows = [{"month": month.strftime("%Y-%m") if month else "All months", "compared": compared,
             "adjudicated": adjudicated, "rate": _rate(adjudicated, compared)}
            for month, compared, adjudicated in [(None, *paired["all"]), *paired["months"]]]
    months = rows[1:]
    overall = rows[0]
    return PanelData(
        columns=[("month", "Month"), ("compared", "Subjects compared"), ("adjudicated", "Subjects adjudicated"),
                 ("rate", "Adjudication rate %")],
        rows=rows,
        chart={"type": "line", "labels": [r["month"] for r in months], "percent": True,
               "y_label": "subjects adjudicated, %",
               "datasets": [{"label": "Adjudication rate %", "data": [r["rate"] for r in months],
                             "color": "#6a1b9a"}]},
        note=f"{overall['adjudicated']} of {overall['compared']} subjects compared were adjudicated"
             + (f" ({overall['rate']} %)" if overall["rate"] is not None else "")
             + ". A subject is compared in the month both readers have signed one of its follow-up timepoints, "
               "adjudicated when the readers' disagreement opened an adjudication that month.")


# -- inter-reader agreement ---------------------------------------------------------------------------------

def agreement_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """Cohen's kappa on overall response per reader pair (pseudonymous labels), with percent agreement."""
    tables = paired_reads(trial=trial, filters=filters)["pairs"]
    labels = reader_labels(trial=trial, filters=filters)
    order = {pk: n for n, pk in enumerate(labels)}
    rows = []
    for (first, second), counts in sorted(tables.items(), key=lambda item: (order[item[0][0]], order[item[0][1]])):
        kappa, percent = cohen_kappa_from_counts(counts)
        rows.append({"pair": f"{labels[first]} & {labels[second]}", "timepoints": kappa.n,
                     "agreed": sum(c for (a, b), c in counts.items() if a == b),
                     "percent": None if percent.value is None else float(percent.value),
                     "kappa": None if kappa.value is None else float(kappa.value), "reason": kappa.reason})
    return PanelData(
        columns=[("pair", "Reader pair"), ("timepoints", "Timepoints both read"), ("agreed", "Same response"),
                 ("percent", "Agreement %"), ("kappa", "Cohen's kappa"), ("reason", "Kappa not defined because")],
        rows=rows,
        chart={"type": "bar", "labels": [r["pair"] for r in rows], "y_label": "Cohen's kappa",
               "datasets": [{"label": "Cohen's kappa", "data": [r["kappa"] for r in rows], "color": "#1565c0"}]},
        note="Overall response (RECIST 1.1) of follow-up timepoints both readers of a pair signed, by the month "
             "the later read was signed. Readers are numbered in the order they joined the reader pool.")


# -- reader throughput --------------------------------------------------------------------------------------

_THROUGHPUT = """
    SELECT date_trunc('month', r.signed_at AT TIME ZONE 'UTC')::date AS month, t.reader_id, COUNT(*)
    FROM reads_read r JOIN reads_readtask t ON t.id = r.task_id
    WHERE t.trial_id = %(trial)s AND r.signed_at IS NOT NULL {where}
    GROUP BY 1, 2 ORDER BY 1, 2"""


def throughput_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """Signed reads per calendar month (UTC) and pseudonymous reader."""
    where, params = _where(filters, day="r.signed_at", subject="t.subject_id")
    params["trial"] = trial.pk
    labels = reader_labels(trial=trial, filters=filters)
    order = {pk: n for n, pk in enumerate(labels)}
    fetched = _fetch(_THROUGHPUT.format(where=where), params)
    rows = sorted(({"month": month.strftime("%Y-%m"), "reader": labels[reader], "order": order[reader],
                    "signed": n} for month, reader, n in fetched), key=lambda r: (r["month"], r["order"]))
    months = sorted({r["month"] for r in rows})
    readers = sorted({(r["order"], r["reader"]) for r in rows})
    counts = {(r["month"], r["reader"]): r["signed"] for r in rows}
    return PanelData(
        columns=[("month", "Month"), ("reader", "Reader"), ("signed", "Reads signed")],
        rows=rows,
        chart={"type": "bar", "stacked": True, "labels": months, "y_label": "reads signed",
               "datasets": [{"label": label, "data": [counts.get((m, label), 0) for m in months],
                             "color": PAIR_COLORS[n % len(PAIR_COLORS)]} for n, (_, label) in enumerate(readers)]},
        note=f"{sum(r['signed'] for r in rows)} reads signed (corrections count as a signature), by month signed "
             "(UTC). Readers are numbered in the order they joined the reader pool.")
