"""Coalescing instance_received into one task per series.

Intake sends one signal per stored instance: a 2,000-file study is 2,000 signals. The receiver sets
``deid:queued:<series_id>`` with NX and enqueues deid.series_deidentify only when it set the flag;
the task clears the flag before it queries, so nothing committed is ever missed. The flag expires on
its own (FLAG_SECONDS), so a lost message costs at most that long before the next arrival enqueues
again, and the sweeper catches a series that receives nothing more.
"""

import logging

import redis
from django.conf import settings

log = logging.getLogger(__name__)

FLAG_SECONDS = 120
COUNTDOWN_SECONDS = 1.5  # let a burst of arrivals land before the task queries
_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    return _client


def flag_key(series_id: int) -> str:
    return f"deid:queued:{series_id}"


def series_enqueue(*, series_id: int, force: bool = False) -> bool:
    """Enqueue the series' task unless one is already waiting; True when a message was sent."""
    from .tasks import series_deidentify_task

    if not force and not client().set(flag_key(series_id), 1, nx=True, ex=FLAG_SECONDS):
        return False
    series_deidentify_task.apply_async(kwargs={"series_id": series_id}, countdown=COUNTDOWN_SECONDS)
    return True


def series_flag_clear(*, series_id: int) -> None:
    try:
        client().delete(flag_key(series_id))
    except redis.RedisError:
        # the flag expires on its own; until then arrivals rely on this task and the sweeper
        log.warning("could not clear %s", flag_key(series_id), exc_info=True)


def on_instance_received(sender, instance_id: int, **kwargs) -> None:
    """intake.signals.instance_received: only enqueue. Never raises into intake's request; a broker
    outage is logged and the sweeper re-enqueues the series later."""
    from intake.models import Instance

    series_id = kwargs.get("series_id") or \
        Instance.objects.filter(pk=instance_id).values_list("series_id", flat=True).first()
    if series_id is None:
        return
    try:
        series_enqueue(series_id=series_id)
    except Exception:
        log.warning("could not enqueue de-identification of series %s; the sweeper will", series_id,
                    exc_info=True)
