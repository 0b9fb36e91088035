from . import register
from .context import FAIL, PASS, WARN, Finding, StudyContext


@register("series_present")
def check(ctx: StudyContext) -> list[Finding]:
    """Each series the charter requires is present, recognised by its Series Description (0008,103E)."""
    if ctx.procedure is None or not ctx.procedure.series_patterns:
        return []
    descriptions = [s.description for s in ctx.series if s.description]
    findings = []
    for pattern in ctx.procedure.series_patterns:
        expected = f"{pattern.label} (/{pattern.pattern}/)"
        matched = [d for d in descriptions if pattern.matches(d)]
        if matched:
            findings.append(Finding("", PASS, expected=expected, measured="; ".join(matched),
                                    message=f"{pattern.label}: found"))
        elif not descriptions and "clean_descriptors" not in ctx.deid_options:
            # the Basic Profile removes Series Description unless Clean Descriptors keeps it
            findings.append(Finding("", WARN, expected=expected, measured="not verifiable",
                                    message=f"{pattern.label}: de-identification removed every Series "
                                            "Description (switch on the Clean Descriptors option to check it)"))
        else:
            findings.append(Finding("", FAIL, expected=expected, measured="; ".join(descriptions) or "none",
                                    message=f"{pattern.label}: no series matches"))
    return findings
