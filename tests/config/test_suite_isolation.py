"""The suite's own isolation (tests/services.py, tests/conftest.py): under pytest-xdist each worker has its own
test database, Redis database, Celery queue and file stores; a transactional test leaves every table empty."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction

from tests.services import WORKER, redis_db_of, redis_url_with_db

from ..conftest import KEPT_BY_POST_MIGRATE


@pytest.mark.parametrize(("url", "db", "expected"), [
    ("redis://127.0.0.1:6379/14", 15, "redis://127.0.0.1:6379/15"),
    ("redis://:secret@cache:6379", 2, "redis://:secret@cache:6379/2"),
    ("unix:///srv/corelab/var/test/redis/redis.sock?db=0", 1, "unix:///srv/corelab/var/test/redis/redis.sock?db=1"),
    ("unix:///run/redis.sock", 3, "unix:///run/redis.sock?db=3"),
])
def test_a_worker_url_names_its_own_redis_database(url, db, expected):
    assert redis_url_with_db(url, db) == expected
    assert redis_db_of(expected) == db


def _store_locations() -> list[Path]:
    return [Path(settings.STORAGES[name]["OPTIONS"]["location"]) for name in ("quarantine", "archive", "default")] \
        + [Path(settings.INTAKE_SPOOL_DIR)]


def test_file_stores_are_not_the_developers_var_folder():
    for location in _store_locations():
        assert not location.is_relative_to(settings.VAR_DIR), location


@pytest.mark.django_db
def test_each_run_or_worker_has_its_own_database_redis_database_queue_and_stores():
    if not WORKER:  # a serial run: the session's own names, one scratch folder for every store
        assert not re.search(r"_gw\d+$", connection.settings_dict["NAME"])
        assert not re.search(r"-gw\d+$", settings.CELERY_TASK_DEFAULT_QUEUE)
        assert len({location.parent for location in _store_locations()}) == 1
        return
    index = int(WORKER.removeprefix("gw"))
    assert connection.settings_dict["NAME"].endswith(f"_{WORKER}")
    # the controller's REDIS_URL plus this worker's index: gw0 keeps its database, gw1 has the next
    assert redis_db_of(settings.REDIS_URL) >= index
    assert settings.CELERY_TASK_DEFAULT_QUEUE.endswith(f"-{WORKER}")
    assert {location.name for location in _store_locations()} == {WORKER}


@pytest.mark.django_db(transaction=True)
def test_the_flush_after_a_transactional_test_empties_every_table(trial_manager, coordinator_site1):
    from audit.signatures import signature_sign

    from .. import conftest

    # append-only rows the flush cannot DELETE: a signature and its audit event
    with transaction.atomic():
        signature_sign(user=trial_manager, password="correct-horse-battery", meaning="approval",
                       record_type="test.record", record_id=1, content={"a": 1})
    # what TransactionTestCase runs after each test (with the faster SQL of tests/conftest.py)
    assert connection.ops.sql_flush.__func__ is conftest._flush_filled_tables
    call_command("flush", verbosity=0, interactive=False, reset_sequences=False, allow_cascade=False,
                 inhibit_post_migrate=False)

    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with connection.cursor() as cursor:
        filled = []
        for table in tables:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {connection.ops.quote_name(table)})")  # noqa: S608
            if cursor.fetchone()[0]:
                filled.append(table)
    assert set(filled) == KEPT_BY_POST_MIGRATE


def test_the_celery_broker_is_the_redis_database_of_this_process():
    from config.celery import app

    with app.connection_for_write() as broker:
        db = broker.default_channel.client.connection_pool.connection_kwargs["db"]
    assert int(db) == redis_db_of(settings.REDIS_URL)


def test_the_celery_broker_url_keeps_the_redis_database_number():
    # kombu ignores ?db= in a redis+socket:// URL: without the settings' conversion every worker's
    # Celery would share database 0 of the embedded server
    from kombu import Connection

    from config.settings import _celery_url

    with Connection(_celery_url(redis_url_with_db(settings.REDIS_URL, 3))) as broker:
        assert int(broker.default_channel.client.connection_pool.connection_kwargs["db"]) == 3
