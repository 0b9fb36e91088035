"""Viewer benchmark: a 500-slice CT series opened in the QC study page's viewer, in Debian's Chromium.

Run: ``.venv/bin/python bench/viewer.py`` (``--slices N``, ``--size 512``, ``--runs R``) after ``make install``
(the viewer bundle and collectstatic's output are what the browser loads).

Uses a dedicated ``corelab_bench_viewer`` database: created on the server of DATABASE_URL when that is set,
else on an embedded PostgreSQL under ``var/bench``; Redis is REDIS_URL's (or the embedded one). It migrates,
loads the demo trial, writes N synthetic CT slices (``--size``² pixels, 16-bit, a phantom of circles that
changes along z) for demo subject 101-0001 at baseline, files them through intake and de-identifies them into
archive storage under ``var/bench/viewer`` (the first run only: the series is kept for the next), then starts
the app in this process (the same threaded server as the e2e tests) and measures, signed in as the QC analyst:

1. time to first image: from the study page's navigation start to the left viewport's canvas showing the
   first slice (cold: empty header cache and browser cache; then warm, the median of R page loads, each in a
   new browser profile; then a returning reader's: the same profile's third load of the page);
2. how long after the first image the rest of the series is in the viewer's cache (prefetched nearest first);
3. scroll frame rate, from that cache: one step per animation frame through the whole series, as the mouse
   wheel makes them (Cornerstone's stack scroll), counting the frames each pane rendered per second: with the
   right pane following (synchronized scrolling, the default; the slower pane's rate is the figure), then with
   synchronization off (the left pane alone).
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
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop here
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

DATABASE = "corelab_bench_viewer"
STORE = ROOT / "var" / "bench" / "viewer"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

FIRST_IMAGE = """() => new Promise((resolve, reject) => {
  setTimeout(() => reject(new Error('no image after 60 s: ' + document.querySelector('[data-viewer-status]').textContent)), 60000);
  const lit = () => {
    const canvas = document.querySelector('[data-viewport="left"] canvas');
    const viewer = window.corelabViewers && window.corelabViewers[0];
    if (!canvas || !canvas.width || !viewer || !viewer.loaded.left) return false;
    const copy = document.createElement('canvas');
    copy.width = canvas.width; copy.height = canvas.height;
    const ctx = copy.getContext('2d');
    ctx.drawImage(canvas, 0, 0);
    const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
    for (let i = 0; i < data.length; i += 64) if (data[i] > 30) return true;
    return false;
  };
  const poll = () => (lit() ? resolve(performance.now()) : requestAnimationFrame(poll));
  poll();
})"""

SCROLL = """async ({ sync, input, label }) => {
  const viewer = window.corelabViewers[0];
  viewer.sync.setEnabled(sync);
  const vp = viewer.viewport('left');
  const right = viewer.viewport('right');
  const total = vp.getImageIds().length;
  let rendered = 0;
  let followed = 0;
  const count = () => { rendered += 1; };
  const countRight = () => { followed += 1; };
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const channel = new MessageChannel();
  const task = () => new Promise((r) => { channel.port1.onmessage = r; channel.port2.postMessage(0); });
  await vp.setImageIdIndex(0);
  await right.setImageIdIndex(0);
  await frame();
  await frame();
  vp.element.addEventListener('CORNERSTONE_IMAGE_RENDERED', count);
  right.element.addEventListener('CORNERSTONE_IMAGE_RENDERED', countRight);
  performance.mark(`scroll ${label}`);  // --trace: where each scroll starts and ends
  const started = performance.now();
  for (let i = 1; i < total; i += 1) {
    await frame();
    // input: the step arrives between two frames, as an input event's handler (the mouse wheel's) does; else
    // (the earlier method) it is made inside the animation frame callback, so the render it asks for can only
    // come one frame later, by when the next step has replaced the slice: at most every other step is drawn
    if (input) await task();
    vp.scroll(1, true, false);  // what the wheel does (Cornerstone's stack scroll tool)
  }
  for (let n = 0; vp.getCurrentImageIdIndex() !== total - 1 && n < 600; n += 1) await frame();
  await frame();
  const ms = performance.now() - started;
  performance.mark(`scrolled ${label}`);
  vp.element.removeEventListener('CORNERSTONE_IMAGE_RENDERED', count);
  right.element.removeEventListener('CORNERSTONE_IMAGE_RENDERED', countRight);
  viewer.sync.setEnabled(true);
  // the display's own rate: animation frames per second with nothing to do
  let frames = 0;
  const idleStart = performance.now();
  while (performance.now() - idleStart < 1000) { await frame(); frames += 1; }
  return { total, ms, rendered, fps: rendered / (ms / 1000), rightFps: followed / (ms / 1000),
           last: right.getCurrentImageIdIndex(), display: frames / ((performance.now() - idleStart) / 1000) };
}"""

# until every slice of the left pane's series is in the viewer's cache (prefetched after the first image)
CACHED = """() => { const p = window.corelabViewers[0].state().panes.left; return p.cached === p.total; }"""

# what --trace records: the renderer's tasks, script evaluation and compilation, painting, workers
TRACE_CATEGORIES = ["devtools.timeline", "v8", "v8.execute", "blink", "blink.user_timing", "loading", "cc",
                    "disabled-by-default-devtools.timeline", "disabled-by-default-devtools.timeline.frame",
                    "disabled-by-default-v8.cpu_profiler"]

# where the first image's time went: the page, the bundle, the DICOMweb requests (with their transfer sizes)
TIMELINE = r"""() => {
  const out = [];
  const nav = performance.getEntriesByType('navigation')[0];
  out.push(['page', 0, Math.round(nav.responseEnd), nav.transferSize, nav.decodedBodySize]);
  for (const e of performance.getEntriesByType('resource')) {
    const path = new URL(e.name).pathname;
    if (/\/frames\//.test(path)) { if (out.some((row) => row[0].includes('/frames/'))) continue; }
    else if (!/build\/viewer|dicomweb/.test(path)) continue;
    const name = path.replace(/\/studies\/[^/]+/, '/studies/…').replace(/\/series\/[^/]+/, '/series/…')
      .replace(/\/instances\/[^/]+/, '/instances/…').replace(/viewer\.[0-9a-f]+\.js/, 'viewer.js');
    out.push([name, Math.round(e.startTime), Math.round(e.responseEnd), e.transferSize, e.decodedBodySize]);
  }
  return out;
}"""


def _slices(folder: Path, *, count: int, size: int) -> list[Path]:
    """``count`` synthetic CT slices: CT_small's header, a ``size``² 16-bit phantom, 1 mm apart."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    yy, xx = np.mgrid[0:size, 0:size]
    centre = size / 2
    radius = np.hypot(yy - centre, xx - centre)
    paths = []
    for n in range(count):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        body = np.where(radius < size * 0.42, 40, -1000).astype(np.int16)  # soft tissue in air
        lesion = np.hypot(yy - centre * 0.8, xx - centre * (0.7 + 0.4 * n / count)) < size * (0.05 + 0.03 * np.sin(n / 20))
        body[lesion] = 300
        body[np.hypot(yy - centre * 1.2, xx - centre) < size * 0.06] = 900  # bone
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1
        ds.PixelData = body.tobytes()
        ds.PatientID, ds.PatientName = "RUH-448812", "Bench^Phantom"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20260130"
        ds.Modality, ds.BodyPartExamined, ds.SeriesNumber, ds.InstanceNumber = "CT", "CHEST", 2, n + 1
        ds.SeriesDescription = "BENCH PHANTOM"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-180.0, -180.0, -250.0 + n]
        ds.SliceLocation = -250.0 + n
        path = folder / f"CT{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _seed(*, count: int, size: int):
    """The demo trial and one archived study of ``count`` slices (kept between runs)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from deid.services import series_deidentify
    from intake.models import ImagingStudy, Submission
    from intake.services import instance_receive, submission_close, submission_open
    from qc.services import qc_run
    from trials.models import Visit

    if not get_user_model().objects.filter(username="qc").exists():
        call_command("load_demo", verbosity=0)
    existing = (ImagingStudy.objects.filter(subject__code="101-0001", instances__isnull=False,
                                            status=ImagingStudy.Status.QC_PENDING)
                .distinct().order_by("-pk").first())
    if existing is not None and existing.instances.filter(deid_key__gt="").count() == count:
        return existing, 0.0
    started = time.monotonic()
    baseline = Visit.objects.get(subject__code="101-0001", timepoint="BL")
    coordinator = get_user_model().objects.get(username="coord101")
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        paths = _slices(Path(folder), count=count, size=size)
        submission = submission_open(actor=coordinator, site=baseline.subject.site, channel=Submission.Channel.WEB,
                                     subject=baseline.subject, visit=baseline, procedure="CT_CAP",
                                     declared_rescan=existing is not None)
        outcomes = [instance_receive(submission=submission, path=p, name=p.name) for p in paths]
        submission_close(submission=submission)
    study = ImagingStudy.objects.get(pk=outcomes[0].study_id)
    for series in study.series.all():
        series_deidentify(series_id=series.pk)
    qc_run(study_id=study.pk, trigger="deidentified")
    study.refresh_from_db()
    return study, time.monotonic() - started


def _gunicorn():
    """The web server as `make run` starts it, on a free port, with this process's settings; (process, URL)."""
    import socket
    import subprocess
    import urllib.request

    from config.run import web_command

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = STORE / "gunicorn.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    web = subprocess.Popen(web_command(port), cwd=ROOT, env=dict(os.environ), stdout=log.open("wb"),
                           stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2):
                return web, f"http://127.0.0.1:{port}"
        except OSError:
            if web.poll() is not None:
                break
            time.sleep(0.3)
    web.terminate()
    raise SystemExit(f"gunicorn did not answer; see {log}")


def main(*, slices: int, size: int, runs: int, webgl: bool = False, verbose: bool = False,
         trace: Path | None = None, gunicorn: bool = False) -> None:
    server, url = bench_database(DATABASE)
    os.environ["DATABASE_URL"] = url
    os.environ["QUARANTINE_ROOT"], os.environ["ARCHIVE_ROOT"] = str(STORE / "quarantine"), str(STORE / "archive")
    try:
        django_setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.cache import cache
        from django.core.management import call_command
        from django.test.testcases import LiveServerThread
        from playwright.sync_api import sync_playwright

        from reads.dicomweb.selectors import HEADER_CACHE_PREFIX, instance_rows_for_user
        from reads.dicomweb.views import metadata_key
        from reads.dicomweb.warm import study_headers_warm
        from trials.demo import DEMO_USERS

        if not (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
            raise SystemExit("run `make install` first: the viewer bundle comes from collectstatic's output")
        call_command("migrate", verbosity=0)
        study, seeded = _seed(count=slices, size=size)
        print(f"viewer bench: {slices} slices of {size}x{size} (seeded in {seeded:.0f} s), "
              f"study {study.pk}, {os.cpu_count()} CPUs, Chromium {CHROMIUM}"
              f"{' with SwiftShader WebGL' if webgl else ' (no GPU: CPU rendering)'}")
        shas = list(study.instances.values_list("deid_sha256", flat=True))
        qc_user = get_user_model().objects.get(username="qc")

        def empty_caches() -> None:
            """Nothing of the study in Redis: its headers and its series' metadata answers."""
            rows = instance_rows_for_user(user=qc_user, study_uids=[])
            series = {(r.study_uid, r.series_uid) for r in rows if r.study_id == study.pk}
            keys = [metadata_key(instance_rows_for_user(user=qc_user, study_uid=a, series_uid=b)) for a, b in series]
            cache.delete_many([HEADER_CACHE_PREFIX + s for s in shas] + keys)

        if gunicorn:
            web, base = _gunicorn()
        else:
            thread = LiveServerThread("127.0.0.1", static_handler=lambda app: app, port=0)
            thread.daemon = True
            thread.start()
            thread.is_ready.wait()
            if thread.error:
                raise thread.error
            base = f"http://127.0.0.1:{thread.port}"
        print(f"  server: {'gunicorn as make run starts it (2 processes of 4 threads)' if gunicorn else 'threaded, in this process'}")
        password = {u: p for u, _, _, p in DEMO_USERS}["qc"]
        with sync_playwright() as playwright:
            # --webgl: WebGL through SwiftShader (software), else Cornerstone falls back to its CPU renderer
            flags = FLAGS + (["--use-angle=swiftshader", "--enable-unsafe-swiftshader"] if webgl else [])
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
            firsts, scrolls, returning, arriving = [], [], [], []
            for run in range(runs + 2):
                if run == 0:
                    empty_caches()
                    label = "cold (nothing cached)"
                elif run == 1:
                    # what a worker does when de-identification releases the study (reads.dicomweb.warm)
                    empty_caches()
                    started = time.monotonic()
                    counts = study_headers_warm(study_id=study.pk)
                    print(f"  warming after release: {counts['read']} headers and {counts['series']} series' "
                          f"metadata in {time.monotonic() - started:.1f} s (a worker's job, off the page)")
                    label = "first look after release"
                else:
                    label = f"warm run {run - 1}"
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.set_default_timeout(120_000)
                page.goto(f"{base}/accounts/login/")
                page.get_by_label("Username").fill("qc")
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{base}/")
                if trace:
                    trace.mkdir(parents=True, exist_ok=True)
                    browser.start_tracing(page=page, path=str(trace / f"run{run}.json"), categories=TRACE_CATEGORIES)
                response = page.goto(f"{base}/qc/studies/{study.pk}/")
                if response.status != 200:
                    raise SystemExit(f"the QC study page answered {response.status}")
                first_ms = page.evaluate(FIRST_IMAGE)
                timeline = page.evaluate(TIMELINE)
                page.wait_for_function("() => document.querySelector('#corelab-viewer').dataset.state === 'ready'")
                renderer = page.evaluate("() => window.corelabViewers[0].state().renderer")
                # the rest of the series arrives in the background (the viewer prefetches it after the first image)
                page.wait_for_function(CACHED, polling=50)
                cached_ms = page.evaluate("() => performance.now()") - first_ms
                warm = page.evaluate(SCROLL, {"sync": True, "input": True, "label": "synchronized"})
                alone = page.evaluate(SCROLL, {"sync": False, "input": True, "label": "alone"})
                legacy = page.evaluate(SCROLL, {"sync": True, "input": False, "label": "raf"})
                if trace:
                    browser.stop_tracing()
                for scroll in (warm, legacy):
                    if scroll["last"] != scroll["total"] - 1:
                        raise SystemExit(f"the right viewport did not follow: it ended on slice {scroll['last'] + 1}")
                firsts.append(first_ms)
                scrolls.append((cached_ms, warm, alone, legacy))
                print(f"  {label:26s} first image {first_ms:6.0f} ms, whole series cached {cached_ms / 1000:4.1f} s "
                      f"later; scroll {min(warm['fps'], warm['rightFps']):5.1f} fps synchronized (left "
                      f"{warm['fps']:.1f}, right {warm['rightFps']:.1f}), {alone['fps']:5.1f} one viewport, "
                      f"{min(legacy['fps'], legacy['rightFps']):5.1f} stepped in rAF ({warm['total']} slices; "
                      f"display {warm['display']:.0f} Hz; {renderer} rendering)")
                if run >= 2:
                    # a returning reader: the same browser opens the page again (the bundle from its HTTP cache;
                    # from the third load on, Chromium also keeps the bundle's compiled code)
                    for _ in range(2):
                        page.goto(f"{base}/qc/studies/{study.pk}/")
                        again = page.evaluate(FIRST_IMAGE)
                    returning.append(again)
                    # and at once the reader scrolls through, while the series is still arriving
                    page.wait_for_function("() => document.querySelector('#corelab-viewer').dataset.state === 'ready'")
                    early = page.evaluate(SCROLL, {"sync": True, "input": True, "label": "arriving"})
                    arriving.append(early)
                    print(f"  {'':26s} the same browser's third look: first image {again:6.0f} ms; scrolled at once, "
                          f"before the series has arrived: {min(early['fps'], early['rightFps']):4.1f} fps, "
                          f"{early['ms'] / 1000:.1f} s for {early['total']} slices")
                if verbose:
                    for name, start, end, transferred, size in timeline:
                        print(f"      {name[:60]:60s} {start:5d}–{end:5d} ms  {transferred / 1024:8.0f} KiB sent"
                              f" {size / 1024:8.0f} KiB")
                context.close()
            browser.close()
        if gunicorn:
            web.terminate()
            web.wait(timeout=30)
        else:
            thread.terminate()
        repeat = statistics.median(firsts[2:]) if runs else firsts[1]
        print(f"  first image: cold {firsts[0]:.0f} ms, first look after release {firsts[1]:.0f} ms, "
              f"repeat looks median {repeat:.0f} ms (goal < 2000)")
        if returning:
            print(f"  first image in a browser that opened the page before: median {statistics.median(returning):.0f} ms")
        if arriving:
            print(f"  scroll at once after the first image, while the series arrives: "
                  f"{statistics.median(min(s['fps'], s['rightFps']) for s in arriving):.1f} fps (median)")
        print(f"  whole series in the browser {statistics.median(s[0] for s in scrolls) / 1000:.1f} s after the "
              f"first image (median)")
        print(f"  scroll, one slice per display frame, stepped between frames as input arrives: "
              f"{statistics.median(min(s[1]['fps'], s[1]['rightFps']) for s in scrolls):.1f} fps with two "
              f"synchronized viewports (the slower pane), {statistics.median(s[2]['fps'] for s in scrolls):.1f} fps "
              f"one viewport; {statistics.median(min(s[3]['fps'], s[3]['rightFps']) for s in scrolls):.1f} fps "
              f"synchronized with the slice set inside the animation frame "
              f"(display {statistics.median(s[1]['display'] for s in scrolls):.0f} Hz)")
        print(f"  (load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())})")
    finally:
        from django.db import connections

        connections.close_all()
        if server is not None:
            from config.embedded import stop_postgres

            stop_postgres(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3, help="warm page loads after the cold one")
    parser.add_argument("--webgl", action="store_true", help="give headless Chromium software WebGL (SwiftShader)")
    parser.add_argument("--verbose", action="store_true", help="print each first image's requests")
    parser.add_argument("--trace", type=Path, help="write each page load's Chrome trace (chrome://tracing, Perfetto) "
                        "into this folder")
    parser.add_argument("--gunicorn", action="store_true", help="serve the app as `make run` does (gunicorn, two "
                        "processes) instead of the e2e tests' threaded server in this process")
    args = parser.parse_args()
    main(slices=args.slices, size=args.size, runs=args.runs, webgl=args.webgl, verbose=args.verbose, trace=args.trace,
         gunicorn=args.gunicorn)
