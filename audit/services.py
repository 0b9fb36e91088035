"""Writing the audit trail. Every service that changes regulated data calls ``audit_record``."""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, models
from django.utils import timezone

from .context import request_ip
from .exceptions import AuditOutsideTransaction, ReasonRequired
from .models import AuditEvent


@dataclass(frozen=True)
class ActorContext:
    """What the layer above knows about an actor in a trial (audit imports no project app)."""

    role: str = ""
    subject_code: str = ""
    site_id: int | None = None


# Set by trials in AppConfig.ready(): (actor, trial_id, subject_id) -> ActorContext.
_context_resolver: Callable[..., ActorContext] | None = None


def register_context_resolver(resolver: Callable[..., ActorContext]) -> None:
    """Let the trials app fill in the actor's role and the subject's code."""
    global _context_resolver
    _context_resolver = resolver


def _target_fields(target) -> dict:
    if target is None:
        return {"target_type": "", "target_id": "", "target_label": ""}
    if isinstance(target, models.Model):
        meta = target._meta
        return {"target_type": f"{meta.app_label}.{meta.model_name}", "target_id": str(target.pk),
                "target_label": str(target)[:255]}
    # (type, id, label) for things that are not rows, e.g. an export file
    kind, ident, label = target
    return {"target_type": kind, "target_id": str(ident), "target_label": str(label)[:255]}


def audit_record(*, actor, action: str, target=None, trial_id: int | None = None,
                 subject_id: int | None = None, details: dict | None = None, reason: str | None = None,
                 site_id: int | None = None, subject_code: str = "") -> AuditEvent:
    """Append one event in the caller's transaction; refuses to run outside one.

    ``actor`` is a user or None (the system). ``target`` is a model instance, a
    ``(type, id, label)`` tuple, or None. The row is inserted unsealed; the sealer
    chains it once the caller's transaction has committed.
    """
    if not connection.in_atomic_block:
        raise AuditOutsideTransaction(f"audit_record({action!r}) must run inside transaction.atomic")
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None  # AnonymousUser: an anonymous act is recorded as unattributed
    known = ActorContext()
    if _context_resolver is not None and (trial_id is not None or subject_id is not None):
        known = _context_resolver(actor=actor, trial_id=trial_id, subject_id=subject_id)
    return AuditEvent.objects.create(
        occurred_at=timezone.now(),
        actor=actor,
        actor_label=actor.get_username() if actor is not None else "",
        actor_role=known.role,
        action=action,
        trial_id=trial_id,
        site_id=site_id if site_id is not None else known.site_id,
        subject_id=subject_id,
        subject_code=subject_code or known.subject_code,
        details=details or {},
        reason=reason or "",
        ip_address=request_ip.get(),
        **_target_fields(target),
    )


def audit_record_many(*, actor, action: str, entries: list[tuple[models.Model, dict]], trial_id: int | None = None,
                      subject_id: int | None = None, site_id: int | None = None, subject_code: str = ""
                      ) -> list[AuditEvent]:
    """Append one event per (target, details) entry, all for the same actor, action, trial and subject.

    The same rows ``audit_record`` would write, in one INSERT: for work done in batches (a series of
    instances filed at once), where one statement per event would cost more than the work it records.
    """
    if not connection.in_atomic_block:
        raise AuditOutsideTransaction(f"audit_record_many({action!r}) must run inside transaction.atomic")
    if not entries:
        return []
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    known = ActorContext()
    if _context_resolver is not None and (trial_id is not None or subject_id is not None):
        known = _context_resolver(actor=actor, trial_id=trial_id, subject_id=subject_id)
    now, ip_address = timezone.now(), request_ip.get()
    return AuditEvent.objects.bulk_create([
        AuditEvent(occurred_at=now, actor=actor, actor_label=actor.get_username() if actor is not None else "",
                   actor_role=known.role, action=action, trial_id=trial_id,
                   site_id=site_id if site_id is not None else known.site_id, subject_id=subject_id,
                   subject_code=subject_code or known.subject_code, details=details or {}, reason="",
                   ip_address=ip_address, **_target_fields(target))
        for target, details in entries])


def history_save(*, instance: models.Model, reason: str, update_fields: list[str] | None = None) -> None:
    """Save a correction to a regulated row; its history record carries the reason.

    Corrections made through services must say why (21 CFR Part 11 audit trail).
    """
    if not (reason or "").strip():
        raise ReasonRequired(f"a reason is required to change {instance._meta.label} {instance.pk}")
    instance._change_reason = reason.strip()
    instance.save(update_fields=update_fields)
