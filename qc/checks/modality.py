from . import register
from .context import FAIL, PASS, Finding, StudyContext


@register("modality")
def check(ctx: StudyContext) -> list[Finding]:
    """Each series' Modality (0008,0060) is one the procedure allows."""
    if ctx.procedure is None or not ctx.procedure.modalities:
        return []
    allowed = ctx.procedure.modalities
    findings = []
    for s in ctx.series:
        modality = str(s.first("Modality", s.modality) or "").upper()
        ok = modality in allowed
        findings.append(Finding("", PASS if ok else FAIL, expected=" or ".join(allowed), measured=modality or "absent",
                                message=f"{s.label}: modality {modality or 'absent'}"
                                        + ("" if ok else f", the charter asks for {' or '.join(allowed)}"),
                                series_id=s.series_id))
    return findings
