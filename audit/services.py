"""Writing the audit trail. Every service that changes regulated data calls ``audit_record``."""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, models, transaction
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


@transaction.atomic
def export_record(*, actor, action: str, export_format: str, rows: int, chain_head_seq: int, chain_head_hash: str,
                  verification: dict, trial_id: int | None = None, site_id: int | None = None,
                  subject_id: int | None = None, subject_code: str = "", filters: dict | None = None) -> AuditEvent:
    """Record that an auditor took the trail away (``audit.timeline_exported``, ``audit.search_exported``).

    The event is written before the file is streamed, with the chain head and verification result the
    file itself carries; once it commits, a full chain verification is queued (``audit.chain_verify``).
    """
    event = audit_record(
        actor=actor, action=action, target=("audit.export", export_format, f"{action} as {export_format}"),
        trial_id=trial_id, site_id=site_id, subject_id=subject_id, subject_code=subject_code,
        details={"format": export_format, "rows": rows, "chain_head_seq": chain_head_seq,
                 "chain_head_hash": chain_head_hash, "verification": verification, "filters": filters or {}})
    transaction.on_commit(_queue_chain_verify, robust=True)  # a broker outage must not fail the export
    return event


VERIFY_QUEUE_WINDOW = 300  # seconds: a burst of exports queues one whole-chain verification, not one each


def _queue_chain_verify() -> None:
    from django.core.cache import cache

    from .tasks import chain_verify_task  # tasks imports services: imported at call time, no cycle

    if cache.add("audit.chain_verify.queued", 1, timeout=VERIFY_QUEUE_WINDOW):
        chain_verify_task.delay()


@transaction.atomic
def chain_verification_record(*, result) -> AuditEvent:
    """Record a whole-chain verification (a ``chain.Verification``): ``audit.chain_verified`` when intact,
    ``audit.chain_broken`` otherwise. The newest of these drives the tamper banner."""
    ok = bool(result.ok)
    details = {"ok": ok, "summary": result.summary(), "count": result.count, "head_seq": result.head_seq,
               "head_hash": result.head_hash, "unsealed": result.unsealed}
    if not ok:
        details.update({"broken_seq": result.broken_seq, "broken_id": result.broken_id, "problem": result.problem})
    return audit_record(actor=None, action="audit.chain_verified" if ok else "audit.chain_broken",
                        target=("audit.chain", result.head_seq, "audit hash chain"), details=details)
