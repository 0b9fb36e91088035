"""The role cast every test can ask for: one trial with two sites, one user per role, and an outsider."""

import pytest

from trials.models import Role

from .trials.factories import MembershipFactory, SiteFactory, TrialFactory, UserFactory


@pytest.fixture
def trial(db):
    return TrialFactory(protocol_number="CL-TEST-001", title="Test trial")


@pytest.fixture
def site1(trial):
    return SiteFactory(trial=trial, number="101", name="Site One Hospital")


@pytest.fixture
def site2(trial):
    return SiteFactory(trial=trial, number="102", name="Site Two Clinic", country="FR", time_zone="Europe/Paris")


def _member(trial, role, username, site=None):
    user = UserFactory(username=username)
    MembershipFactory(user=user, trial=trial, role=role, site=site)
    return user


@pytest.fixture
def trial_manager(trial):
    return _member(trial, Role.TRIAL_MANAGER, "manager")


@pytest.fixture
def coordinator_site1(trial, site1):
    return _member(trial, Role.SITE_COORDINATOR, "coord1", site1)


@pytest.fixture
def coordinator_site2(trial, site2):
    return _member(trial, Role.SITE_COORDINATOR, "coord2", site2)


@pytest.fixture
def qc_analyst(trial):
    return _member(trial, Role.QC_ANALYST, "qc")


@pytest.fixture
def reader1(trial):
    return _member(trial, Role.READER, "reader1")


@pytest.fixture
def reader2(trial):
    return _member(trial, Role.READER, "reader2")


@pytest.fixture
def adjudicator(trial):
    return _member(trial, Role.ADJUDICATOR, "adjudicator")


@pytest.fixture
def sponsor(trial):
    return _member(trial, Role.SPONSOR_VIEWER, "sponsor")


@pytest.fixture
def auditor(trial):
    return _member(trial, Role.AUDITOR, "auditor")


@pytest.fixture
def outsider(db):
    """Holds a role in another trial only."""
    other = TrialFactory(protocol_number="CL-OTHER-999")
    return _member(other, Role.TRIAL_MANAGER, "outsider")


def _flush_filled_tables(self, style, tables, *, reset_sequences=False, allow_cascade=False):
    """Empty only the tables that hold rows, with DELETE; TRUNCATE only where DELETE is refused.

    What a transactional test (live server, Celery worker) leaves is wiped after it by Django's flush,
    one TRUNCATE of all ~80 tables. PostgreSQL makes new files for every truncated table and syncs them
    at commit: seconds per test on a busy machine, for tables that are almost all empty. A DELETE of the
    few rows a test wrote costs milliseconds. Every foreign key is deferrable, so the order does not
    matter. The audit tables refuse DELETE (append-only triggers) but not TRUNCATE: they are truncated
    with the tables that reference them, first, so no deferred check of this transaction is pending on
    them yet. Sequences are not reset, as with Django's own flush without reset_sequences.
    """
    if reset_sequences or allow_cascade or not tables:
        return _postgres_sql_flush(self, style, tables, reset_sequences=reset_sequences,
                                   allow_cascade=allow_cascade)
    quote = self.quote_name
    with self.connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(
            f"(SELECT {n} FROM {quote(table)} LIMIT 1)" for n, table in enumerate(tables)))  # noqa: S608
        filled = [tables[n] for (n,) in cursor.fetchall()]
        cursor.execute("SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger "
                       "WHERE NOT tgisinternal AND tgtype & 8 = 8")  # row triggers on DELETE
        guarded = {name.strip('"') for (name,) in cursor.fetchall()}
        cursor.execute("SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
                       "WHERE contype = 'f'")
        references = [(referencing.strip('"'), referenced.strip('"')) for referencing, referenced in cursor]
    # post_migrate, sent after the flush, would only write these rows again (new ids, same content)
    filled = [table for table in filled if table not in KEPT_BY_POST_MIGRATE]
    # TRUNCATE refuses a table that another table references unless that one is truncated too, rows or not
    truncated = {table for table in filled if table in guarded}
    while more := {referencing for referencing, referenced in references
                   if referenced in truncated and referencing not in truncated}:
        truncated |= more
    return [
        *([f"TRUNCATE {', '.join(map(quote, sorted(truncated)))};"] if truncated else []),
        "SET CONSTRAINTS ALL DEFERRED;",
        *(f"DELETE FROM {quote(table)};" for table in filled if table not in truncated),  # noqa: S608
    ]


_postgres_sql_flush = None
KEPT_BY_POST_MIGRATE = {"django_content_type", "auth_permission"}


@pytest.fixture(scope="session", autouse=True)
def _fast_flush():
    global _postgres_sql_flush
    from django.db.backends.postgresql.operations import DatabaseOperations

    _postgres_sql_flush = DatabaseOperations.sql_flush
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", _flush_filled_tables)
        yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 at production strength costs ~0.3 s per login; the hasher is not what these tests test
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# A ceiling, not a wait: a solo worker answers its first ping only after the task it picked up at start,
# and with the suite on every core a busy machine stretches that well past 30 s.
WORKER_START_SECONDS = 120


def database_url_for_children() -> str:
    """DATABASE_URL of the test database, for processes the tests start (workers, writers)."""
    from urllib.parse import quote

    from django.db import connection

    conf = connection.settings_dict
    host = conf["HOST"] or "127.0.0.1"
    if host.startswith("/"):
        return f"postgres://{conf['USER']}@/{conf['NAME']}?host={quote(host)}"
    return f"postgres://{conf['USER']}@{host}:{conf['PORT'] or 5432}/{conf['NAME']}"


@pytest.fixture
def worker(transactional_db):
    """A real Celery worker process on the test database and this run's own queue."""
    import os
    import subprocess
    import sys
    import time

    from config.celery import app

    env = {**os.environ, "DATABASE_URL": database_url_for_children()}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "WARNING",
         "--hostname", f"test-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
        env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + WORKER_START_SECONDS
    while not app.control.ping(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the Celery worker did not start")
    yield process
    process.terminate()
    process.wait(15)
