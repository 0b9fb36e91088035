"""Automated QC checks, registered by name: adding one is a module in this package and a test.

A check is a function ``check(ctx: StudyContext) -> list[Finding]`` decorated with ``@register("rule")``.
It reads only the context (charter procedure and visit, the study's series with the headers of their
de-identified instances) and never touches the ORM, so it can be tested on files alone. A rule the charter
does not set returns no finding: the record lists what was verified, nothing else.
"""

import importlib
import pkgutil
from collections.abc import Callable

from .context import Finding, InstanceData, SeriesData, StudyContext

__all__ = ["CHECKS", "Finding", "InstanceData", "SeriesData", "StudyContext", "register", "run_checks"]

Check = Callable[[StudyContext], list[Finding]]
CHECKS: dict[str, Check] = {}


def register(rule: str) -> Callable[[Check], Check]:
    """Register ``check`` under ``rule``; the rule name is what results record."""
    def decorate(check: Check) -> Check:
        if rule in CHECKS and CHECKS[rule] is not check:
            raise ValueError(f"a QC check named {rule!r} is registered already")
        CHECKS[rule] = check
        return check
    return decorate


def run_checks(ctx: StudyContext) -> list[Finding]:
    """Every registered check, in rule order; a check that crashes is a failed finding, not a lost run."""
    findings = []
    for rule in sorted(CHECKS):
        try:
            found = CHECKS[rule](ctx)
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others' results
            found = [Finding(rule, "fail", expected="the check runs", measured=type(exc).__name__,
                             message=f"the check itself failed: {exc}"[:500])]
        for finding in found:
            finding.rule = rule
        findings.extend(found)
    return findings


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "context" and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_discover()
