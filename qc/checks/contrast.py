from . import register
from .context import FAIL, PASS, Finding, StudyContext


def _given(header) -> bool:
    agent = str(header.get("ContrastBolusAgent") or "").strip()
    return bool(agent) or bool(header.get("ContrastBolusAgentSequence"))


@register("contrast")
def check(ctx: StudyContext) -> list[Finding]:
    """When the charter requires contrast, some image carries Contrast/Bolus Agent (0018,0010).

    The Basic Profile replaces the agent's name with a dummy value: what survives de-identification is
    that an agent was recorded, which is what this check asks.
    """
    if ctx.procedure is None or not ctx.procedure.contrast_required:
        return []
    with_agent = [s.label for s in ctx.image_series if any(_given(h) for h in s.headers)]
    if with_agent:
        return [Finding("", PASS, expected="Contrast/Bolus Agent recorded", measured="present",
                        message=f"contrast recorded in {', '.join(with_agent)}")]
    return [Finding("", FAIL, expected="Contrast/Bolus Agent recorded", measured="absent",
                    message="no image records a contrast agent, but the charter requires contrast")]
