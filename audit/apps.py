from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from config import sweeper

        from . import export_tasks, signals  # noqa: F401  the PDF task; login/logout/failed-login events

        sweeper.register(name="audit.unsealed", find=_unsealed_since, requeue=_requeue_seal)
        sweeper.register(name="audit.pdf_exports", find=_pdf_exports_stuck, requeue=_requeue_pdf_export)


def _unsealed_since(cutoff):
    """Events still unsealed long after they were written: the seal task was lost or beat was down."""
    from .models import AuditEvent

    return AuditEvent.objects.filter(seq__isnull=True, occurred_at__lt=cutoff).values_list("id", flat=True)[:1]


def _requeue_seal(event_id: int) -> None:
    from .tasks import chain_seal_task

    chain_seal_task.delay()  # one seal run covers every pending event


def _pdf_exports_stuck(cutoff):
    """PDF exports still queued past the cutoff (the message was lost), or running past the task's hard time
    limit (the worker died and the message did not come back)."""
    import datetime as dt

    from django.db.models import Q

    from .export_tasks import PDF_SOFT_LIMIT
    from .models import PdfExport

    dead = cutoff - dt.timedelta(seconds=PDF_SOFT_LIMIT + 60)
    return PdfExport.objects.filter(Q(status=PdfExport.Status.QUEUED, requested_at__lt=cutoff)
                                    | Q(status=PdfExport.Status.RUNNING, started_at__lt=dead)
                                    ).values_list("id", flat=True)[:100]


def _requeue_pdf_export(export_id: int) -> None:
    from .export_tasks import pdf_export_task

    pdf_export_task.delay(export_id)
