from . import register
from ._geometry import positions
from .context import FAIL, PASS, Finding, StudyContext

TOLERANCE = 0.01  # mm


@register("duplicate_slices")
def check(ctx: StudyContext) -> list[Finding]:
    """No two images of a stack at the same position along the slice normal.

    Series that repeat positions by design (multi-echo, dynamic, diffusion: several Echo Numbers,
    Temporal Position Identifiers or b-values) are compared within each repetition.
    """
    findings = []
    for s in ctx.image_series:
        groups: dict[tuple, list] = {}
        for instance in s.instances:
            h = instance.header
            if h is None:
                continue
            key = (str(h.get("EchoNumbers", "")), str(h.get("TemporalPositionIdentifier", "")),
                   str(h.get("DiffusionBValue", "")), str(h.get("AcquisitionNumber", "")))
            groups.setdefault(key, []).append(instance)
        duplicated = 0
        spots = []
        for members in groups.values():
            view = type(s)(s.series_id, s.series_number, s.modality, members)
            where, why = positions(view)
            if why:
                break
            for a, b in zip(where, where[1:], strict=False):
                if b - a <= TOLERANCE:
                    duplicated += 1
                    spots.append(f"{b:g} mm")
        else:
            if not any(g for g in groups.values()):
                continue
            findings.append(Finding(
                "", FAIL if duplicated else PASS, expected="one image per position",
                measured=f"{duplicated} duplicated" if duplicated else "none duplicated",
                message=f"{s.label}: " + (f"duplicated at {', '.join(spots[:5])}" if duplicated else "no duplicates"),
                series_id=s.series_id))
    return findings
