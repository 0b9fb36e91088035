import statistics

from . import register
from ._geometry import positions
from .context import FAIL, PASS, WARN, Finding, StudyContext

TOLERANCE = 0.01  # mm: positions closer than this are the same slice (duplicates: their own check)


@register("missing_slices")
def check(ctx: StudyContext) -> list[Finding]:
    """No gap in a stack: consecutive slice positions along the normal are evenly spaced.

    The expected spacing is the median step; a step over 1.5 times it means slices are missing.
    """
    findings = []
    for s in ctx.image_series:
        where, why = positions(s)
        if why or len(where) < 3:
            if why:
                findings.append(Finding("", WARN, expected="no gaps", measured="not verifiable",
                                        message=f"{s.label}: {why}", series_id=s.series_id))
            continue
        unique = [where[0]] + [b for a, b in zip(where, where[1:], strict=False) if b - a > TOLERANCE]
        steps = [b - a for a, b in zip(unique, unique[1:], strict=False)]
        if not steps:
            continue
        spacing = statistics.median(steps)
        gaps = [(a, b) for a, b in zip(unique, unique[1:], strict=False) if b - a > 1.5 * spacing]
        missing = sum(round((b - a) / spacing) - 1 for a, b in gaps)
        expected = f"every {spacing:g} mm"
        if not gaps:
            findings.append(Finding("", PASS, expected=expected, measured=f"{len(unique)} positions, no gap",
                                    message=f"{s.label}: contiguous", series_id=s.series_id))
        else:
            spots = ", ".join(f"{a:g}→{b:g} mm" for a, b in gaps[:5])
            findings.append(Finding("", FAIL, expected=expected, measured=f"{missing} missing slice(s)",
                                    message=f"{s.label}: gap(s) at {spots}", series_id=s.series_id))
    return findings
