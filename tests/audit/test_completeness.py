"""Every service function that writes records an audit event: checked over the source of every app's services.

A function *writes* when it (or a function of the same module it calls) saves, creates, updates or
deletes rows; it *audits* when it (or a function it calls, in its module or another app's services)
calls ``audit_record`` or ``audit_record_many``. Every public service function that writes must audit.
The few writes that are not regulated events of their own are listed in ``NOT_AUDITED``, each with why.
"""

import ast
import importlib
import inspect
import textwrap
from dataclasses import dataclass, field

import pytest

APPS = ["trials", "intake", "deid", "qc", "reads"]  # audit's own services write only audit rows
WRITES = {"save", "create", "bulk_create", "update", "bulk_update", "delete", "get_or_create", "update_or_create"}
AUDITS = {"audit_record", "audit_record_many"}
# storage and cache objects have save/delete too: calls on these receivers are not row writes
NOT_ROWS = {"storages", "storage", "cache", "client"}

NOT_AUDITED = {
    # counts and per-file results on the submission; opening and closing it are audited, with the counts
    "intake.services.file_refuse": "a refused file leaves nothing stored; the submission's close event counts it",
}


@dataclass
class _Function:
    public: bool = True
    writes: bool = False
    audits: bool = False
    calls: set[str] = field(default_factory=set)


def _receiver_name(node: ast.AST) -> str:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else ""


def scan(source: str) -> dict[str, _Function]:
    """What each top-level function of a module's source writes, audits and calls."""
    functions = {}
    tree = ast.parse(source).body
    # methods of the module's classes (filing helpers) count as functions of the module, by name
    methods = [item for node in tree if isinstance(node, ast.ClassDef) for item in node.body]
    for node in tree + methods:
        if not isinstance(node, ast.FunctionDef):
            continue
        # a method is a helper, reached through the functions that call it
        info = functions[node.name] = _Function(public=node not in methods and not node.name.startswith("_"))
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            if isinstance(call.func, ast.Name):
                info.calls.add(call.func.id)
                info.audits |= call.func.id in AUDITS
            elif isinstance(call.func, ast.Attribute):
                name = call.func.attr
                info.calls.add(name)
                info.audits |= name in AUDITS
                if name in WRITES and _receiver_name(call.func.value) not in NOT_ROWS:
                    info.writes = True
    return functions


def unaudited_writers(functions: dict[str, _Function], *, audited_elsewhere: set[str] = frozenset()) -> list[str]:
    """Public functions that write (themselves or through a helper) and never reach an audit call."""
    def reaches(name: str, attribute: str, seen: set[str]) -> bool:
        if name in seen:
            return False
        seen.add(name)
        info = functions.get(name)
        if info is None:
            return attribute == "audits" and name in audited_elsewhere
        return getattr(info, attribute) or any(reaches(callee, attribute, seen) for callee in info.calls)

    return sorted(name for name, info in functions.items() if info.public
                  and reaches(name, "writes", set()) and not reaches(name, "audits", set()))


def _modules() -> list:
    found = []
    for app in APPS:
        try:
            found.append(importlib.import_module(f"{app}.services"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{app}.services" and exc.name != app:
                raise
    return found


def _audited_service_functions(modules) -> set[str]:
    """Names of service functions (any app) that audit, so a call into another app's service counts."""
    return {name for module in modules for name, info in scan(inspect.getsource(module)).items() if info.audits}


def test_every_service_function_that_writes_records_an_audit_event():
    modules = _modules()
    assert {module.__name__ for module in modules} >= {"trials.services", "intake.services"}
    elsewhere = _audited_service_functions(modules)
    missing = []
    for module in modules:
        for name in unaudited_writers(scan(inspect.getsource(module)), audited_elsewhere=elsewhere):
            if f"{module.__name__}.{name}" not in NOT_AUDITED:
                missing.append(f"{module.__name__}.{name}")
    assert missing == [], f"service functions that write but record no audit event: {missing}"


def test_the_allowlist_names_functions_that_exist():
    for dotted in NOT_AUDITED:
        module, name = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), dotted


@pytest.mark.parametrize(("source", "expected"), [
    # a write with no event is caught, directly or through a private helper
    ("def thing_close(*, thing):\n    thing.save()\n", ["thing_close"]),
    ("def thing_close(*, thing):\n    _store(thing)\n\ndef _store(thing):\n    Thing.objects.create()\n",
     ["thing_close"]),
    # an event anywhere on the way satisfies it
    ("def thing_close(*, thing):\n    thing.save()\n    _note(thing)\n\ndef _note(thing):\n    audit_record()\n", []),
    ("def thing_close(*, thing):\n    Thing.objects.filter().update(a=1)\n    audit_record_many()\n", []),
    # storage writes are not row writes; reads are not writes
    ("def thing_keep(*, f):\n    storages['archive'].save('k', f)\n", []),
    ("def thing_list():\n    return Thing.objects.filter()\n", []),
])
def test_the_check_itself_catches_an_unaudited_write(source, expected):
    assert unaudited_writers(scan(textwrap.dedent(source))) == expected
