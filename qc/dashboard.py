"""Dashboard panels of QC, and the site ranking (it joins intake's missing scans with QC's failures).

Every panel aggregates in the database: conditional counts and, for the median, PostgreSQL's
percentile_cont. Each says which date the filter's range applies to. No panel names a subject.
"""

import datetime

from django.db.models import Aggregate, Count, F, FloatField, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncMonth

from intake.dashboard import overdue_scans_by_site
from trials.dashboard import Filters, PanelData
from trials.models import Site, Trial

from .models import CheckResult, QcDecision, QcRun, Query

# how many sites the trend chart draws one line for (beyond "All sites"): more would be unreadable
TREND_SITE_LINES = 8
RANKING_SIZE = 25
AGE_BUCKETS = (("0-7", 0, 7), ("8-14", 8, 14), ("15-30", 15, 30), (">30", 31, None))


class Median(Aggregate):
    """The median of a numeric expression (PostgreSQL's continuous percentile)."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _in_range(field: str, filters: Filters) -> Q:
    """``field`` (a datetime) on a day of the filter's range, UTC days."""
    q = Q()
    if filters.date_from:
        q &= Q(**{f"{field}__date__gte": filters.date_from})
    if filters.date_to:
        q &= Q(**{f"{field}__date__lte": filters.date_to})
    return q


def _sites(site_field: str, filters: Filters) -> Q:
    return Q(**{f"{site_field}__in": filters.site_ids}) if filters.site_ids else Q()


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


# -- first-pass acceptance ----------------------------------------------------------------------------------

def _first_pass(trial: Trial, filters: Filters):
    """QC decisions on first versions (a rescan's decision is not a first pass), by decision day."""
    return QcDecision.objects.filter(_in_range("decided_at", filters), _sites("study__site_id", filters),
                                     study__trial=trial, study__version=1)


_ACCEPTED = Count("pk", filter=Q(decision=QcDecision.Decision.ACCEPT))


def first_pass_trend_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """First-pass acceptance per calendar month (UTC): all sites in the filter, and one line per site
    when at most TREND_SITE_LINES sites are chosen."""
    decisions = _first_pass(trial, filters).annotate(month=TruncMonth("decided_at", tzinfo=datetime.UTC))
    rows = [{"series": "All sites", "month": r["month"].strftime("%Y-%m"), "decided": r["decided"],
             "accepted": r["accepted"], "rate": _rate(r["accepted"], r["decided"])}
            for r in decisions.values("month").annotate(decided=Count("pk"), accepted=_ACCEPTED).order_by("month")]
    months = [r["month"] for r in rows]
    datasets = [{"label": "All sites", "data": [r["rate"] for r in rows]}]
    if filters.site_ids and len(filters.site_ids) <= TREND_SITE_LINES:
        per_site = (decisions.values("month", number=F("study__site__number"))
                    .annotate(decided=Count("pk"), accepted=_ACCEPTED).order_by("number", "month"))
        by_site: dict[str, dict[str, float | None]] = {}
        for r in per_site:
            month = r["month"].strftime("%Y-%m")
            rate = _rate(r["accepted"], r["decided"])
            by_site.setdefault(r["number"], {})[month] = rate
            rows.append({"series": f"Site {r['number']}", "month": month, "decided": r["decided"],
                         "accepted": r["accepted"], "rate": rate})
        datasets += [{"label": f"Site {number}", "data": [rates.get(m) for m in months]}
                     for number, rates in by_site.items()]
    return PanelData(
        columns=[("series", "Sites"), ("month", "Month"), ("decided", "First versions decided"),
                 ("accepted", "Accepted first pass"), ("rate", "First-pass acceptance %")],
        rows=rows,
        chart={"type": "line", "labels": months, "datasets": datasets, "percent": True,
               "y_label": "accepted first pass, %"},
        note="Share of first versions the analyst accepted, by month of the decision. Choose up to "
             f"{TREND_SITE_LINES} sites in the filter to see a line for each.")


def first_pass_by_site_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """First-pass acceptance per site over the date range, lowest first (the sites to look at)."""
    numbers = dict(Site.objects.filter(trial=trial).values_list("pk", "number"))
    rows = [{"site": numbers[r["study__site_id"]], "decided": r["decided"], "accepted": r["accepted"],
             "rate": _rate(r["accepted"], r["decided"])}
            for r in _first_pass(trial, filters).values("study__site_id").order_by()
            .annotate(decided=Count("pk"), accepted=_ACCEPTED)]
    rows.sort(key=lambda r: (r["rate"], r["site"]))
    return PanelData(
        columns=[("site", "Site"), ("decided", "First versions decided"), ("accepted", "Accepted first pass"),
                 ("rate", "First-pass acceptance %")],
        rows=rows,
        chart={"type": "bar", "labels": [f"Site {r['site']}" for r in rows], "percent": True,
               "y_label": "accepted first pass, %",
               "datasets": [{"label": "First-pass acceptance %", "data": [r["rate"] for r in rows],
                             "color": "#1565c0"}]},
        note="By site over the date range (decision day), lowest first.")


# -- failing checks -----------------------------------------------------------------------------------------

def failing_checks_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """Failed automated checks by rule (each series' failure counts once), with the studies concerned;
    runs started in the date range."""
    results = CheckResult.objects.filter(_in_range("run__started_at", filters), _sites("run__study__site_id", filters),
                                         run__study__trial=trial, outcome=CheckResult.Outcome.FAIL)
    rows = list(results.values("rule").annotate(failures=Count("pk"), studies=Count("run__study", distinct=True))
                .order_by("-failures", "rule"))
    return PanelData(
        columns=[("rule", "Check"), ("failures", "Failures"), ("studies", "Studies")],
        rows=rows,
        chart={"type": "bar", "horizontal": True, "labels": [r["rule"] for r in rows], "y_label": "failures",
               "datasets": [{"label": "Failures", "data": [r["failures"] for r in rows], "color": "#c62828"}]},
        note="Failed results of automated QC runs started in the date range, by check.")


# -- open queries -------------------------------------------------------------------------------------------

def _open_queries(trial: Trial, filters: Filters):
    return Query.objects.filter(_in_range("raised_at", filters), _sites("site_id", filters), trial=trial).exclude(
        status=Query.Status.CLOSED)


def _overdue(today: datetime.date) -> Q:
    return Q(status__in=Query.WAITING_ON_SITE, due_date__lt=today)


def open_queries_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """Queries not closed, by age (days since raised, on ``today``) and how many of each are overdue."""
    aggregates = {}
    for index, (_, low, high) in enumerate(AGE_BUCKETS):
        age = Q(raised_at__date__lte=filters.today - datetime.timedelta(days=low))
        if high is not None:
            age &= Q(raised_at__date__gte=filters.today - datetime.timedelta(days=high))
        aggregates[f"open_{index}"] = Count("pk", filter=age)
        aggregates[f"overdue_{index}"] = Count("pk", filter=age & _overdue(filters.today))
    counts = _open_queries(trial, filters).aggregate(**aggregates)
    rows = [{"age": f"{label} days", "open": counts[f"open_{index}"], "overdue": counts[f"overdue_{index}"]}
            for index, (label, _, _) in enumerate(AGE_BUCKETS)]
    overdue = sum(r["overdue"] for r in rows)
    return PanelData(
        columns=[("age", "Age"), ("open", "Open queries"), ("overdue", "Overdue")],
        rows=rows,
        chart={"type": "bar", "labels": [r["age"] for r in rows], "y_label": "queries",
               "datasets": [{"label": "Open", "data": [r["open"] for r in rows], "color": "#1565c0"},
                            {"label": "Overdue", "data": [r["overdue"] for r in rows], "color": "#c62828"}]},
        note=f"{overdue} overdue (past the due date, waiting on the site). Queries raised in the date range and "
             "not closed, by days since raised.")


# -- resolution time ----------------------------------------------------------------------------------------

def resolution_time_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """Median days from raising a query to closing it, per site, for queries closed in the date range;
    slowest first."""
    days = RawSQL('EXTRACT(EPOCH FROM ("qc_query"."closed_at" - "qc_query"."raised_at")) / 86400.0', [],
                  output_field=FloatField())
    rows = [{"site": r["number"], "closed": r["closed"], "median_days": round(r["median_days"], 1)}
            for r in Query.objects.filter(_in_range("closed_at", filters), _sites("site_id", filters), trial=trial,
                                          status=Query.Status.CLOSED, closed_at__isnull=False)
            .values(number=F("site__number")).annotate(closed=Count("pk"), median_days=Median(days))
            .order_by("-median_days", "number")]
    return PanelData(
        columns=[("site", "Site"), ("closed", "Queries closed"), ("median_days", "Median days to close")],
        rows=rows,
        chart={"type": "bar", "labels": [f"Site {r['site']}" for r in rows], "y_label": "days",
               "datasets": [{"label": "Median days to close", "data": [r["median_days"] for r in rows],
                             "color": "#6a1b9a"}]},
        note="Queries closed in the date range (closing day), slowest site first.")


# -- site ranking -------------------------------------------------------------------------------------------

def site_ranking_panel(*, trial: Trial, filters: Filters) -> PanelData:
    """The sites needing attention: most missing (overdue) scans, then most QC rejections; with studies
    whose automated checks failed and overdue queries. At most RANKING_SIZE sites, none with nothing."""
    missing = overdue_scans_by_site(trial=trial, filters=filters)
    numbers = dict(Site.objects.filter(_sites("pk", filters), trial=trial).values_list("pk", "number"))
    rejected = dict(QcDecision.objects.filter(_in_range("decided_at", filters), _sites("study__site_id", filters),
                                              study__trial=trial, decision=QcDecision.Decision.REJECT)
                    .values_list("study__site_id").annotate(n=Count("pk")).values_list("study__site_id", "n"))
    failed = dict(QcRun.objects.filter(_in_range("started_at", filters), _sites("study__site_id", filters),
                                       study__trial=trial, failed__gt=0)
                  .values_list("study__site_id").annotate(n=Count("study", distinct=True)).values_list(
                      "study__site_id", "n"))
    overdue = dict(Query.objects.filter(_overdue(filters.today), _sites("site_id", filters), trial=trial)
                   .values_list("site_id").annotate(n=Count("pk")).values_list("site_id", "n"))
    rows = []
    for pk, number in numbers.items():
        row = {"site": number, "missing": missing.get(pk, 0), "rejected": rejected.get(pk, 0),
               "failed_checks": failed.get(pk, 0), "overdue_queries": overdue.get(pk, 0)}
        if any(row[k] for k in ("missing", "rejected", "failed_checks", "overdue_queries")):
            rows.append(row)
    rows.sort(key=lambda r: (-r["missing"], -r["rejected"], -r["failed_checks"], -r["overdue_queries"], r["site"]))
    rows = rows[:RANKING_SIZE]
    labels = [f"Site {r['site']}" for r in rows]
    return PanelData(
        columns=[("site", "Site"), ("missing", "Missing scans"), ("rejected", "QC rejections"),
                 ("failed_checks", "Studies failing automated checks"), ("overdue_queries", "Overdue queries")],
        rows=rows,
        chart={"type": "bar", "horizontal": True, "stacked": True, "labels": labels, "y_label": "count",
               "datasets": [{"label": "Missing scans", "data": [r["missing"] for r in rows], "color": "#c62828"},
                            {"label": "QC rejections", "data": [r["rejected"] for r in rows], "color": "#ef6c00"},
                            {"label": "Studies failing checks", "data": [r["failed_checks"] for r in rows],
                             "color": "#f9a825"},
                            {"label": "Overdue queries", "data": [r["overdue_queries"] for r in rows],
                             "color": "#6a1b9a"}]},
        note=f"The {RANKING_SIZE} sites with most missing scans (visit windows closed, by nominal date in the "
             "range), then most QC rejections (decision day); the earliest signal for retraining.")
