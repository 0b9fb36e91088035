from . import register
from .context import FAIL, PASS, Finding, StudyContext


@register("deid_held")
def check(ctx: StudyContext) -> list[Finding]:
    """Nothing de-identification held for review (verification failed, burned-in text, refused file) and
    every instance has its de-identified copy in the archive."""
    problems = []
    for held in ctx.deid_held:
        why = (held.get("findings") or "").splitlines()[:2]
        problems.append(f"instance {held['instance_id']} {held['outcome']}" + (f" ({'; '.join(why)})" if why else ""))
    if ctx.not_archived:
        problems.append(f"{ctx.not_archived} instance(s) without a de-identified copy in the archive")
    if problems:
        return [Finding("", FAIL, expected="every instance released", measured=f"{len(ctx.deid_held)} held",
                        message="; ".join(problems)[:1000])]
    return [Finding("", PASS, expected="every instance released", measured="0 held",
                    message="every instance de-identified, verified and archived")]
