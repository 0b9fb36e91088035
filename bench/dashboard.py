"""Dashboard benchmark: every dashboard page of a trial at scale, as a sponsor viewer sees it.

Run: ``.venv/bin/python bench/dashboard.py`` (``--runs R``; ``--explain`` prints the plans of the panels'
statements that take over 20 ms, page by page).

Uses a dedicated ``corelab_bench_dashboard`` database, dropped and created anew on the server of
DATABASE_URL when that is set, else on an embedded PostgreSQL under ``var/bench``. It migrates, then
bulk-inserts (INSERT ... SELECT over generate_series, one statement per table) one trial with 300
sites, 10,000 subjects enrolled over the last two years, their 40,000 visits (the demo charter's
schedule: BL with CT and MR, W6, W12, W18 with CT), 60,000 studies (45,000 first versions, 15,000
rescans of rejected ones; some acquired after their window), a QC run with two check results and
a decision for each study, 40,000 queries (open, answered, reopened and closed, raised over a
year), and the central review: 12 readers and an adjudicator, two read tasks (slots A and B) for each
timepoint whose scans were all accepted (85 % signed, 8 % in progress), a read per started task (signed
follow-ups carry an overall response; the readers disagree on about one in eight), and adjudications
for about 15 % of the subjects compared. It VACUUM ANALYZEs, then measures in-process through Django's
test client (no HTTP server): the home page (a baseline for how busy the machine is), each dashboard
page (received, qc, sites, reads) with every panel rendered, unfiltered and filtered to 10 sites and
the last 90 days, and a CSV download, the median of R runs after a warm-up, with the page's query
count. Goal: under 500 ms a page (it prints whether that was met; the machine's load average is
printed beside it).
"""

import argparse
import datetime
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

DATABASE = "corelab_bench_dashboard"
SITES, SUBJECTS, FIRST_VERSIONS, RESCANS, QUERIES = 300, 10_000, 45_000, 15_000, 40_000
READERS = 12  # primary readers in the pool (plus one adjudicator)
GOAL_MS = 500






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
    # two read tasks (slots A and B) for each timepoint whose every charter procedure was accepted, created
    # when the last one was; the subject's two readers come from the pool (many reader pairs); 85 % signed
    ("read tasks", """
        INSERT INTO reads_readtask (trial_id, subject_id, visit_id, reader_id, slot, status, scan_date, created_at,
                                    opened_at, signed_at, replaced_reason)
        SELECT %(trial)s, v.subject_id, v.id,
               CASE WHEN k.slot = 'A' THEN (%(readers)s::bigint[])[1 + v.subject_id %% %(nreaders)s]
                    ELSE (%(readers)s::bigint[])[1 + (v.subject_id + 1 + (v.subject_id / %(nreaders)s)
                                                      %% (%(nreaders)s - 1)) %% %(nreaders)s] END,
               k.slot, x.status, v.nominal_date, a.ready,
               CASE WHEN x.status <> 'open' THEN a.ready + interval '1 day' END,
               CASE WHEN x.status = 'signed' THEN a.ready + (2 + abs(hashtext(k.slot || v.id)) %% 20) * interval '1 day'
                    END, ''
        FROM (SELECT st.visit_id, MAX(d.decided_at) AS ready, COUNT(DISTINCT st.procedure) AS procedures
              FROM intake_imagingstudy st JOIN qc_qcdecision d ON d.study_id = st.id
              WHERE st.trial_id = %(trial)s AND st.status = 'accepted' GROUP BY st.visit_id) a
        JOIN trials_visit v ON v.id = a.visit_id AND a.procedures >= jsonb_array_length(v.procedures)
        CROSS JOIN (VALUES ('A'), ('B')) AS k(slot)
        CROSS JOIN LATERAL (SELECT CASE WHEN abs(hashtext(v.id || k.slot)) %% 100 < 85 THEN 'signed'
                                        WHEN abs(hashtext(v.id || k.slot)) %% 100 < 93 THEN 'in_progress'
                                        ELSE 'open' END AS status) AS x"""),
    # a signed read per signed task, a draft per started one; follow-ups carry an overall response, the
    # same for both readers of a timepoint except for about one read in eight
    ("reads", """
        INSERT INTO reads_read (task_id, version, status, lesions, responses, overall, correction_reason, created_at,
                                signed_at, created_by_id)
        SELECT t.id, 1, CASE WHEN t.status = 'signed' THEN 'signed' ELSE 'draft' END, '{}'::jsonb, '{}'::jsonb,
               CASE WHEN v.timepoint = 'BL' OR t.status <> 'signed' THEN ''
                    ELSE (ARRAY['SD', 'SD', 'SD', 'PR', 'PR', 'PD', 'PD', 'CR', 'NE', 'NON-CR/NON-PD'])
                         [1 + CASE WHEN abs(hashtext('d' || t.id)) %% 8 = 0 THEN abs(hashtext('o' || t.id))
                                   ELSE abs(hashtext('o' || v.id)) END %% 10] END,
               '', t.opened_at, t.signed_at, r.user_id
        FROM reads_readtask t JOIN reads_reader r ON r.id = t.reader_id JOIN trials_visit v ON v.id = t.visit_id
        WHERE t.trial_id = %(trial)s AND t.status IN ('signed', 'in_progress')"""),
    # about 15 % of the subjects with a follow-up timepoint both readers signed, one in five still open
    ("adjudications", """
        INSERT INTO reads_adjudication (trial_id, subject_id, status, triggers, reads_a, reads_b, visits,
                                        adjudicator_id, selected, rationale, created_at, resolved_at)
        SELECT %(trial)s, c.subject_id, CASE WHEN c.subject_id %% 5 = 0 THEN 'open' ELSE 'resolved' END,
               '[]'::jsonb, '[]'::jsonb, '[]'::jsonb, '[]'::jsonb,
               CASE WHEN c.subject_id %% 5 <> 0 THEN %(adjudicator)s END,
               CASE WHEN c.subject_id %% 5 = 0 THEN '' WHEN c.subject_id %% 2 = 0 THEN 'A' ELSE 'B' END, '',
               c.completed, CASE WHEN c.subject_id %% 5 <> 0 THEN c.completed + interval '3 days' END
        FROM (SELECT subject_id, MIN(completed) AS completed
              FROM (SELECT t.subject_id, MAX(t.signed_at) AS completed
                    FROM reads_readtask t JOIN trials_visit v ON v.id = t.visit_id
                    WHERE t.trial_id = %(trial)s AND t.status = 'signed' AND v.timepoint <> 'BL'
                    GROUP BY t.subject_id, t.visit_id HAVING COUNT(*) = 2) AS paired
              GROUP BY subject_id) c
        WHERE abs(hashtext('adj' || c.subject_id)) %% 100 < 15"""),
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
    from reads.models import Reader

    readers = []
    for n in range(1, READERS + 2):  # the last one adjudicates
        user = users.create(username=f"bench-reader-{n}")
        Membership.objects.create(user=user, trial=trial, role=Role.READER if n <= READERS else Role.ADJUDICATOR)
        readers.append(Reader.objects.create(trial=trial, user=user, qualifications=["RECIST 1.1"]).pk)
    params = {"trial": trial.pk, "version": version.pk, "analyst": analyst.pk, "today": timezone.localdate(),
              "sites": SITES, "subjects": SUBJECTS, "first_versions": FIRST_VERSIONS, "rescans": RESCANS,
              "queries": QUERIES, "studies": FIRST_VERSIONS + RESCANS,
              "readers": readers[:READERS], "nreaders": READERS, "adjudicator": readers[-1]}
    timings = {}
    with connection.cursor() as cur:
        for name, sql in SEED:
            started = time.monotonic()
            cur.execute(sql, params)
            timings[name] = (cur.rowcount, time.monotonic() - started)
            print(f"    seeded {cur.rowcount:>7} {name} in {timings[name][1]:.1f} s", flush=True)
        for table in ("trials_site", "trials_subject", "trials_visit", "intake_imagingstudy", "qc_qcrun",
                      "qc_checkresult", "qc_qcdecision", "qc_query", "reads_reader", "reads_readtask",
                      "reads_read", "reads_adjudication"):
            cur.execute(f"VACUUM ANALYZE {table}")
    return {"trial": trial, "sponsor": sponsor, "timings": timings}


def _median_ms(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times


def _explain(*, trial, connection, slower_than_ms: float = 20.0) -> None:
    """EXPLAIN ANALYZE every statement the panels of each page run, unfiltered, printing the plans of those
    that took longer than ``slower_than_ms``."""
    from trials import dashboard
    from trials.dashboard import Filters

    for page in dashboard.Page:
        statements: list[tuple] = []

        def keep(execute, sql, params, many, context, statements=statements):
            statements.append((sql, params))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(keep):
            filters = Filters()
            for panel in dashboard.panels_for(page):
                panel.compute(trial=trial, filters=filters)
        for sql, params in statements:
            with connection.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = [row[0] for row in cur.fetchall()]
            took = float(plan[-1].split(":")[1].split()[0]) if plan[-1].startswith("Execution Time") else 0.0
            if took >= slower_than_ms:
                print(f"\n-- {page.value} page, {took:.1f} ms: {' '.join(sql.split())[:100]}")
                print("\n".join(plan))


def main(*, runs: int, explain: bool) -> None:
    server, url = bench_database(DATABASE, fresh=True)
    os.environ["DATABASE_URL"] = url
    try:
        django_setup()
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
              f"{counts['first versions'] + counts['rescans']} studies, {counts['queries']} queries, "
              f"{counts['read tasks']} read tasks, {counts['reads']} reads, {counts['adjudications']} adjudications "
              f"(seeded in {time.monotonic() - started:.1f} s), PostgreSQL {version}, {os.cpu_count()} CPUs, "
              f"{runs} runs each")
        from trials.models import Site

        ten = list(Site.objects.filter(trial=trial).order_by("number").values_list("pk", flat=True)[:10])
        recent = {"from": (timezone.localdate() - datetime.timedelta(days=90)).isoformat(), "site": ten}
        client = Client()
        client.force_login(sponsor)
        failed = False
        for label, path, params in [
                # the machine is shared: a page with no panel, timed in the same run, says how busy it was
                ("baseline: home page", "/", {}),
                ("received", f"/trials/{trial.pk}/dashboards/received/", {}),
                ("qc", f"/trials/{trial.pk}/dashboards/qc/", {}),
                ("sites", f"/trials/{trial.pk}/dashboards/sites/", {}),
                ("reads", f"/trials/{trial.pk}/dashboards/reads/", {}),
                ("received, 10 sites, 90 days", f"/trials/{trial.pk}/dashboards/received/", recent),
                ("qc, 10 sites, 90 days", f"/trials/{trial.pk}/dashboards/qc/", recent),
                ("sites, 10 sites, 90 days", f"/trials/{trial.pk}/dashboards/sites/", recent),
                ("reads, 10 sites, 90 days", f"/trials/{trial.pk}/dashboards/reads/", recent),
                ("heat map CSV", f"/trials/{trial.pk}/dashboards/panels/received-heatmap.csv", {})]:
            def get(path=path, params=params):
                response = client.get(path, params)
                assert response.status_code == 200, (path, response.status_code)
                get.size = len(response.content)
            queries: list[str] = []

            def count(execute, sql, *args, queries=queries):
                queries.append(sql)
                return execute(sql, *args)

            with connection.execute_wrapper(count):
                get()  # warm imports, templates and plans (and count the page's queries)
            median, times = _median_ms(get, runs)
            failed |= median >= GOAL_MS and "CSV" not in label and "baseline" not in label
            print(f"  {label:<30} median {median:7.1f} ms  (min {min(times):.1f}, max {max(times):.1f}; "
                  f"{get.size / 1024:.0f} KiB, {len(queries)} queries)", flush=True)
        if explain:
            _explain(trial=trial, connection=connection)
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
