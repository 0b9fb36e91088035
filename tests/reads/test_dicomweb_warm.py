"""Warming the DICOMweb header cache when de-identification releases a study: a real worker does it after a
real de-identification, it reads only what is missing, and a damaged file is logged without stopping it."""

import dataclasses
import json
import time
import zlib

import pytest
from django.core.cache import cache
from django.core.files.storage import storages

from deid import queue
from reads.dicomweb import dicom
from reads.dicomweb.selectors import HEADER_CACHE_PREFIX, instance_rows_for_user
from reads.dicomweb.views import metadata_key
from reads.dicomweb.warm import study_headers_warm, study_headers_warm_task, study_rows

from ..qc.conftest import deidentify, make_study, ready_site, stores, upload  # noqa: F401  (QC's fixtures)
from ..qc.files import ct_series

pytestmark = pytest.mark.django_db(transaction=True)


def cache_keys(study) -> list[str]:
    rows = study_rows(study_id=study.pk)
    assert len(rows) == study.instances.count() > 0
    return [HEADER_CACHE_PREFIX + row.sha256 for row in rows]


def series_rows(user, study):
    """The rows a request of ``user`` for the study's (one) series metadata would serve."""
    first = study_rows(study_id=study.pk)[0]
    return instance_rows_for_user(user=user, study_uid=first.study_uid, series_uid=first.series_uid)


def archived_header(row) -> dict:
    with storages["archive"].open(row.key, "rb") as stream:
        return dicom.read_header(stream)


@pytest.mark.worker
def test_a_real_worker_warms_the_headers_of_a_study_de_identification_released(tmp_path, ready_site, qc_analyst,  # noqa: F811
                                                                               worker):
    for key in queue.client().scan_iter("deid:queued:*"):  # stale coalescing flags of earlier runs
        queue.client().delete(key)
    paths = ct_series(tmp_path / "in", count=5, BodyPartExamined="CHEST")
    study = upload(ready_site, paths)  # the worker de-identifies it, then warms its headers

    deadline = time.monotonic() + 60
    while len(study_rows(study_id=study.pk)) < 5 or len(cache.get_many(cache_keys(study))) < 5:
        assert time.monotonic() < deadline, "timed out waiting for de-identification and the warming"
        time.sleep(0.1)

    found = cache.get_many(cache_keys(study))
    for row in study_rows(study_id=study.pk):
        assert found[HEADER_CACHE_PREFIX + row.sha256] == archived_header(row)
    deadline = time.monotonic() + 30
    while cache.get(metadata_key(series_rows(qc_analyst, study))) is None:  # built right after the headers
        assert time.monotonic() < deadline, "the series' metadata was not built"
        time.sleep(0.1)


def test_warming_reads_only_what_is_missing_and_is_idempotent(make_study):  # noqa: F811
    study = make_study(count=5)
    keys = cache_keys(study)
    cache.delete_many(keys)

    assert study_headers_warm(study_id=study.pk) == {"instances": 5, "read": 5, "failed": 0, "series": 1}
    assert set(cache.get_many(keys)) == set(keys)
    assert study_headers_warm(study_id=study.pk) == {"instances": 5, "read": 0, "failed": 0, "series": 1}

    cache.delete(keys[2])
    assert study_headers_warm(study_id=study.pk) == {"instances": 5, "read": 1, "failed": 0, "series": 1}
    row = study_rows(study_id=study.pk)[2]
    assert cache.get(keys[2]) == archived_header(row)


def test_warming_builds_the_series_metadata_the_viewer_asks_for_seen_blinded_or_not(make_study, qc_analyst):  # noqa: F811
    study = make_study(count=5, StationName="CT-ROOM-3")
    rows = series_rows(qc_analyst, study)
    blinded = [dataclasses.replace(row, blinded=True) for row in rows]
    cache.delete_many([metadata_key(rows), metadata_key(blinded)])

    study_headers_warm(study_id=study.pk)

    seen = json.loads(zlib.decompress(cache.get(metadata_key(rows))))
    hidden = json.loads(zlib.decompress(cache.get(metadata_key(blinded))))
    assert [m["00080018"]["Value"][0] for m in seen] == [row.sop_uid for row in rows]
    assert seen[0]["00081010"]["Value"] == ["CT-ROOM-3"] and "00081010" not in hidden[0]  # StationName


def test_a_study_with_nothing_released_warms_nothing():
    assert study_headers_warm(study_id=987654) == {"instances": 0, "read": 0, "failed": 0, "series": 0}


def test_an_unreadable_file_is_logged_and_the_rest_of_the_study_is_warmed(make_study, caplog):  # noqa: F811
    study = make_study(count=5)
    keys = cache_keys(study)
    cache.delete_many(keys)
    broken = study_rows(study_id=study.pk)[1]
    storages["archive"].delete(broken.key)

    study_headers_warm_task(study.pk)  # the task's body, run here: it must not raise

    cached = cache.get_many(keys)
    assert set(cached) == set(keys) - {HEADER_CACHE_PREFIX + broken.sha256}
    assert f"cannot read the header of archived {broken.key}" in caplog.text
    assert study_headers_warm(study_id=study.pk) == {"instances": 5, "read": 0, "failed": 1, "series": 0}
