import logging

from celery import shared_task

from .chain import chain_seal, verify_chain

log = logging.getLogger(__name__)


@shared_task(name="audit.chain_seal", acks_late=True, ignore_result=True)
def chain_seal_task() -> int:
    """Beat task: seal committed events into the chain. Idempotent; concurrent runs return at once."""
    return chain_seal()


@shared_task(name="audit.chain_verify", acks_late=True, ignore_result=True)
def chain_verify_task() -> str:
    """Nightly: verify the whole chain; a broken link is logged as an error for the operators' alerting."""
    result = verify_chain()
    (log.info if result.ok else log.error)("audit chain verification: %s", result.summary())
    return result.summary()
