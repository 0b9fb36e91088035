from . import register
from .context import FAIL, PASS, Finding, StudyContext


def _images(series) -> int:
    # a multi-frame instance counts its frames
    return sum(int(h.get("NumberOfFrames") or 1) for h in series.headers) if series.headers else len(series.instances)


@register("slice_count")
def check(ctx: StudyContext) -> list[Finding]:
    """At least one image series holds ``min_slices`` images (the charter's qualifying series)."""
    if ctx.procedure is None or not ctx.procedure.min_slices:
        return []
    counts = {s.label: _images(s) for s in ctx.image_series}
    best = max(counts.values(), default=0)
    ok = best >= ctx.procedure.min_slices
    measured = ", ".join(f"{label}: {count}" for label, count in counts.items()) or "no image series"
    return [Finding("", PASS if ok else FAIL, expected=f"≥ {ctx.procedure.min_slices} images in a series",
                    measured=f"{best} (largest)",
                    message=f"images per series: {measured}" if ok
                    else f"no series has {ctx.procedure.min_slices} images ({measured})")]
