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


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 at production strength costs ~0.3 s per login; the hasher is not what these tests test
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
    deadline = time.monotonic() + 30
    while not app.control.ping(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the Celery worker did not start")
    yield process
    process.terminate()
    process.wait(15)
