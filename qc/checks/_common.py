"""Helpers the range checks share."""

import math

from trials.charter import Range

from .context import FAIL, PASS, WARN, Finding, SeriesData


def number(value) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def fmt(value: float) -> str:
    return f"{value:g}"


def range_findings(*, series: list[SeriesData], allowed: Range | None, keyword: str, what: str,
                   values_of=None) -> list[Finding]:
    """One finding per series: every value of ``keyword`` must lie in ``allowed``; absent is a warning."""
    if allowed is None or (allowed.min is None and allowed.max is None):
        return []
    findings = []
    for s in series:
        raw = values_of(s) if values_of else s.values(keyword)
        numbers = sorted({n for n in (number(v) for v in raw) if n is not None})
        if not numbers:
            findings.append(Finding("", WARN, expected=allowed.describe(), measured="absent",
                                    message=f"{s.label}: no {what} in the headers", series_id=s.series_id))
            continue
        outside = [n for n in numbers if not allowed.contains(n)]
        unit = f" {allowed.unit}" if allowed.unit else ""
        measured = ", ".join(fmt(n) for n in numbers) + unit
        findings.append(Finding(
            "", FAIL if outside else PASS, expected=allowed.describe(), measured=measured,
            message=(f"{s.label}: {what} {', '.join(fmt(n) for n in outside)}{unit} outside {allowed.describe()}"
                     if outside else f"{s.label}: {what} within the charter"),
            series_id=s.series_id))
    return findings
