"""A QC analyst looks at a study's images in the viewer embedded in the QC study page: Cornerstone3D loading
through Corelab's DICOMweb with the session cookie, in a real Chromium."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from deid.services import series_deidentify
from intake.models import ImagingStudy, Submission
from intake.services import instance_receive, submission_close, submission_open
from qc.services import qc_run
from trials.models import Visit

from ..qc.files import ct_series
from .conftest import ARTIFACTS
from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# how much of the left viewport's canvas is not black (0..1)
NON_BLANK = """() => {
  const canvas = document.querySelector('[data-viewport="left"] canvas');
  if (!canvas || !canvas.width) return 0;
  const copy = document.createElement('canvas');
  copy.width = canvas.width; copy.height = canvas.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(canvas, 0, 0);
  const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 30) lit++;
  return lit / (data.length / 4);
}"""
STATE = "() => window.corelabViewers[0].state()"


@pytest.fixture
def stores(tmp_path, settings):
    settings.STORAGES = {**settings.STORAGES, **{
        name: {"BACKEND": "django.core.files.storage.FileSystemStorage",
               "OPTIONS": {"location": str(tmp_path / name)}} for name in ("quarantine", "archive")}}


def _archived_study(tmp_path) -> ImagingStudy:
    """A 5-slice CT of demo subject 101-0001 at baseline, uploaded, de-identified and checked."""
    baseline = Visit.objects.get(subject__code="101-0001", timepoint="BL")
    coordinator = get_user_model().objects.get(username="coord101")
    paths = ct_series(tmp_path / "ct", count=5, BodyPartExamined="CHEST", PatientID="RUH-448812",
                      StudyDate="20260130", SeriesDate="20260130", AcquisitionDate="20260130")
    submission = submission_open(actor=coordinator, site=baseline.subject.site, channel=Submission.Channel.WEB,
                                 subject=baseline.subject, visit=baseline, procedure="CT_CAP")
    outcomes = [instance_receive(submission=submission, path=p, name=p.name) for p in paths]
    submission_close(submission=submission)
    study = ImagingStudy.objects.get(pk=outcomes[0].study_id)
    for series in study.series.all():
        series_deidentify(series_id=series.pk)
    qc_run(study_id=study.pk, trigger="deidentified")
    study.refresh_from_db()
    return study


def test_an_analyst_scrolls_windows_and_measures_in_the_viewer(app_server, page, tmp_path, stores):
    call_command("load_demo")
    study = _archived_study(tmp_path)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and "favicon" not in message.location.get("url", "")
            and errors.append(message.text))

    demo_login(page, app_server, "qc")
    page.goto(f"{app_server.url}/qc/studies/{study.pk}/")

    viewer = page.locator("#corelab-viewer")
    page.wait_for_function("() => ['ready', 'empty', 'error'].includes("
                           "document.querySelector('#corelab-viewer').dataset.state)", timeout=30_000)
    assert errors == []
    expect(viewer).to_have_attribute("data-state", "ready")
    expect(viewer.get_by_role("button", name="Series 2 · CT · 5 images")).to_be_visible()
    page.wait_for_function(f"({NON_BLANK})() > 0.05")  # the first image is on the canvas
    left = viewer.locator('[data-viewport="left"]')
    expect(left.locator("[data-viewport-slice]")).to_have_text("1 / 5")

    # scroll to the next slice with the mouse wheel; the right viewport follows (synchronized)
    canvas = left.locator("[data-viewport-canvas]")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 120)
    expect(left.locator("[data-viewport-slice]")).to_have_text("2 / 5")
    expect(viewer.locator('[data-viewport="right"] [data-viewport-slice]')).to_have_text("2 / 5")
    # the right pane leads as well, and a burst of steps leaves both panes on the same slice
    right_box = viewer.locator('[data-viewport="right"] [data-viewport-canvas]').bounding_box()
    page.mouse.move(right_box["x"] + right_box["width"] / 2, right_box["y"] + right_box["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, 120)
    expect(viewer.locator('[data-viewport="right"] [data-viewport-slice]')).to_have_text("5 / 5")
    expect(left.locator("[data-viewport-slice]")).to_have_text("5 / 5")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -120)
    expect(left.locator("[data-viewport-slice]")).to_have_text("4 / 5")
    expect(viewer.locator('[data-viewport="right"] [data-viewport-slice]')).to_have_text("4 / 5")

    # a window preset: lung is centre -600, width 1500
    viewer.get_by_role("button", name="Lung").click()
    assert page.evaluate(STATE)["panes"]["left"]["voi"] == [-1350, 150]
    viewer.get_by_role("button", name="Soft tissue").click()
    assert page.evaluate(STATE)["panes"]["left"]["voi"] == [-160, 240]

    # a length measurement, drawn with the mouse
    viewer.get_by_role("button", name="Length").click()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 30, steps=8)
    page.mouse.up()
    measurement = viewer.get_by_label("Measurements").locator("li")
    expect(measurement).to_have_count(1)
    expect(measurement).to_contain_text("Length")
    expect(measurement).to_contain_text("mm")
    page.screenshot(path=ARTIFACTS / "viewer.png", full_page=True)
    assert errors == []
