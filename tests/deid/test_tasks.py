"""Background de-identification: coalescing receiver, task, sweeper, and a real worker (killed, too)."""

import datetime
import os
import time

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEvent
from config import sweeper
from deid import queue
from deid.models import DeidRecord
from deid.tasks import series_deidentify_task
from intake import signals
from intake.models import ImagingStudy, Instance, Submission
from intake.services import instance_receive, submission_open

from .conftest import objects, phi_study, upload

S, IS = ImagingStudy.Status, Instance.Status
# de-identified, or already moved on by QC, which a real worker starts as soon as it is
DONE = {S.DEIDENTIFIED, S.QC_PENDING}


@pytest.fixture
def published():
    """Series ids of every deid.series_deidentify message this process publishes; the queue is emptied after."""
    sent = []

    def collect(sender=None, body=None, headers=None, **kwargs):
        if sender == "deid.series_deidentify":
            sent.append(body[1]["series_id"])

    before_task_publish.connect(collect, weak=False, dispatch_uid="deid-test-published")
    yield sent
    before_task_publish.disconnect(dispatch_uid="deid-test-published")
    queue.client().delete(settings.CELERY_TASK_DEFAULT_QUEUE)


def _clear_flags():
    for key in queue.client().scan_iter("deid:queued:*"):
        queue.client().delete(key)


@pytest.mark.django_db
def test_two_thousand_arrivals_of_a_series_enqueue_one_task(
        tmp_path, stores, site1, coordinator_site1, ready_site, published, django_capture_on_commit_callbacks):
    _clear_flags()
    paths = phi_study(tmp_path / "in", count=40)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site, paths=paths)
    series = study.series.get()
    ids = list(series.instances.values_list("pk", flat=True))
    for n in range(2000 - len(ids)):  # the rest of a 2,000-file series: intake's signal, as intake sends it
        signals.instance_received.send(sender=Instance, instance_id=ids[n % len(ids)])

    assert len(callbacks) >= 40  # intake's own on-commit signals went through the receiver too
    assert published == [series.pk]
    assert queue.client().llen(settings.CELERY_TASK_DEFAULT_QUEUE) == 1  # one message in the broker
    assert 0 < queue.client().ttl(queue.flag_key(series.pk)) <= queue.FLAG_SECONDS


@pytest.mark.django_db
def test_the_task_clears_the_flag_first_so_a_later_arrival_enqueues_again(
        tmp_path, stores, site1, coordinator_site1, ready_site, published):
    _clear_flags()
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site,
                   paths=phi_study(tmp_path / "in", count=2))
    series = study.series.get()
    first = series.instances.first()
    signals.instance_received.send(sender=Instance, instance_id=first.pk)
    signals.instance_received.send(sender=Instance, instance_id=first.pk)
    assert published == [series.pk]

    assert series_deidentify_task(series_id=series.pk) == {"released": 2, "held": 0, "error": 0, "skipped": 0}

    assert not queue.client().exists(queue.flag_key(series.pk))
    signals.instance_received.send(sender=Instance, instance_id=first.pk)
    assert published == [series.pk, series.pk]
    assert series_deidentify_task(series_id=series.pk)["released"] == 0  # redelivery: nothing twice
    assert DeidRecord.objects.count() == 2


@pytest.mark.django_db
def test_the_receiver_never_breaks_intake_when_the_broker_is_down(
        tmp_path, stores, site1, coordinator_site1, ready_site, published):
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site,
                   paths=phi_study(tmp_path / "in", count=1))
    queue._client = redis.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        signals.instance_received.send(sender=Instance, instance_id=study.instances.get().pk)
    finally:
        queue._client = None
    assert published == []  # nothing sent, nothing raised: the sweeper will find the series


@pytest.mark.django_db
def test_the_sweeper_requeues_series_stuck_received_or_deidentifying(
        tmp_path, stores, site1, coordinator_site1, ready_site, published):
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site,
                   paths=phi_study(tmp_path / "in", count=2))
    submission = submission_open(actor=None, site=site1, channel=Submission.Channel.DICOM, calling_ae="PACS")
    for path in phi_study(tmp_path / "unknown", count=1, patient_id="MRN-0000"):
        instance_receive(submission=submission, path=path, name=path.name)  # unassigned: must not be swept
    assert "deid.series" in sweeper.registered()

    assert sweeper.sweep()["deid.series"] == 0  # not stuck yet
    later = timezone.now() + settings.STUCK_WORK_AFTER + datetime.timedelta(seconds=1)
    assert sweeper.sweep(now=later)["deid.series"] == 1

    assert published == [study.series.get().pk]


# -- a real worker ------------------------------------------------------------------------------------------

def _wait(predicate, *, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _exactly_once(study, stores, count):
    instances = list(study.instances.all())
    assert len(instances) == count and {i.status for i in instances} == {IS.DEIDENTIFIED}
    assert DeidRecord.objects.filter(instance__study=study).count() == count
    assert len(objects(stores["archive"])) == count
    done = AuditEvent.objects.filter(action="deid.instance_deidentified")
    assert sorted(done.values_list("target_id", flat=True)) == sorted(str(i.pk) for i in instances)
    study.refresh_from_db()
    assert study.status in DONE


@pytest.mark.worker
def test_a_real_worker_deidentifies_an_uploaded_study(
        tmp_path, deid_worker, stores, site1, coordinator_site1, ready_site, published):
    _clear_flags()
    deid_worker.start()
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site,
                   paths=phi_study(tmp_path / "in", count=12))

    _wait(lambda: ImagingStudy.objects.get(pk=study.pk).status in DONE, seconds=60,
          what="the worker to de-identify the study")

    _exactly_once(study, stores, 12)
    assert 1 <= len(published) <= 12  # coalesced: usually a single task for the series


@pytest.mark.worker
def test_a_worker_killed_mid_series_loses_nothing_and_duplicates_nothing(
        tmp_path, deid_worker, stores, site1, coordinator_site1, ready_site, published):
    _clear_flags()
    count = 150
    paths = phi_study(tmp_path / "in", count=count)
    deid_worker.start()
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site, paths=paths)
    # kill while a file is in the engine (claimed, not yet recorded) whenever the poll catches one
    _wait(lambda: DeidRecord.objects.filter(instance__study=study).count() >= 10 and study.instances.filter(
        status=IS.DEIDENTIFYING).exists(), seconds=60, what="the worker to be in the middle of a file")

    deid_worker.kill()  # SIGKILL: no cleanup, its message unacknowledged, maybe a file half done

    done = DeidRecord.objects.filter(instance__study=study).count()
    assert done < count, "the worker finished before it could be killed: raise the count"
    deid_worker.start()
    # the unacknowledged message comes back only after the broker's visibility timeout; the sweeper's
    # next pass (STUCK_WORK_AFTER later) is what re-enqueues the series
    sweeper.sweep(now=timezone.now() + settings.STUCK_WORK_AFTER + datetime.timedelta(seconds=1))
    _wait(lambda: ImagingStudy.objects.get(pk=study.pk).status in DONE, seconds=120,
          what="the restarted worker to finish the study")

    _exactly_once(study, stores, count)


_WRITER = """
import os, sys
from pathlib import Path
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from intake.models import Submission
from intake.services import instance_receive
submission = Submission.objects.get(pk=int(sys.argv[1]))
for name in sys.argv[2:]:
    assert instance_receive(submission=submission, path=Path(name), name=Path(name).name).outcome == "accepted"
"""
_SWEEP = """
import os
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from datetime import timedelta
from django.conf import settings
from django.utils import timezone
from config.sweeper import sweep
print(sweep(now=timezone.now() + settings.STUCK_WORK_AFTER + timedelta(seconds=1)))
"""


class TcpRedis:
    """A redis-server of this test's own on a TCP port, to stop and start again (empty: no persistence).

    TCP, not the embedded server's unix socket: a worker on a redis+socket:// broker dies on a lost
    connection (kombu/Celery: "Unrecoverable error: 'NoneType' object has no attribute 'hostname'").
    """

    def __init__(self, root):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.root, self.process = root, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        import shutil
        import subprocess

        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.root)], stdout=subprocess.DEVNULL)
        _wait(lambda: self._ping(), seconds=10, what="redis-server to start")
        return self.url

    def _ping(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.mark.worker
@pytest.mark.skipif(not __import__("shutil").which("redis-server"), reason="needs Debian's redis-server")
def test_a_broker_outage_during_uploads_loses_nothing_and_duplicates_nothing(
        tmp_path, deid_worker, stores, site1, coordinator_site1, ready_site, monkeypatch):
    import subprocess
    import sys

    from ..conftest import database_url_for_children

    # a broker of our own, to stop: the suite's Redis is shared
    broker = TcpRedis(tmp_path / "broker")
    monkeypatch.setenv("REDIS_URL", broker.start())
    try:
        deid_worker.start()  # its environment: this broker
        env = {**os.environ, "DATABASE_URL": database_url_for_children()}
        paths = phi_study(tmp_path / "in", count=30)
        submission = submission_open(actor=coordinator_site1, site=site1, channel=Submission.Channel.WEB,
                                     subject=ready_site["subject"], visit=ready_site["baseline"],
                                     procedure="CT_CAP")

        def write(batch):
            subprocess.run([sys.executable, "-c", _WRITER, str(submission.pk), *map(str, batch)], env=env,
                           check=True, timeout=120)

        write(paths[:10])  # broker up: enqueued as usual
        broker.stop()
        write(paths[10:])  # broker down: every file is still accepted, its signal's enqueue fails quietly
        assert Instance.objects.filter(submission=submission).count() == 30
        broker.start()  # back, empty: whatever was queued is gone too
        if deid_worker.process.poll() is not None:
            # kombu 5.7 kills a worker that holds unacknowledged messages when the broker goes ("Unrecoverable
            # error: 'NoneType' object has no attribute 'hostname'"); its supervisor (compose's restart policy)
            # starts it again, as here
            deid_worker.start()
        swept = subprocess.run([sys.executable, "-c", _SWEEP], env=env, check=True, timeout=60,
                               capture_output=True, text=True).stdout
        study = ImagingStudy.objects.distinct().get(instances__submission=submission)
        # every file, not only the study: when the worker took the first ten before the rest arrived, the study
        # was done once already, and the files of the outage follow from the sweeper's re-queue
        _wait(lambda: ImagingStudy.objects.get(pk=study.pk).status in DONE
              and not study.instances.exclude(status=IS.DEIDENTIFIED).exists(), seconds=120,
              what=f"the worker to finish after the outage (sweeper: {swept.strip()})")

        _exactly_once(study, stores, 30)
    finally:
        deid_worker.stop()
        broker.stop()
