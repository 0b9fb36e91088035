from celery import shared_task

from .services import qc_run, queries_mark_overdue, queries_raise_missing, query_raise_for_held


@shared_task(name="qc.qc_run", acks_late=True, reject_on_worker_lost=True, autoretry_for=(OSError,),
             retry_backoff=True, max_retries=5, soft_time_limit=600, time_limit=660, ignore_result=True)
def qc_run_task(study_id: int, trigger: str) -> int | None:
    """Run the automated checks on a study. Redelivery is expected after a worker dies: qc_run is idempotent."""
    run = qc_run(study_id=study_id, trigger=trigger)
    return run.pk if run else None


@shared_task(name="qc.queries_mark_overdue", acks_late=True, reject_on_worker_lost=True, soft_time_limit=300,
             time_limit=360, ignore_result=True)
def queries_mark_overdue_task() -> int:
    """Beat: mark overdue queries and escalate each once. Idempotent (an escalated query is not mailed again)."""
    return len(queries_mark_overdue())


@shared_task(name="qc.queries_raise_missing", acks_late=True, reject_on_worker_lost=True, soft_time_limit=600,
             time_limit=660, ignore_result=True)
def queries_raise_missing_task() -> int:
    """Beat: raise missing-timepoint queries when QC_AUTO_MISSING_QUERIES is on. Idempotent (once per visit and
    procedure)."""
    return len(queries_raise_missing())


@shared_task(name="qc.query_raise_for_held", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def query_raise_for_held_task(record_id: int) -> int | None:
    """A file held by de-identification: ask its site (once per study while the query is open)."""
    query = query_raise_for_held(record_id=record_id)
    return query.pk if query else None
