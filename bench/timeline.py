"""Patient timeline benchmark: a subject with 20,000 audit events; first page and exports, timed.

Run: ``.venv/bin/python bench/timeline.py`` (``--events N``, ``--runs R``).

Uses a dedicated ``corelab_bench_timeline`` database: created on the server of DATABASE_URL when that is
set, else on an embedded PostgreSQL under ``var/bench``. It migrates, empties the audit table, makes a
trial with two sites, an auditor and one subject at a Europe/Paris site, and bulk-inserts N events for
that subject (one INSERT ... SELECT over generate_series: receipts, de-identification, QC, reads and
sign-ins mixed as a real subject's trail would be, with JSON details) plus N / 40 events for each of 20 other
subjects, so the subject is not alone in the table. It seals the chain, VACUUM ANALYZEs, then measures
in-process through Django's test client (no HTTP server, so the figures are the view's own cost):

1. the timeline's first page (100 events, template rendered), median of R runs;
2. a late page (keyset cursor of the 10,000th event), median of R runs;
3. the CSV export (verification of every event against its seal, the export's audit event, and the
   streamed body consumed to the end), median of R runs; the same for JSON;
4. the PDF export of another subject's whole timeline (N / 40 events) once;
5. with ``--background-pdf``, the PDF of the subject's whole timeline (N events) as the background task makes
   it (``audit.exports.pdf_export_build``, run in this process), once, with the process's peak memory.

With ``--search-rows M`` it then adds M more events (unsealed: plans do not depend on the seal) spread
over 20 trials, 200 sites, 20,000 subjects, 200 users, 30 actions and three years, VACUUM ANALYZEs, and
prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the audit search's queries for an auditor of one trial, as
``audit.selectors.audit_event_list_for_user`` builds them (first page: 51 rows, newest first). From a
million rows up, the table's secondary indexes are dropped for the load and rebuilt after it (5 million:
``--search-rows 5000000``).
"""

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _support import bench_database, django_setup  # noqa: E402  (bench/ is the script's folder)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-any-deployment")
os.environ.setdefault("SECURE_COOKIES", "false")
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

DATABASE = "corelab_bench_timeline"
BENCH_LOCK = 0x62656E6369  # one run per database
# (action, target type, details) of a subject's trail, in the proportions a long-running subject shows
MIX = [
    ("intake.instance_received", "intake.instance", "jsonb_build_object('channel', 'cstore', 'sha256', md5(n::text) || md5((n+1)::text), 'sop_class', 'CT Image Storage')"),
    ("intake.instance_status_changed", "intake.instance", "jsonb_build_object('from', 'received', 'to', 'deidentified')"),
    ("deid.instance_deidentified", "intake.instance", "jsonb_build_object('profile_version', 3, 'verified', true, 'archive_sha256', md5(n::text))"),
    ("deid.instance_deidentified", "intake.instance", "jsonb_build_object('profile_version', 3, 'verified', true, 'archive_sha256', md5(n::text))"),
    ("intake.instance_received", "intake.instance", "jsonb_build_object('channel', 'web', 'sha256', md5(n::text) || md5((n+2)::text))"),
    ("deid.raw_purged", "intake.instance", "jsonb_build_object('bytes', 526000 + n)"),
    ("qc.check_recorded", "intake.imagingstudy", "jsonb_build_object('check', 'slice_thickness', 'result', 'pass', 'value', 1.25)"),
    ("intake.study_status_changed", "intake.imagingstudy", "jsonb_build_object('from', 'qc_pending', 'to', 'accepted')"),
    ("reads.task_assigned", "reads.readtask", "jsonb_build_object('reader', 'reader1', 'timepoint', 'W6')"),
    ("auth.login", "auth.user", "jsonb_build_object('ip', '10.0.0.7')"),
]






def _insert_events(cur, *, subject_id: int, code: str, trial_id: int, site_id: int, actor_id: int, count: int,
                   start_n: int = 0) -> None:
    cases = " ".join(f"WHEN {i} THEN '{a}'" for i, (a, _, _) in enumerate(MIX))
    targets = " ".join(f"WHEN {i} THEN '{t}'" for i, (_, t, _) in enumerate(MIX))
    details = " ".join(f"WHEN {i} THEN {d}" for i, (_, _, d) in enumerate(MIX))
    cur.execute(
        "INSERT INTO audit_auditevent (occurred_at, actor_id, actor_label, actor_role, action, target_type, "  # noqa: S608
        "target_id, target_label, trial_id, site_id, subject_id, subject_code, details, reason, prev_hash, hash) "
        "SELECT timestamptz '2026-03-02 08:00:00+00' + n * interval '37 seconds', %s, 'coord102', "
        f"'site_coordinator', CASE n %% {len(MIX)} {cases} END, CASE n %% {len(MIX)} {targets} END, "
        "(n / 7)::text, 'CT 1.2.826.0.1.3680043.2.' || n, %s, %s, %s, %s, "
        f"CASE n %% {len(MIX)} {details} END, '', '', '' FROM generate_series(%s, %s) AS n",
        [actor_id, trial_id, site_id, subject_id, code, start_n, start_n + count - 1])


def _seed(*, events: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from audit.chain import chain_seal
    from trials.models import Membership, Role, Site, Subject, Trial

    with connection.cursor() as cur:
        cur.execute("TRUNCATE audit_auditevent, audit_electronicsignature RESTART IDENTITY CASCADE")
    trial, _ = Trial.objects.get_or_create(protocol_number="BENCH-TL-01", defaults={
        "title": "Timeline bench", "sponsor": "Bench", "status": Trial.Status.ACTIVE})
    site, _ = Site.objects.get_or_create(trial=trial, number="102", defaults={
        "name": "Hôpital Bench", "country": "FR", "time_zone": "Europe/Paris", "status": Site.Status.ACTIVE})
    user_model = get_user_model()
    auditor, _ = user_model.objects.get_or_create(username="bench-auditor")
    coord, _ = user_model.objects.get_or_create(username="coord102")
    Membership.objects.get_or_create(user=auditor, trial=trial, role=Role.AUDITOR)
    subjects = []
    for k in range(21):
        subject, _ = Subject.objects.get_or_create(trial=trial, code=f"102-{k:04d}", defaults={
            "site": site, "patient_id_hash": f"{k:064d}", "enrollment_date": "2026-03-02"})
        subjects.append(subject)
    started = time.monotonic()
    with connection.cursor() as cur:
        _insert_events(cur, subject_id=subjects[0].pk, code=subjects[0].code, trial_id=trial.pk, site_id=site.pk,
                       actor_id=coord.pk, count=events)
        for other in subjects[1:]:
            _insert_events(cur, subject_id=other.pk, code=other.code, trial_id=trial.pk, site_id=site.pk,
                           actor_id=coord.pk, count=events // 40, start_n=events)
    inserted = time.monotonic() - started
    started = time.monotonic()
    chain_seal(max_batches=10_000)
    sealed = time.monotonic() - started
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE audit_auditevent")
        cur.execute("SELECT count(*) FROM audit_auditevent")
        total = cur.fetchone()[0]
    return {"subject": subjects[0], "others": subjects[1:], "auditor": auditor, "inserted": inserted, "sealed": sealed, "total": total}


CPU: dict[str, float] = {}


SEARCH_ACTIONS = ["intake.instance_received", "deid.instance_deidentified", "intake.instance_status_changed",
                  "qc.check_recorded", "intake.study_status_changed", "reads.task_assigned", "auth.login",
                  "trials.subject_enrolled", "qc.study_accepted", "qc.query_raised", "qc.query_answered",
                  "reads.read_signed", "reads.adjudication_started", "deid.raw_purged", "intake.study_created",
                  "intake.submission_opened", "intake.submission_closed", "trials.role_granted",
                  "trials.site_updated", "audit.timeline_exported", "audit.search_exported",
                  "audit.signature_signed", "qc.study_rejected", "reads.read_started", "reads.read_submitted",
                  "deid.instance_held", "intake.study_assigned", "trials.qualification_submitted",
                  "trials.scanner_registered", "trials.protocol_version_released"]


def _search_seed(*, rows: int, trial_id: int) -> float:
    """Add ``rows`` events over 20 trials (one of them the auditor's), in batches; returns seconds."""
    from django.db import connection

    actions = "ARRAY[" + ", ".join(f"'{a}'" for a in SEARCH_ACTIONS) + "]"
    started = time.monotonic()
    batch = 250_000
    with connection.cursor() as cur:
        # millions of rows load faster into a table without its secondary indexes, built once afterwards
        # (a sorted build per index instead of one random insertion per row and index); the primary key
        # and the unique seq constraint stay, as does the append-only trigger (it refuses UPDATE and DELETE)
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("SELECT indexname, indexdef FROM pg_indexes i WHERE tablename = 'audit_auditevent' "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = "
                    "format('%I.%I', i.schemaname, i.indexname)::regclass)")
        secondary = cur.fetchall() if rows >= 1_000_000 else []
        for name, _definition in secondary:
            cur.execute(f'DROP INDEX "{name}"')
        for first in range(0, rows, batch):
            cur.execute(
                "INSERT INTO audit_auditevent (occurred_at, actor_label, actor_role, action, target_type, "  # noqa: S608
                "target_id, target_label, trial_id, site_id, subject_id, subject_code, details, reason, prev_hash, "
                "hash) SELECT timestamptz '2024-01-01 00:00:00+00' + (n::float8 / %s) * interval '1095 days', "
                "'user' || (n %% 200), 'qc_analyst', "
                f"({actions})[1 + ((n::bigint * 7919) / 20) %% {len(SEARCH_ACTIONS)}], 'intake.instance', (n / 3)::text, "
                "'CT ' || n, CASE WHEN n %% 20 = 0 THEN %s ELSE 900000 + n %% 20 END, "
                "9000000 + n %% 200, 5000000 + n %% 20000, 'S-' || (n %% 20000), "
                "jsonb_build_object('n', n), '', '', '' FROM generate_series(%s, %s) AS n",
                [rows, trial_id, first, min(first + batch, rows) - 1])
            print(f"    search seed: {min(first + batch, rows)} of {rows} rows, {time.monotonic() - started:.0f} s",
                  flush=True)
        for name, definition in secondary:
            cur.execute(definition)
            print(f"    search seed: rebuilt {name}, {time.monotonic() - started:.0f} s", flush=True)
        cur.execute("VACUUM ANALYZE audit_auditevent")
    return time.monotonic() - started


def _search_plans(*, auditor, trial_id: int) -> None:
    import datetime as dt

    from django.db import connection

    from audit.selectors import SearchFilters, audit_event_list_for_user

    cases = [
        ("trial only (first page)", SearchFilters()),
        ("site", SearchFilters(site_id=9000000)),  # n % 200 = 0 is always in the auditor's trial
        ("subject", SearchFilters(subject_id=5000000)),
        ("user", SearchFilters(actor="user40")),
        ("action (exact)", SearchFilters(action="qc.query_raised")),
        ("action family (prefix)", SearchFilters(action="reads")),
        ("object (target type + id)", SearchFilters(target_type="intake.instance", target_id="6000")),
        ("one month", SearchFilters(since=dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
                                    until=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))),
        ("user + one month", SearchFilters(actor="user40", since=dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
                                           until=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))),
    ]
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_auditevent")
        total = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM audit_auditevent WHERE trial_id = %s", [trial_id])
        mine = cur.fetchone()[0]
        print(f"  search plans: {total} events in the table, {mine} in the auditor's trial")
        for label, filters in cases:
            sql, params = audit_event_list_for_user(user=auditor, filters=filters)[:51].query.sql_with_params()
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            plan = [row[0] for row in cur.fetchall()]
            took = next((line for line in reversed(plan) if line.startswith("Execution Time")), "")
            print(f"\n  -- {label}: {took}")
            for line in plan:
                if not line.startswith(("Planning", "Execution")):
                    print(f"     {line}")


def _median_ms(fn, runs: int, *, name: str = "") -> tuple[float, list[float]]:
    """Median wall-clock ms of ``runs`` calls; the median CPU ms of this process goes to CPU[name]."""
    times, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    CPU[name] = statistics.median(cpu)
    return statistics.median(times), times


def _background_pdf(*, subject, auditor, events: int) -> None:
    """The whole timeline as a PDF, as the ``audit.pdf_export`` task makes it (in this process, timed)."""
    import resource

    from django.core.files.storage import storages
    from django.utils import timezone

    from audit import exports
    from audit.models import PdfExport

    now = timezone.now()
    export = PdfExport.objects.create(requested_by=auditor, requested_at=now, as_of=now, trial_id=subject.trial_id,
                                      site_id=subject.site_id, subject_id=subject.pk, subject_code=subject.code)
    started, cpu_started = time.perf_counter(), time.process_time()
    done = exports.pdf_export_build(export_id=export.pk)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert done.status == PdfExport.Status.READY, done.error
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  background PDF, {done.rows} events:  {wall * 1000:7.0f} ms, {cpu * 1000:.0f} ms CPU, "
          f"{done.pages} pages, {done.size / 1e6:.1f} MB, peak RSS of the process {peak:.0f} MB")
    storages[exports.PDF_STORAGE].delete(done.storage_key)


def main(*, events: int, runs: int, search_rows: int, background_pdf: bool = False) -> None:
    server, url = bench_database(DATABASE)
    os.environ["DATABASE_URL"] = url
    try:
        django_setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        from audit.selectors import encode_cursor, subject_get_for_auditor, timeline_events

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [BENCH_LOCK])
            if not cur.fetchone()[0]:
                raise SystemExit(f"another bench run is using {DATABASE}; try again when it is done")
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        call_command("migrate", verbosity=0)
        seeded = _seed(events=events)
        subject, auditor = seeded["subject"], seeded["auditor"]
        print(f"timeline bench: subject with {events} events in a table of {seeded['total']} "
              f"(seeded in {seeded['inserted']:.1f} s, sealed in {seeded['sealed']:.1f} s), "
              f"PostgreSQL {version}, {os.cpu_count()} CPUs, {runs} runs each")

        client = Client()
        client.force_login(auditor)
        base = f"/audit/subjects/{subject.pk}/timeline"

        def first_page():
            response = client.get(base)
            assert response.status_code == 200 and response.content.count(b'<tr id="event-') == 100
        ref = subject_get_for_auditor(user=auditor, subject_id=subject.pk)
        middle = timeline_events(subject=ref)[events // 2 - 1]
        cursor = encode_cursor(middle)

        def late_page():
            response = client.get(base, {"after": cursor})
            assert response.status_code == 200 and response.content.count(b'<tr id="event-') == 100

        def export(fmt, **params):
            def run():
                response = client.get(f"{base}.{fmt}", params)
                assert response.status_code == 200, response.status_code
                size = sum(len(chunk) for chunk in response.streaming_content) if response.streaming else len(
                    response.content)
                run.size = size
            run.size = 0
            return run

        first_page()  # warm imports, templates and plans
        page_ms, page_all = _median_ms(first_page, runs, name="page")
        late_ms, _ = _median_ms(late_page, runs, name="late")
        csv_run = export("csv")
        csv_ms, csv_all = _median_ms(csv_run, runs, name="csv")
        json_run = export("json")
        json_ms, _ = _median_ms(json_run, runs, name="json")

        print(f"  (load average when measuring: {', '.join(f'{x:.1f}' for x in os.getloadavg())})")
        print(f"  first page (100 events):         {page_ms:7.1f} ms median (goal < 300), "
              f"{CPU['page']:.0f} ms CPU of this process; runs: {', '.join(f'{t:.0f}' for t in page_all)}")
        print(f"  page after event {events // 2:>6}:        {late_ms:7.1f} ms median, {CPU['late']:.0f} ms CPU")
        print(f"  CSV export, {events} events:     {csv_ms:7.1f} ms median (goal < 2000), {CPU['csv']:.0f} ms CPU, "
              f"{csv_run.size / 1e6:.1f} MB; runs: {', '.join(f'{t:.0f}' for t in csv_all)}")
        print(f"  JSON export, {events} events:    {json_ms:7.1f} ms median, {CPU['json']:.0f} ms CPU, "
              f"{json_run.size / 1e6:.1f} MB")
        small = seeded["others"][0]
        base = f"/audit/subjects/{small.pk}/timeline"
        pdf_run = export("pdf")
        pdf_ms, _ = _median_ms(pdf_run, 1, name="pdf")
        print(f"  PDF export, {events // 40} events:      {pdf_ms:7.0f} ms, {CPU['pdf']:.0f} ms CPU, "
              f"{pdf_run.size / 1e6:.1f} MB")
        if background_pdf:
            _background_pdf(subject=subject, auditor=auditor, events=events)
        if search_rows:
            seconds = _search_seed(rows=search_rows, trial_id=subject.trial_id)
            print(f"  search seed: {search_rows} events in {seconds:.0f} s")
            _search_plans(auditor=auditor, trial_id=subject.trial_id)
    finally:
        from django.db import connections

        connections.close_all()
        if server is not None:
            from config.embedded import stop_postgres

            stop_postgres(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events of the benchmarked subject")
    parser.add_argument("--runs", type=int, default=7, help="runs per measure (the median is reported)")
    parser.add_argument("--search-rows", type=int, default=0,
                        help="then add this many events and print the audit search's query plans")
    parser.add_argument("--background-pdf", action="store_true",
                        help="also time the background PDF of the subject's whole timeline (minutes)")
    args = parser.parse_args()
    main(events=args.events, runs=args.runs, search_rows=args.search_rows, background_pdf=args.background_pdf)
