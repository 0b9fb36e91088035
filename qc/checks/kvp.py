from trials.charter import KVP_MODALITIES

from . import register
from ._common import range_findings
from .context import Finding, StudyContext


@register("kvp")
def check(ctx: StudyContext) -> list[Finding]:
    """KVP (0018,0060) of every X-ray image series within the charter's range."""
    if ctx.procedure is None:
        return []
    series = [s for s in ctx.image_series if s.modality.upper() in KVP_MODALITIES]
    return range_findings(series=series, allowed=ctx.procedure.kvp, keyword="KVP", what="tube voltage")
