"""A QC analyst reviews a file de-identification held for burned-in text, in a real browser: from the site's
PHI query to the study, to the held output with OCR's box drawn over the text, and releases it."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import storages
from django.core.management import call_command
from playwright.sync_api import expect

from deid.models import DeidRecord
from deid.services import series_deidentify
from intake.models import ImagingStudy, Instance, Submission
from intake.services import instance_receive, submission_close, submission_open
from qc.services import query_raise_for_held
from trials.models import Visit

from ..deid.burned_in import burned_in_study
from .conftest import ARTIFACTS
from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stores(tmp_path, settings):
    settings.STORAGES = {**settings.STORAGES, **{
        name: {"BACKEND": "django.core.files.storage.FileSystemStorage",
               "OPTIONS": {"location": str(tmp_path / name)}} for name in ("quarantine", "archive", "default")}}


def _held_capture(tmp_path) -> DeidRecord:
    """A secondary capture of demo subject 101-0001 with a phantom label burned in: uploaded, de-identified,
    held (OCR cannot tell a label from a name; the reviewer can)."""
    baseline = Visit.objects.get(subject__code="101-0001", timepoint="BL")
    coordinator = get_user_model().objects.get(username="coord101")
    paths = burned_in_study(tmp_path / "sc", text="CALIBRATION PHANTOM 7", PatientID="RUH-448812",
                            StudyDate="20260130", SeriesDate="20260130", AcquisitionDate="20260130")
    submission = submission_open(actor=coordinator, site=baseline.subject.site, channel=Submission.Channel.WEB,
                                 subject=baseline.subject, visit=baseline, procedure="CT_CAP")
    outcomes = [instance_receive(submission=submission, path=p, name=p.name) for p in paths]
    submission_close(submission=submission)
    assert {o.outcome for o in outcomes} == {"accepted"}, outcomes
    study = ImagingStudy.objects.get(pk=outcomes[0].study_id)
    for series in study.series.all():
        series_deidentify(series_id=series.pk)
    record = DeidRecord.objects.get(instance__study=study)
    assert record.outcome == "held" and record.text_boxes, record.findings
    return record


def test_an_analyst_sees_the_highlighted_text_and_releases_the_held_file(app_server, page, tmp_path, stores):
    call_command("load_demo")
    record = _held_capture(tmp_path)
    query = query_raise_for_held(record_id=record.pk)  # what the instance_held receiver's task does
    study = record.instance.study

    demo_login(page, app_server, "qc")
    page.goto(f"{app_server.url}/qc/queries/{query.pk}/")
    page.get_by_role("link", name=f"study version {study.version}").click()
    held = page.locator(f"#qc-held-{record.pk}")
    expect(held).to_contain_text("OCR read text")
    held.get_by_role("link", name="Review").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Held file")
    image = page.get_by_role("img", name="Held output, frame 1 of 1")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    boxes = page.locator("rect.held-box")
    expect(boxes).to_have_count(len(record.text_boxes))
    expect(boxes.first).to_be_visible()
    # the boxes sit over the image, where the text was drawn (top band, right of x=40 at 480 px wide)
    shown, first = image.bounding_box(), boxes.first.bounding_box()
    scale = shown["width"] / 480
    assert shown["x"] + 30 * scale <= first["x"] < shown["x"] + shown["width"]
    assert shown["y"] + 15 * scale <= first["y"] <= shown["y"] + 60 * scale
    assert page.locator(f'img[src*="{record.instance.raw_key}"]').count() == 0
    page.screenshot(path=ARTIFACTS / "qc-held-review.png", full_page=True)

    page.get_by_role("button", name="Release: no PHI in the image").click()  # no reason yet: refused in place
    expect(page.locator("#held-decision").get_by_role("alert")).to_contain_text("give a reason")
    page.get_by_label("Reason (recorded in the audit trail)").fill("a phantom calibration label, no patient text")
    page.get_by_role("button", name="Release: no PHI in the image").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("101-0001")
    expect(page.get_by_role("status").first).to_contain_text("Held file released")
    expect(page.locator(f"#qc-held-{record.pk}")).to_contain_text("Released to the archive")
    record.refresh_from_db()
    assert (record.outcome, record.review_reason) == ("released", "a phantom calibration label, no patient text")
    assert storages["archive"].exists(record.output_key)
    assert Instance.objects.get(pk=record.instance_id).status == Instance.Status.DEIDENTIFIED
