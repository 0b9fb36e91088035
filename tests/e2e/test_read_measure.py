"""A reader measures a lesion in the viewer embedded in the read form, in a real Chromium: the length drawn on
the de-identified CT fills the lesion's long axis and the live RECIST panel; the draft keeps the geometry,
so after a reload the same annotation is back on the same slice; signing covers it."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from deid.models import DeidRecord
from deid.services import series_deidentify
from intake.models import ImagingStudy, Submission
from intake.services import instance_receive, submission_close, submission_open
from qc.services import qc_run, study_accept
from reads.models import Read, ReadTask
from reads.services import read_save_draft, read_sign, task_open
from trials.models import Visit

from ..qc.files import ct_series
from ..reads.conftest import pending_study
from .helpers import PASSWORDS, demo_login
from .test_viewer import _archived_study, stores  # noqa: F401  (the archive on disk, and a real 5-slice CT)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STATE = "() => window.corelabViewers[0].state()"
READY = ("() => ['ready', 'empty', 'error'].includes("
         "document.querySelector('#corelab-viewer')?.dataset.state)")


def _baseline_task(tmp_path) -> ReadTask:
    """Subject 101-0001's baseline, its CT archived from real DICOM and every required study accepted at QC."""
    qc = get_user_model().objects.get(username="qc")
    ct = _archived_study(tmp_path)
    study_accept(analyst=qc, study=ct)
    for procedure in ct.visit.procedures:
        if procedure != ct.procedure:
            study_accept(analyst=qc, study=pending_study(ct.subject, ct.visit, procedure))
    return ReadTask.objects.get(subject=ct.subject, visit=ct.visit, slot="A", status__in=ReadTask.LIVE)


def _wait_ready(page):
    page.wait_for_function(READY, timeout=30_000)
    expect(page.locator("#corelab-viewer")).to_have_attribute("data-state", "ready")


def test_a_reader_measures_t1_saves_reloads_and_signs(app_server, page, tmp_path, stores):  # noqa: F811
    call_command("load_demo")
    task = _baseline_task(tmp_path)
    username = task.reader.user.username
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    demo_login(page, app_server, username)
    page.goto(f"{app_server.url}/reads/tasks/{task.pk}")
    page.get_by_role("button", name="Start this read").click()
    _wait_ready(page)
    viewer = page.locator("#corelab-viewer")
    left = viewer.locator('[data-viewport="left"]')
    expect(left.locator("[data-viewport-slice]")).to_have_text("1 / 5")

    # scroll to slice 3, then measure target 1 there
    canvas = left.locator("[data-viewport-canvas]")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 120)
    expect(left.locator("[data-viewport-slice]")).to_have_text("2 / 5")
    page.mouse.wheel(0, 120)
    expect(left.locator("[data-viewport-slice]")).to_have_text("3 / 5")

    page.get_by_label("Target 1 organ", exact=True).fill("LIVER")
    measure = page.get_by_role("button", name="Measure target 1 (length)")
    measure.click()
    expect(measure).to_have_attribute("aria-pressed", "true")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 200, y + 20, steps=10)
    page.mouse.up()

    long_axis = page.get_by_label("Target 1 long axis (mm)", exact=True)
    expect(long_axis).not_to_have_value("")
    mm = float(long_axis.input_value())
    assert 10 < mm < 200
    expect(measure).to_have_attribute("aria-pressed", "false")
    # the live RECIST panel recomputed from the measured value (htmx)
    expect(page.locator("#resp-sum")).to_have_text(f"{mm:g} mm")
    [drawn] = [m for m in page.evaluate(STATE)["measurements"] if m["lesion"] == "row-0"]
    assert (drawn["index"], drawn["label"], drawn["tool"]) == (2, "Target 1", "Length")

    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status").first).to_contain_text("Draft saved")
    geometry = Read.objects.get(task=task, status=Read.Status.DRAFT).lesions["annotations"]["T1"]
    # the de-identified UIDs DICOMweb serves, of the slice drawn on
    record = DeidRecord.objects.select_related("instance__study").get(sop_uid=geometry["sop_uid"], outcome="released")
    assert record.instance.study.visit_id == task.visit_id
    assert (record.study_uid, record.series_uid) == (geometry["study_uid"], geometry["series_uid"])
    assert f"/instances/{geometry['sop_uid']}/frames/1" in drawn["imageId"]
    assert (geometry["tool"], geometry["frame"], geometry["long_mm"], len(geometry["points"])) == ("length", 1, mm, 2)

    # reopening: the same annotation, on the same slice, shown on it
    page.reload()
    _wait_ready(page)
    expect(left.locator("[data-viewport-slice]")).to_have_text("3 / 5")
    state = page.evaluate(STATE)
    [again] = [m for m in state["measurements"] if m["lesion"] == "row-0"]
    assert (again["index"], again["label"], again["imageId"]) == (2, "Target 1", drawn["imageId"])
    assert state["panes"]["left"]["index"] == 2
    page.wait_for_function("() => window.corelabViewers[0].state().measurements"
                           ".some((m) => m.lesion === 'row-0' && m.stats && Object.values(m.stats)[0]?.length)")
    length = page.evaluate("() => Object.values(window.corelabViewers[0].state().measurements"
                           ".find((m) => m.lesion === 'row-0').stats)[0].length")
    assert abs(length - mm) < 0.2  # redrawn from image coordinates: the same length
    expect(page.get_by_label("Target 1 long axis (mm)", exact=True)).to_have_value(f"{mm:g}")

    page.get_by_role("button", name="Sign…").click()
    dialog = page.locator("#read-sign-dialog")
    dialog.get_by_label("Password").fill(PASSWORDS[username])
    dialog.get_by_role("button", name="Sign", exact=True).click()
    expect(page.locator("#read-status")).to_have_text("Signed and locked")
    signed = Read.objects.get(task=task, status=Read.Status.SIGNED)
    assert signed.lesions["annotations"]["T1"] == geometry
    assert errors == []


def _accepted_ct(tmp_path, timepoint: str, day: str) -> ImagingStudy:
    """A real 5-slice CT of 101-0001 at ``timepoint``: uploaded, de-identified, checked and accepted, with the
    timepoint's other required studies accepted too."""
    visit = Visit.objects.get(subject__code="101-0001", timepoint=timepoint)
    coordinator = get_user_model().objects.get(username="coord101")
    qc = get_user_model().objects.get(username="qc")
    paths = ct_series(tmp_path / timepoint, count=5, BodyPartExamined="CHEST", PatientID="RUH-448812",
                      StudyDate=day, SeriesDate=day, AcquisitionDate=day)
    submission = submission_open(actor=coordinator, site=visit.subject.site, channel=Submission.Channel.WEB,
                                 subject=visit.subject, visit=visit, procedure="CT_CAP")
    outcomes = [instance_receive(submission=submission, path=p, name=p.name) for p in paths]
    submission_close(submission=submission)
    study = ImagingStudy.objects.get(pk=outcomes[0].study_id)
    for series in study.series.all():
        series_deidentify(series_id=series.pk)
    qc_run(study_id=study.pk, trigger="deidentified")
    study.refresh_from_db()
    study_accept(analyst=qc, study=study)
    for procedure in visit.procedures:
        if procedure != "CT_CAP":
            study_accept(analyst=qc, study=pending_study(visit.subject, visit, procedure))
    return study


def test_at_follow_up_baseline_and_week_6_side_by_side_go_to_baseline_and_measure(app_server, page, tmp_path,
                                                                                   stores):  # noqa: F811
    call_command("load_demo")
    baseline = _accepted_ct(tmp_path, "BL", "20260130")
    _accepted_ct(tmp_path, "W6", "20260313")
    bl_task = ReadTask.objects.get(subject=baseline.subject, visit__timepoint="BL", slot="A", status__in=ReadTask.LIVE)
    reader = bl_task.reader.user
    # the reader measured T1 at baseline on the 4th slice (as the viewer sorts them: by position)
    records = sorted(DeidRecord.objects.filter(instance__study=baseline, outcome="released")
                     .select_related("instance"), key=lambda r: r.instance.pk)
    fourth = records[3]
    geometry = {"study_uid": fourth.study_uid, "series_uid": fourth.series_uid, "sop_uid": fourth.sop_uid,
                "frame": 1, "tool": "length", "points": [[30, 60], [90, 60]], "long_mm": 30}
    task_open(task=bl_task, user=reader)
    read_save_draft(task=bl_task, user=reader, lesions={
        "targets": [{"id": "T1", "organ": "LIVER", "nodal": False, "mm": 30, "long_axis_mm": 30,
                     "modality": "CT", "slice_thickness_mm": 5}],
        "non_targets": [], "annotations": {"T1": geometry}})
    read_sign(task=bl_task, user=reader, password=PASSWORDS[reader.username])
    w6 = ReadTask.objects.get(subject=baseline.subject, visit__timepoint="W6", slot="A", status__in=ReadTask.LIVE)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    demo_login(page, app_server, reader.username)
    page.goto(f"{app_server.url}/reads/tasks/{w6.pk}")
    page.get_by_role("button", name="Start this read").click()
    _wait_ready(page)
    viewer = page.locator("#corelab-viewer")
    left, right = viewer.locator('[data-viewport="left"]'), viewer.locator('[data-viewport="right"]')
    expect(left.locator("[data-viewport-label]")).to_contain_text("Baseline · Series 2")
    expect(right.locator("[data-viewport-label]")).not_to_contain_text("Baseline")
    expect(left.locator("[data-viewport-slice]")).to_have_text("1 / 5")

    page.get_by_role("button", name="Go to T1 at baseline").click()
    expect(left.locator("[data-viewport-slice]")).to_have_text("4 / 5")
    expect(right.locator("[data-viewport-slice]")).to_have_text("4 / 5")  # synchronized scrolling
    shown = [m for m in page.evaluate(STATE)["measurements"] if m["lesion"] == "baseline:T1"]
    assert [(m["index"], m["locked"]) for m in shown] == [(3, True)]
    assert f"/instances/{fourth.sop_uid}/frames/1" in shown[0]["imageId"]

    page.get_by_role("button", name="Measure T1").click()
    canvas = right.locator("[data-viewport-canvas]")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y, steps=10)
    page.mouse.up()
    diameter = page.get_by_label("T1 diameter (mm)")
    expect(diameter).not_to_have_value("")
    mm = float(diameter.input_value())
    assert 5 < mm < 200
    expect(page.locator("#resp-sum")).to_have_text(f"{mm:g} mm")
    expect(page.locator("#resp-overall")).not_to_be_empty()

    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status").first).to_contain_text("Draft saved")
    saved = Read.objects.get(task=w6, status=Read.Status.DRAFT).lesions["annotations"]["T1"]
    w6_uids = set(DeidRecord.objects.filter(instance__study__visit=w6.visit).values_list("study_uid", flat=True))
    assert saved["study_uid"] in w6_uids and saved["study_uid"] != fourth.study_uid  # measured on week 6
    assert saved["long_mm"] == mm

    # a value typed over the measurement replaces it: the drawing goes, the draft keeps the typed value alone
    # (a signed read and its measurement report never disagree)
    _wait_ready(page)  # the saved draft's page, its measurement restored
    page.wait_for_function("() => window.corelabViewers[0].state().measurements.some((m) => m.lesion === 'T1')")
    expect(page.get_by_role("button", name="Measure T1")).to_be_enabled()  # the form's buttons are wired
    diameter.fill(f"{mm + 3:g}")
    expect(page.locator("[data-viewer-status]")).to_contain_text("T1: typed by hand")
    assert [m for m in page.evaluate(STATE)["measurements"] if m["lesion"] == "T1"] == []
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status").first).to_contain_text("Draft saved")
    typed = Read.objects.get(task=w6, status=Read.Status.DRAFT).lesions
    assert typed["targets"]["T1"] == mm + 3 and "T1" not in typed.get("annotations", {})
    assert errors == []
