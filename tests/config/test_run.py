"""`make run` end to end: embedded servers, migrate, demo, web + worker + beat; Ctrl-C stops it all."""

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "intake" / "management" / "commands" / "dicom_gateway.py"
# what the test session sets for itself and a developer's `make run` would not have
NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PSEUDONYM_KEY", "SECURE_COOKIES", "DEBUG",
                 "CELERY_QUEUE")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(var: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    # empty rather than absent: also shadows a developer's .env, so the embedded servers start
    return {**env, "DATABASE_URL": "", "REDIS_URL": "", "CORELAB_VAR_DIR": str(var), "CORELAB_PORT": str(port),
            "CORELAB_DICOM_PORT": str(_free_port())}


def _wait_healthy(port: int, process: subprocess.Popen, log: Path, timeout: float) -> dict:
    """Poll /healthz until database, Redis and a worker are all up (200)."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"config.run exited early:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:  # 503 until the worker answers pings
            body = exc.read().decode()
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not healthy within {timeout} s; last /healthz: {body}\n{log.read_text()[-3000:]}")


def _log_in(port: int, username: str, password: str) -> str:
    """Sign in through the login form over plain http, as a browser would; returns the page landed on."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    url = f"http://127.0.0.1:{port}/accounts/login/"
    page = opener.open(url, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    # a cookie marked Secure would not come back over http: the CSRF check would refuse this post
    with opener.open(urllib.request.Request(url, data=form.encode(), headers={"Referer": url}), timeout=10) as r:
        assert "/accounts/login/" not in r.url, "login did not leave the login page"
        return r.read().decode()


def _postmaster(var: Path) -> psutil.Process:
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(var / "pg") in (process.info["cmdline"] or []):
            return process
    raise AssertionError("no embedded postmaster runs for this var dir")


def _leftovers(var: Path, pids: set[int]) -> list[str]:
    left = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["pid"] in pids or str(var) in cmdline:
            left.append(f"{process.info['pid']} {cmdline[:120]}")
    return left


def _kill_leftovers(var: Path, pids: set[int]) -> None:
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.info["pid"] in pids or str(var) in " ".join(process.info["cmdline"] or []):
            try:
                process.kill()
            except psutil.Error:
                pass


def _run_once(var: Path, log: Path) -> str:
    """Start config.run, check it serves, Ctrl-C it; return its output."""
    port = _free_port()
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "config.run"], cwd=ROOT, env=_env(var, port),
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # a process group of its own, as a terminal gives
    ours: set[int] = set()
    try:
        # generous: migrations, the demo trial and five processes starting, while the other xdist worker runs
        # browser tests on the same two cores (75 s was once not enough); a healthy start returns at once
        health = _wait_healthy(port, process, log, timeout=150)
        assert health["status"] == "ok", health
        ours = {c.pid for c in psutil.Process(process.pid).children(recursive=True)}
        postmaster = _postmaster(var)
        ours |= {postmaster.pid} | {c.pid for c in postmaster.children(recursive=True)}
        # the terminal's Ctrl-C must not reach the database before the workers are done with it
        assert os.getsid(postmaster.pid) != process.pid
        started = "web, worker, beat, gateway" if GATEWAY.exists() else "web, worker, beat"
        assert f"({started};" in log.read_text()  # the banner names what runs
        home = _log_in(port, "manager", "demo-manager-pass")
        assert '<span class="who">manager</span>' in home
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            status = process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _kill_leftovers(var, ours)
            pytest.fail(f"config.run did not stop within 30 s of Ctrl-C:\n{log.read_text()[-3000:]}")
    output = log.read_text()
    assert status == 0, output[-3000:]
    deadline = time.monotonic() + 5
    while _leftovers(var, ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _leftovers(var, ours)
    _kill_leftovers(var, ours)
    assert left == [], f"still running after Ctrl-C: {left}"
    return output


def test_run_starts_everything_and_ctrl_c_stops_everything_twice(tmp_path):
    var = tmp_path / "var"

    first = _run_once(var, tmp_path / "first.log")
    assert "Starting embedded PostgreSQL" in first and "Starting embedded Redis" in first
    assert "Applying trials.0001_initial... OK" in first  # migrate ran
    assert "Loaded demo trial CORE-DEMO-01" in first and "demo-manager-pass" in first  # so did load_demo
    assert re.search(r"^web +\| .*Listening at: http://127\.0\.0\.1:\d+", first, re.MULTILINE)  # prefixed output
    assert "Corelab stopped." in first
    assert (var / "secret_key").stat().st_mode & 0o777 == 0o600

    # same data, same secret: the demo is not loaded twice and the earlier session keys still apply
    secret = (var / "secret_key").read_text()
    second = _run_once(var, tmp_path / "second.log")
    assert "No migrations to apply" in second and "demo not loaded" in second
    assert (var / "secret_key").read_text() == secret


def test_run_refuses_a_port_in_use_before_starting_anything(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "config.run"], cwd=ROOT, capture_output=True, text=True,
                                env=_env(tmp_path, port), timeout=60)
    assert result.returncode == 2
    assert f"Port {port} on 127.0.0.1 is in use" in result.stderr
    assert not (tmp_path / "pg").exists()
