"""The whole path with a real Celery worker: upload → de-identification → automated QC → queue."""

import time

import pytest

from deid import queue
from intake.models import ImagingStudy
from qc.models import QcRun

from .conftest import upload
from .files import ct_series

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_checks_a_study_once_it_is_deidentified(tmp_path, stores, ready_site, worker):
    for key in queue.client().scan_iter("deid:queued:*"):  # stale coalescing flags of earlier runs
        queue.client().delete(key)
    study = upload(ready_site, ct_series(tmp_path / "in", count=5, BodyPartExamined="CHEST"))

    deadline = time.monotonic() + 60
    while ImagingStudy.objects.get(pk=study.pk).status != ImagingStudy.Status.QC_PENDING:
        assert time.monotonic() < deadline, "timed out waiting for de-identification and QC"
        time.sleep(0.1)

    run = QcRun.objects.get(study=study)
    assert (run.trigger, run.instance_count, run.failed) == ("deidentified", 5, 0)
