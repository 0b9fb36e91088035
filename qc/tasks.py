from celery import shared_task

from .services import qc_run


@shared_task(name="qc.qc_run", acks_late=True, reject_on_worker_lost=True, autoretry_for=(OSError,),
             retry_backoff=True, max_retries=5, soft_time_limit=600, time_limit=660, ignore_result=True)
def qc_run_task(study_id: int, trigger: str) -> int | None:
    """Run the automated checks on a study. Redelivery is expected after a worker dies: qc_run is idempotent."""
    run = qc_run(study_id=study_id, trigger=trigger)
    return run.pk if run else None
