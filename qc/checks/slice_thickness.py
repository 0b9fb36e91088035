from . import register
from ._common import range_findings
from .context import Finding, StudyContext


@register("slice_thickness")
def check(ctx: StudyContext) -> list[Finding]:
    """Slice Thickness (0018,0050) of every image series within the charter's range."""
    if ctx.procedure is None:
        return []
    return range_findings(series=ctx.image_series, allowed=ctx.procedure.slice_thickness_mm,
                          keyword="SliceThickness", what="slice thickness")
