from . import register
from .context import FAIL, PASS, WARN, Finding, StudyContext


@register("body_part")
def check(ctx: StudyContext) -> list[Finding]:
    """Body Part Examined (0018,0015) of each series is one the procedure covers; absent is a warning."""
    if ctx.procedure is None or not ctx.procedure.body_parts:
        return []
    allowed = ctx.procedure.body_parts
    findings = []
    for s in ctx.image_series:
        part = str(s.first("BodyPartExamined", "") or "").strip().upper()
        if not part:
            outcome, message = WARN, f"{s.label}: no Body Part Examined in the headers"
        elif part in allowed:
            outcome, message = PASS, f"{s.label}: {part}"
        else:
            outcome, message = FAIL, f"{s.label}: {part} is not among {', '.join(allowed)}"
        findings.append(Finding("", outcome, expected=", ".join(allowed), measured=part or "absent",
                                message=message, series_id=s.series_id))
    return findings
