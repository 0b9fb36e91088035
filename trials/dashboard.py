"""The dashboard frame: a registry of panels, the filters they take, and their numbers as CSV or JSON.

trials/ may not import the apps above it, so it knows no panel itself. Each app contributes its panels,
computed by its own selectors, from its ``AppConfig.ready()``::

    # reads/apps.py
    def ready(self) -> None:
        from trials import dashboard
        from . import dashboard as panels

        dashboard.register(dashboard.Panel(
            key="reads-status", title="Timepoints by read status", page=dashboard.Page.READS,
            compute=panels.read_status, order=10))

A compute function is called as ``compute(trial=trial, filters=filters)`` and returns a ``PanelData``:
the rows of its table (dicts keyed by the column keys), the columns, and a chart spec that
static/js/dashboard.js draws with chart.js. It aggregates in the database (one or a few queries,
whatever the trial's size) and returns site numbers, counts and rates only: no subject code, no
identifier, no treatment arm, because every role with ``Perm.VIEW_DASHBOARDS`` (sponsor viewers among
them) sees every panel. A panel may offer a drill-down (``drilldown(trial=, filters=, user=, params=)``)
that lists subjects by code; it must scope them with ``trials.selectors.subject_list_for_user``, and the
frame shows it only to roles that may see the trial's subjects.

Chart specs (JSON): ``{"type": "bar" | "line" | "heatmap", "labels": [...], "datasets": [{"label": ...,
"data": [...], "color": "#hex"}], "stacked": bool, "horizontal": bool, "y_label": str, "percent": bool}``;
a heat map gives ``{"type": "heatmap", "x": [...], "y": [...], "cells": [{"x", "y", "v", "text"}],
"v_label": str}`` with ``v`` between 0 and 100 (or null: nothing to colour).
"""

import csv
import datetime
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from django.core.exceptions import ValidationError
from django.utils import timezone

from .models import Site, Trial
from .permissions import Perm, has_perm, site_ids_with, trial_ids_with


class Page(StrEnum):
    RECEIVED = "received"
    QC = "qc"
    READS = "reads"
    SITES = "sites"

    @property
    def title(self) -> str:
        return PAGE_TITLES[self]


PAGE_TITLES = {Page.RECEIVED: "Imaging received", Page.QC: "Quality control", Page.READS: "Reads",
               Page.SITES: "Sites needing attention"}


@dataclass(frozen=True)
class Filters:
    """What every panel is narrowed by: a date range (inclusive; each panel says which date it filters) and
    sites (empty: every site). ``today`` is the day ages and due dates are counted from. ``memo`` lives as
    long as the filters (one request): panels sharing an aggregation keep it there, so a page runs it once."""

    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    site_ids: tuple[int, ...] = ()
    today: datetime.date = field(default_factory=timezone.localdate)
    memo: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def query(self) -> dict[str, str | list[str]]:
        """The filters as GET parameters (to carry them into download and drill-down links)."""
        params: dict[str, str | list[str]] = {}
        if self.date_from:
            params["from"] = self.date_from.isoformat()
        if self.date_to:
            params["to"] = self.date_to.isoformat()
        if self.site_ids:
            params["site"] = [str(pk) for pk in self.site_ids]
        return params


@dataclass
class PanelData:
    columns: list[tuple[str, str]]  # (row key, heading)
    rows: list[dict]                # a key "drill" (dict of GET parameters) links the row to the drill-down
    chart: dict
    note: str = ""                  # one sentence under the title: what is counted, which date is filtered


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    page: Page
    compute: Callable[..., PanelData]
    perm: Perm = Perm.VIEW_DASHBOARDS
    order: int = 100
    # drilldown(trial=, filters=, user=, params=) -> PanelData listing subjects; None: no drill-down
    drilldown: Callable[..., PanelData] | None = None


_panels: dict[str, Panel] = {}


def register(panel: Panel) -> None:
    """Add (or replace, by key) a panel; called from AppConfig.ready()."""
    if not isinstance(panel.page, Page):
        raise ValueError(f"unknown dashboard page {panel.page!r}: one of {', '.join(Page)}")
    _panels[panel.key] = panel


def panels_for(page: Page) -> list[Panel]:
    return sorted((p for p in _panels.values() if p.page == page), key=lambda p: (p.order, p.title))


def panel_get(key: str) -> Panel | None:
    return _panels.get(key)


def pages_with_panels() -> list[Page]:
    return [page for page in Page if panels_for(page)]


def dashboard_trial_list_for_user(*, user) -> list[Trial]:
    """Trials whose dashboards the user sees (trial managers, sponsor viewers), by protocol number."""
    return list(Trial.objects.filter(pk__in=trial_ids_with(user=user, perm=Perm.VIEW_DASHBOARDS))
                .order_by("protocol_number"))


def may_view(*, user, trial: Trial, panel: Panel | None = None) -> bool:
    return has_perm(user=user, perm=panel.perm if panel else Perm.VIEW_DASHBOARDS, trial_id=trial.pk)


def may_drill_down(*, user, trial: Trial) -> bool:
    """Subject codes (never names, never arms) for roles that may see every site's subjects."""
    return site_ids_with(user=user, perm=Perm.VIEW_TRIAL, trial_id=trial.pk) is None


# -- filters from a request ---------------------------------------------------------------------------------

def _date(value: str, name: str, errors: dict) -> datetime.date | None:
    if not value:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        errors[name] = f"give the date as YYYY-MM-DD (not {value!r})"
        return None


def filters_parse(*, params, trial: Trial, today: datetime.date | None = None) -> Filters:
    """Filters from GET parameters ``from``, ``to`` (YYYY-MM-DD) and ``site`` (repeatable site ids of the
    trial); ValidationError naming each bad parameter."""
    errors: dict[str, str] = {}
    date_from = _date(params.get("from", "").strip(), "from", errors)
    date_to = _date(params.get("to", "").strip(), "to", errors)
    if date_from and date_to and date_from > date_to:
        errors["to"] = f"the end date {date_to} is before the start date {date_from}"
    raw_sites = [s.strip() for s in params.getlist("site") if s.strip()]
    site_ids: list[int] = []
    for raw in raw_sites:
        if not raw.isdigit():
            errors["site"] = f"a site is given by its id, a whole number (not {raw!r})"
            break
        site_ids.append(int(raw))
    if site_ids and "site" not in errors:
        known = set(Site.objects.filter(trial=trial, pk__in=site_ids).values_list("pk", flat=True))
        unknown = sorted(set(site_ids) - known)
        if unknown:
            errors["site"] = f"no site {', '.join(map(str, unknown))} in this trial"
    if errors:
        raise ValidationError(errors)
    return Filters(date_from=date_from, date_to=date_to, site_ids=tuple(sorted(set(site_ids))),
                   today=today or timezone.localdate())


# -- downloads: the table's own rows, so a download always matches what the page shows ------------------------

def _plain(value):
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def panel_rows(data: PanelData) -> list[dict]:
    """The table's rows keyed by column key, in column order (no drill-down links)."""
    return [{key: _plain(row.get(key)) for key, _ in data.columns} for row in data.rows]


def panel_csv(data: PanelData) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([heading for _, heading in data.columns])
    for row in panel_rows(data):
        writer.writerow(["" if row[key] is None else row[key] for key, _ in data.columns])
    return out.getvalue()


def panel_json(*, panel: Panel, trial: Trial, filters: Filters, data: PanelData) -> str:
    return json.dumps({
        "panel": panel.key, "title": panel.title, "trial": trial.protocol_number,
        "filters": {"from": _plain(filters.date_from), "to": _plain(filters.date_to),
                    "sites": list(filters.site_ids), "today": filters.today.isoformat()},
        "columns": [{"key": key, "label": heading} for key, heading in data.columns],
        "rows": panel_rows(data),
    }, indent=1)
