"""A QC analyst works the queue in a real browser: opens the study, sees the checks and the thumbnail,
accepts it."""

import datetime

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



@pytest.fixture
def stores(tmp_path, settings):
    settings.STORAGES = {**settings.STORAGES, **{
        name: {"BACKEND": "django.core.files.storage.FileSystemStorage",
               "OPTIONS": {"location": str(tmp_path / name)}} for name in ("quarantine", "archive")}}


def _pending_study(tmp_path) -> ImagingStudy:
    """A CT of demo subject 101-0001 at baseline, uploaded, de-identified and checked."""
    baseline = Visit.objects.get(subject__code="101-0001", timepoint="BL")
    coordinator = get_user_model().objects.get(username="coord101")
    paths = ct_series(tmp_path / "ct", count=6, skip=(4,), BodyPartExamined="CHEST", PatientID="RUH-448812",
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
    assert study.status == ImagingStudy.Status.QC_PENDING and study.acquisition_date == datetime.date(2026, 1, 30)
    return study


def test_an_analyst_opens_the_queue_and_the_study_and_accepts_it(app_server, page, tmp_path, stores):
    call_command("load_demo")
    study = _pending_study(tmp_path)

    demo_login(page, app_server, "qc")
    page.get_by_role("link", name="QC queue").click()

    row = page.locator(f"#qc-study-{study.pk}")
    expect(row).to_contain_text("101-0001")
    expect(row).to_contain_text("failed")  # the skipped slice and the short series
    page.get_by_label("Failed checks only").check()  # htmx re-renders the table in place
    expect(page).to_have_url(f"{app_server.url}/qc/?site=&procedure=&failed=1")
    expect(row).to_be_visible()
    row.get_by_role("link").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("101-0001")
    expect(page.locator('tr[data-rule="missing_slices"]')).to_contain_text("1 missing slice(s)")
    expect(page.locator('tr[data-rule="visit_window"]')).to_contain_text("Pass")
    thumbnail = page.get_by_role("img", name="Series 2 middle image")
    expect(thumbnail).to_be_visible()
    # rendered server-side from the de-identified file: the browser got a real PNG
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    expect(page.get_by_role("button", name="Raise query")).to_be_enabled()  # tests/e2e/test_queries.py uses it
    page.screenshot(path=ARTIFACTS / "qc-study.png", full_page=True)

    page.get_by_label("Note (optional)").fill("gap outside the target lesions; acceptable")
    page.get_by_role("button", name="Accept").click()

    expect(page.get_by_role("heading", name="QC queue")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("accepted")
    expect(page.locator(f"#qc-study-{study.pk}")).to_have_count(0)
    study.refresh_from_db()
    assert study.status == ImagingStudy.Status.ACCEPTED
