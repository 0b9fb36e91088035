from pydicom.multival import MultiValue

from . import register
from ._common import range_findings
from .context import Finding, StudyContext


def _both_values(series) -> list:
    # Pixel Spacing is row spacing \ column spacing: both must be in range
    return [v for spacing in series.values("PixelSpacing")
            for v in (spacing if isinstance(spacing, list | tuple | MultiValue) else [spacing])]


@register("pixel_spacing")
def check(ctx: StudyContext) -> list[Finding]:
    """Both values of Pixel Spacing (0028,0030) of every image series within the charter's range."""
    if ctx.procedure is None:
        return []
    return range_findings(series=ctx.image_series, allowed=ctx.procedure.pixel_spacing_mm,
                          keyword="PixelSpacing", what="pixel spacing", values_of=_both_values)
