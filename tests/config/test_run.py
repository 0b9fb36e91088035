"""`make run` end to end: embedded servers, migrate, demo, web + worker + beat; Ctrl-C stops it all."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(port: int, timeout: float, process: subprocess.Popen) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "config.run exited before it became healthy"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.5)
    pytest.fail("config.run did not become healthy in time")


def _start(var: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY",
                                                            "CELERY_QUEUE")}
    env.update(CORELAB_VAR_DIR=str(var), CORELAB_PORT=str(port))
    return subprocess.Popen([sys.executable, "-m", "config.run"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _survivors(var: Path, pids: set[int]) -> list[str]:
    left = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["pid"] in pids or str(var) in cmdline:
            left.append(f"{process.info['pid']} {cmdline[:120]}")
    return left


def _run_once(var: Path, log: Path) -> str:
    port = _free_port()
    process = _start(var, port, log)
    try:
        health = _healthy(port, 120, process)
        # the worker pings once it is up; give it the time the first boot needs
        deadline = time.monotonic() + 30
        while not health["checks"]["worker"]["ok"] and time.monotonic() < deadline:
            time.sleep(1)
            health = _healthy(port, 10, process)
        assert health["status"] == "ok", health
        children = {c.pid for c in psutil.Process(process.pid).children(recursive=True)}
        login = urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=5).read().decode()
        assert "Sign in" in login
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        status = process.wait(60)
    assert status == 0, log.read_text()[-3000:]
    time.sleep(0.5)
    assert _survivors(var, children) == []
    return log.read_text()


def test_run_starts_everything_and_ctrl_c_stops_everything_twice(tmp_path):
    var = tmp_path / "var"

    first = _run_once(var, tmp_path / "first.log")
    assert "Starting embedded PostgreSQL" in first and "Starting embedded Redis" in first
    assert "Loaded demo trial CORE-DEMO-01" in first and "demo-manager-pass" in first
    assert "Corelab stopped." in first

    second = _run_once(var, tmp_path / "second.log")
    assert "demo not loaded" in second
    assert (var / "secret_key").stat().st_mode & 0o077 == 0


def test_run_refuses_a_port_in_use(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "config.run"], cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, "CORELAB_VAR_DIR": str(tmp_path), "CORELAB_PORT": str(port)},
                                timeout=60)
    assert result.returncode == 2
    assert f"Port {port} on 127.0.0.1 is in use" in result.stderr
