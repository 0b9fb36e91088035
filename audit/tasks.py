import logging

from celery import shared_task

from .chain import chain_seal, verify_chain
from .services import chain_verification_record

log = logging.getLogger(__name__)


@shared_task(name="audit.chain_seal", acks_late=True, ignore_result=True)
def chain_seal_task() -> int:
    """Beat task: seal committed events into the chain. Idempotent; concurrent runs return at once."""
    return chain_seal()


@shared_task(name="audit.chain_verify", acks_late=True, ignore_result=True)
def chain_verify_task() -> str:
    """Nightly and after each export: verify the whole chain and record the result as an event.

    A broken chain is logged as an error for the operators' alerting and recorded as ``audit.chain_broken``,
    which puts the tamper banner in front of every trial manager and auditor. Safe to run twice.
    """
    chain_seal()  # what is committed gets sealed first, so the result speaks for every event so far
    result = verify_chain()
    (log.info if result.ok else log.error)("audit chain verification: %s", result.summary())
    chain_verification_record(result=result)
    return result.summary()

