import io

import pydicom

from . import register
from .context import FAIL, PASS, Finding, StudyContext


@register("integrity")
def check(ctx: StudyContext) -> list[Finding]:
    """Every de-identified file reads and its pixel data decodes (the one check that decodes pixels)."""
    findings = []
    for s in ctx.series:
        broken = []
        for instance in s.instances:
            if instance.header is None:
                broken.append(f"instance {instance.instance_id}: {instance.read_error or 'unreadable'}")
                continue
            if instance.load is None:
                continue
            try:
                ds = pydicom.dcmread(io.BytesIO(instance.load()))
                if "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
                    ds.pixel_array  # noqa: B018 - decoding is the check
            except Exception as exc:  # noqa: BLE001 - any failure to decode is the finding
                broken.append(f"instance {instance.instance_id}: {type(exc).__name__}: {exc}"[:200])
        total = len(s.instances)
        findings.append(Finding("", FAIL if broken else PASS, expected="every file decodes",
                                measured=f"{total - len(broken)} of {total} decode",
                                message=f"{s.label}: " + ("; ".join(broken[:3]) if broken else "all files decode"),
                                series_id=s.series_id))
    return findings
