"""Writing the audit trail. Every service that changes regulated data calls ``audit_record``."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from django.db import connection, models, transaction
from django.utils import timezone

from .context import request_ip
from .exceptions import AuditOutsideTransaction, ReasonRequired
from .models import AuditEvent, PdfExport


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
    if isinstance(target, models.Model):
        _history_complete(target, actor=actor, reason=reason)
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


def _history_complete(target: models.Model, *, actor, reason: str | None) -> None:
    """Give the history row the target's save just wrote the event's reason and actor, where it has none.

    A service that records ``reason=`` on the event but set no ``_change_reason`` on the row (or saved from a
    task, with no request for simple-history's middleware to take the user from) still gets a history row
    that says who and why. ``audit.signals`` notes the row on the instance when simple-history creates it.
    """
    if actor is not None and "_history_user" not in target.__dict__:
        # a save (or delete) of the target after the event, in this service, is the same actor's
        target._history_user = actor
    noted = target.__dict__.pop("_audit_history_record", None)
    # only a row written in the same transaction block as this event: a row saved in an earlier
    # transaction (a factory, another request that reused the instance) is not this event's change
    if noted is None or noted[1] is None or innermost_atomic_block() is not noted[1]:
        return
    record = noted[0]
    changes = {}
    if (reason or "").strip() and not record.history_change_reason:
        changes["history_change_reason"] = reason.strip()
    if actor is not None and hasattr(record, "history_user_id") and record.history_user_id is None:
        changes["history_user_id"] = actor.pk
    if changes:
        type(record)._default_manager.filter(pk=record.pk).update(**changes)


def innermost_atomic_block():
    """The transaction block a statement runs in now (None in autocommit)."""
    return connection.atomic_blocks[-1] if connection.atomic_blocks else None


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


# -- patient-timeline PDFs made in the background (audit.exports.pdf_export_build does the work) -----------

@transaction.atomic
def pdf_export_request(*, actor, trial_id: int, subject_id: int, subject_code: str, site_id: int | None = None,
                       family: str = "") -> PdfExport:
    """Queue a timeline PDF of the subject's events as of now; the task records the export's audit event
    when it reads them (as the other exports do before their first byte). Who may ask is the view's check."""
    now = timezone.now()
    export = PdfExport.objects.create(requested_by=actor, requested_at=now, as_of=now, trial_id=trial_id,
                                      site_id=site_id, subject_id=subject_id, subject_code=subject_code,
                                      family=family)
    # robust: a broker outage leaves the export queued, and the sweeper enqueues it again
    transaction.on_commit(partial(_queue_pdf_export, export.pk), robust=True)
    return export


def _queue_pdf_export(export_id: int) -> None:
    from celery import current_app

    # by name: the task's module (audit.export_tasks) reaches trials.permissions, which services must not
    current_app.send_task("audit.pdf_export", args=[export_id])


@transaction.atomic
def pdf_export_start(*, export_id: int) -> PdfExport | None:
    """Mark the export running; None when it does not exist or is already done (a redelivered task)."""
    export = PdfExport.objects.select_for_update().filter(pk=export_id).first()
    if export is None or not export.pending:
        return None
    export.status, export.started_at = PdfExport.Status.RUNNING, timezone.now()
    export.save(update_fields=["status", "started_at"])
    return export


@transaction.atomic
def pdf_export_event_record(*, export: PdfExport, rows: int, chain_head_seq: int, chain_head_hash: str,
                            verification: dict, scope: dict) -> AuditEvent:
    """Record the export (``audit.timeline_exported``, format pdf) once; a second run gets the first's event."""
    export = PdfExport.objects.select_for_update().get(pk=export.pk)
    if export.audit_event_id is not None:
        return AuditEvent.objects.get(pk=export.audit_event_id)
    event = export_record(actor=export.requested_by, action="audit.timeline_exported", export_format="pdf",
                          rows=rows, chain_head_seq=chain_head_seq, chain_head_hash=chain_head_hash,
                          verification=verification, trial_id=export.trial_id, site_id=export.site_id,
                          subject_id=export.subject_id, subject_code=export.subject_code, filters=scope)
    export.audit_event, export.rows = event, rows
    export.save(update_fields=["audit_event", "rows"])
    return event


@transaction.atomic
def pdf_export_finish(*, export_id: int, storage_key: str, size: int, sha256: str, pages: int) -> PdfExport:
    """The file is stored: the requester's page shows the download link."""
    export = PdfExport.objects.select_for_update().get(pk=export_id)
    export.status, export.finished_at = PdfExport.Status.READY, timezone.now()
    export.storage_key, export.size, export.sha256, export.pages = storage_key, size, sha256, pages
    export.save(update_fields=["status", "finished_at", "storage_key", "size", "sha256", "pages"])
    return export


@transaction.atomic
def pdf_export_fail(*, export_id: int, error: str) -> PdfExport:
    """A permanent failure (too many events, access withdrawn, a PDF engine error): shown to the requester."""
    export = PdfExport.objects.select_for_update().get(pk=export_id)
    export.status, export.finished_at, export.error = PdfExport.Status.FAILED, timezone.now(), error[:2000]
    export.save(update_fields=["status", "finished_at", "error"])
    return export


@transaction.atomic
def pdf_export_download_record(*, actor, export: PdfExport) -> AuditEvent:
    """Each download of a stored export is recorded too: who took the file away, and which file (sha256)."""
    return audit_record(actor=actor, action="audit.export_downloaded",
                        target=("audit.pdfexport", export.pk, f"timeline PDF of {export.subject_code}"),
                        trial_id=export.trial_id, site_id=export.site_id, subject_id=export.subject_id,
                        subject_code=export.subject_code,
                        details={"format": "pdf", "sha256": export.sha256, "size": export.size,
                                 "export_event_id": export.audit_event_id})
