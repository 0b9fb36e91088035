"""Field-level history of regulated rows (django-simple-history), as the auditor reads it.

Every regulated model registers ``history = HistoricalRecords()``; each save() writes a historical row with
who (``history_user``), when, and why (``history_change_reason``: services set it through
``audit.services.history_save`` or ``_change_reason``, and ``audit_record`` fills it in from the event's
reason when the service did not). This module turns those rows into versions with field-by-field
before -> after changes.

Audit imports no project app: models are found through the app registry by label, and the trial a row
belongs to by following its foreign keys to ``trials.Trial``. Access is Perm.VIEW_AUDIT on that trial
(``selectors.may_view_history``, which asks ``trials.permissions``); missing and forbidden are the same 404. Secret fields (passwords, secrets,
tokens, key material) are never shown; nothing in these tables is plaintext PHI (identifiers are keyed
hashes).
"""

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import cache

from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.http import Http404
from django.urls import reverse

# the apps whose rows are regulated records; history of anything else (auth, sessions) is not shown here
HISTORY_APPS = ("trials", "intake", "deid", "qc", "reads")
# a field is secret when one of these is a word of its name, or when it is one of SECRET_NAMES
SECRET_WORDS = frozenset({"password", "secret", "token", "salt", "otp", "totp", "passphrase"})
# key material and what names it; object keys in storage (raw_key, deid_key) are file names, not secrets
SECRET_NAMES = frozenset({"key", "key_id", "api_key", "private_key", "signing_key", "hmac_key", "secret_key"})
MAX_VERSIONS = 500
VALUE_CHARS = 2000

_hidden: dict[str, set[str]] = {}


def register_hidden_fields(label: str, *names: str) -> None:
    """Hide more fields of one model ("app_label.model") from its history page, beyond the secret rule."""
    _hidden.setdefault(label.lower(), set()).update(names)


def is_secret_field(name: str) -> bool:
    name = name.lower()
    return name in SECRET_NAMES or any(word in SECRET_WORDS for word in name.split("_"))


def history_model_get(*, app_label: str, model_name: str) -> type[models.Model] | None:
    """The regulated model with field history of that label, or None."""
    if app_label not in HISTORY_APPS:
        return None
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError:
        return None
    return model if getattr(model._meta, "simple_history_manager_attribute", None) else None


@cache
def has_history(target_type: str) -> bool:
    """Whether an audit event's target type ("intake.imagingstudy") names a model with field history."""
    app_label, _, model_name = target_type.partition(".")
    return bool(model_name) and history_model_get(app_label=app_label, model_name=model_name) is not None


def history_url(*, target_type: str, target_id: str) -> str:
    """The history page of an audit event's target, or "" when it has none."""
    if not target_id or not has_history(target_type):
        return ""
    app_label, _, model_name = target_type.partition(".")
    return reverse("audit-history", kwargs={"app_label": app_label, "model_name": model_name, "pk": target_id})


def trial_id_of(obj: models.Model, *, depth: int = 0) -> int | None:
    """The trial a row belongs to, following its foreign keys (a visit: subject -> trial)."""
    trial_model = apps.get_model("trials", "Trial")
    if isinstance(obj, trial_model):
        return obj.pk
    relations = [f for f in obj._meta.concrete_fields if f.many_to_one or f.one_to_one]
    for relation in relations:
        if relation.related_model is trial_model:
            return getattr(obj, relation.attname)
    if depth >= 3:
        return None
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    for relation in relations:
        if relation.related_model is user_model or getattr(obj, relation.attname) is None:
            continue
        try:
            parent = getattr(obj, relation.name)
        except ObjectDoesNotExist:
            continue
        found = trial_id_of(parent, depth=depth + 1)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class FieldChange:
    name: str
    label: str
    before: str
    after: str


@dataclass
class HistoryVersion:
    history_id: int
    when: dt.datetime
    who: str
    kind: str  # created, changed, deleted
    reason: str
    changes: list[FieldChange] = field(default_factory=list)


@dataclass
class ObjectHistory:
    label: str  # "intake.imagingstudy"
    verbose_name: str
    pk: str
    title: str
    trial_id: int
    versions: list[HistoryVersion]
    hidden: list[str]
    truncated: bool
    exists: bool


def _show(model_field: models.Field, value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, dt.datetime):
        text = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    else:
        text = str(value)
    choices = dict(model_field.flatchoices) if model_field.choices and not isinstance(value, dict | list) else {}
    if choices and value in choices and str(choices[value]) != text:
        text = f"{text} ({choices[value]})"
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def _fields(history_model, *, label: str) -> tuple[list[models.Field], list[str]]:
    """The fields a version shows, and the names of those hidden as secret."""
    shown, hidden = [], []
    for tracked in history_model.tracked_fields:
        if tracked.primary_key:
            continue
        if is_secret_field(tracked.name) or tracked.name in _hidden.get(label, ()):
            hidden.append(tracked.name)
        else:
            shown.append(tracked)
    return shown, hidden


def _value(record, model_field: models.Field):
    return getattr(record, model_field.attname, None)


def object_history_get_for_user(*, user, app_label: str, model_name: str, pk: str) -> ObjectHistory:
    """Every historical version of one regulated row, oldest first, with what each changed and why.

    404 when the model has no history, the row never existed, or the user may not read its trial's audit trail.
    """
    model = history_model_get(app_label=app_label, model_name=model_name)
    if model is None:
        raise Http404("No history for this kind of record")
    label = f"{model._meta.app_label}.{model._meta.model_name}"
    try:
        pk_value = model._meta.pk.to_python(pk)
    except Exception as exc:  # a malformed id is a missing record, said the same way
        raise Http404("No such record") from exc
    manager = getattr(model, model._meta.simple_history_manager_attribute)
    records = manager.filter(**{model._meta.pk.attname: pk_value})
    live = model._default_manager.filter(pk=pk_value).first()
    latest = live
    if latest is None:
        newest = records.order_by("-history_date", "-history_id").first()
        if newest is None:
            raise Http404("No such record")
        latest = newest.instance
    try:
        trial_id = trial_id_of(latest)
    except (FieldDoesNotExist, ObjectDoesNotExist):
        trial_id = None
    from .selectors import may_view_history  # selectors imports this module: asked at call time

    if trial_id is None or not may_view_history(user=user, trial_id=trial_id, label=label):
        raise Http404("No such record")

    shown, hidden = _fields(manager.model, label=label)
    # the newest MAX_VERSIONS (+1 to diff the oldest shown against), then oldest first
    rows = list(records.select_related("history_user").order_by("-history_date", "-history_id")[:MAX_VERSIONS + 1])
    truncated = len(rows) > MAX_VERSIONS
    rows.reverse()
    versions, previous = [], None
    for record in rows:
        kind = {"+": "created", "-": "deleted"}.get(record.history_type, "changed")
        version = HistoryVersion(history_id=record.history_id, when=record.history_date,
                                 who=record.history_user.get_username() if record.history_user else "system",
                                 kind=kind, reason=record.history_change_reason or "")
        if previous is None:
            # no earlier version to diff against (a creation, or a row filed in bulk): its values as recorded
            version.changes = [FieldChange(name=f.name, label=str(f.verbose_name), before="",
                                           after=_show(f, _value(record, f))) for f in shown]
        elif kind != "deleted":
            # as simple-history's diff_against, over every tracked field (it skips the non-editable ones,
            # such as a status timestamp a service sets)
            version.changes = [FieldChange(name=f.name, label=str(f.verbose_name), before=_show(f, _value(previous, f)),
                                           after=_show(f, _value(record, f)))
                               for f in shown if _value(previous, f) != _value(record, f)]
        versions.append(version)
        previous = record
    if truncated:
        versions = versions[1:]
    try:
        title = str(latest)[:255]
    except ObjectDoesNotExist:  # a deleted row whose label names another deleted row
        title = f"{model._meta.verbose_name} {pk_value}"
    return ObjectHistory(label=label, verbose_name=str(model._meta.verbose_name), pk=str(pk_value),
                         title=title, trial_id=trial_id, versions=versions, hidden=hidden,
                         truncated=truncated, exists=live is not None)
