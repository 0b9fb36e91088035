from . import register
from .context import FAIL, PASS, Finding, StudyContext


@register("visit_window")
def check(ctx: StudyContext) -> list[Finding]:
    """The acquisition date recorded at intake (the original: files in the archive are date-shifted) lies
    inside the subject's visit window."""
    if ctx.visit_window is None:
        return []
    start, end = ctx.visit_window
    expected = f"{start:%Y-%m-%d} – {end:%Y-%m-%d}"
    date = ctx.acquisition_date
    if date is None:
        return [Finding("", FAIL, expected=expected, measured="absent",
                        message="no acquisition, series or study date was recorded at intake")]
    if start <= date <= end:
        return [Finding("", PASS, expected=expected, measured=f"{date:%Y-%m-%d}", message="inside the window")]
    days = (start - date).days if date < start else (date - end).days
    when = "before the window opens" if date < start else "after the window closes"
    return [Finding("", FAIL, expected=expected, measured=f"{date:%Y-%m-%d}",
                    message=f"acquired {days} day(s) {when}")]
