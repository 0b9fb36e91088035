"""`make run`: everything Corelab needs, in one foreground process group; Ctrl-C stops it all.

    python -m config.run

Starts embedded PostgreSQL and Redis under ``var/`` unless DATABASE_URL /
REDIS_URL are set, migrates, loads the demo trial into an empty database, then
runs the web server, a Celery worker, Celery beat and (when the intake app
provides it) the DICOM gateway, with their output prefixed by name. On Ctrl-C
or SIGTERM the children stop first, then the embedded servers.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from config.embedded import EmbeddedRedis, start_postgres, stop_postgres

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 15


class Stop(Exception):
    """Raised by the signal handler to unwind into the orderly shutdown."""


def _persistent_secret(path: Path) -> str:
    """A secret generated once and kept (0600) so sessions and keyed hashes survive restarts."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pump(name: str, stream, width: int) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"{name:<{width}} | {line}")
        sys.stdout.flush()


def _children(port: int, var: Path) -> dict[str, list[str]]:
    python = sys.executable
    commands = {
        "web": [python, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                "--access-logfile", "-", "--graceful-timeout", "10"],
        "worker": [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                 "--schedule", str(var / "celerybeat-schedule")],
    }
    if (ROOT / "intake" / "management" / "commands" / "dicom_gateway.py").exists():
        commands["gateway"] = [python, "manage.py", "dicom_gateway"]
    return commands


def _manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def main() -> int:
    var = Path(os.environ.get("CORELAB_VAR_DIR") or ROOT / "var").resolve()
    port = int(os.environ.get("CORELAB_PORT", "8000"))
    var.mkdir(parents=True, exist_ok=True)
    if not _port_free(port):
        print(f"Port {port} on 127.0.0.1 is in use: stop whatever holds it, or set CORELAB_PORT.", file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    env = dict(os.environ)
    env.setdefault("SECRET_KEY", _persistent_secret(var / "secret_key"))
    env.setdefault("PSEUDONYM_KEY", _persistent_secret(var / "pseudonym_key"))
    env.setdefault("SECURE_COOKIES", "false")  # the local server speaks plain http
    env["PYTHONUNBUFFERED"] = "1"
    postgres = redis = None
    processes: dict[str, subprocess.Popen] = {}
    status = 0
    try:
        if not env.get("DATABASE_URL"):
            print(f"Starting embedded PostgreSQL in {var / 'pg'} ...", flush=True)
            postgres, env["DATABASE_URL"] = start_postgres(root=var, database="corelab")
        if not env.get("REDIS_URL"):
            print(f"Starting embedded Redis in {var / 'redis'} ...", flush=True)
            redis = EmbeddedRedis(root=var / "redis")
            env["REDIS_URL"] = redis.start()
        _manage("migrate", "--noinput", env=env)
        _manage("load_demo", "--if-empty", env=env)

        commands = _children(port, var)
        width = max(map(len, commands))
        for name, command in commands.items():
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                               bufsize=1)
            threading.Thread(target=_pump, args=(name, processes[name].stdout, width), daemon=True).start()
        print(f"\nCorelab is running at http://127.0.0.1:{port}/  ({', '.join(commands)}). "
              "Press Ctrl-C to stop everything.\n", flush=True)
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"\n{name} exited unexpectedly with status {process.returncode}; stopping everything.",
                          file=sys.stderr, flush=True)
                    status = 1
                    raise Stop(name)
            time.sleep(0.5)
    except Stop:
        pass
    except subprocess.CalledProcessError as exc:
        print(f"\n{' '.join(exc.cmd[1:])} failed with status {exc.returncode}; stopping.", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_children(processes)
        if redis is not None:
            redis.stop()
        if postgres is not None:
            stop_postgres(postgres)
        print("Corelab stopped.", flush=True)
    return status


def _stop_children(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
