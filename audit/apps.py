from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from config import sweeper

        from . import signals  # noqa: F401  login/logout/failed-login events

        sweeper.register(name="audit.unsealed", find=_unsealed_since, requeue=_requeue_seal)


def _unsealed_since(cutoff):
    """Events still unsealed long after they were written: the seal task was lost or beat was down."""
    from .models import AuditEvent

    return AuditEvent.objects.filter(seq__isnull=True, occurred_at__lt=cutoff).values_list("id", flat=True)[:1]


def _requeue_seal(event_id: int) -> None:
    from .tasks import chain_seal_task

    chain_seal_task.delay()  # one seal run covers every pending event
