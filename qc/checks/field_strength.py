from . import register
from ._common import range_findings
from .context import Finding, StudyContext


@register("field_strength")
def check(ctx: StudyContext) -> list[Finding]:
    """Magnetic Field Strength (0018,0087) of every MR image series within the charter's range."""
    if ctx.procedure is None:
        return []
    series = [s for s in ctx.image_series if s.modality.upper() == "MR"]
    return range_findings(series=series, allowed=ctx.procedure.field_strength_t, keyword="MagneticFieldStrength",
                          what="field strength")
