"""A QC analyst raises a query from the study page in a real browser; the site's coordinator finds it under
Queries and answers it."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from deid.services import series_deidentify
from intake.models import ImagingStudy, Submission
from intake.services import instance_receive, submission_close, submission_open
from qc.models import Query
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
               "OPTIONS": {"location": str(tmp_path / name)}} for name in ("quarantine", "archive", "default")}}


def _pending_study(tmp_path) -> ImagingStudy:
    """A CT of demo subject 101-0001 at baseline, uploaded, de-identified and checked."""
    baseline = Visit.objects.get(subject__code="101-0001", timepoint="BL")
    coordinator = get_user_model().objects.get(username="coord101")
    paths = ct_series(tmp_path / "ct", count=6, BodyPartExamined="CHEST", PatientID="RUH-448812",
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
    assert study.status == ImagingStudy.Status.QC_PENDING
    return study


def test_an_analyst_raises_a_query_and_the_coordinator_answers_it(app_server, browser, page, tmp_path, stores):
    call_command("load_demo")
    study = _pending_study(tmp_path)

    demo_login(page, app_server, "qc")
    page.goto(f"{app_server.url}/qc/studies/{study.pk}/")
    page.get_by_label("Category").select_option(label="Missing series")
    page.get_by_label("Question for the site").fill("The post-contrast series is missing; please send it.")
    page.get_by_role("button", name="Raise query").click()  # htmx swaps the queries section in place
    expect(page.locator("#qc-queries").get_by_role("status")).to_contain_text("raised; the site has been notified")
    query = Query.objects.get(study=study)
    expect(page.locator("#qc-queries")).to_contain_text(f"Query {query.pk}")

    site = browser.new_context(viewport={"width": 1280, "height": 800})
    coordinator = site.new_page()
    coordinator.set_default_timeout(10_000)
    try:
        demo_login(coordinator, app_server, "coord101")
        coordinator.get_by_role("link", name="Queries").click()
        row = coordinator.locator(f"#qc-query-{query.pk}")
        expect(row).to_contain_text("Missing series")
        expect(row).to_contain_text("101-0001")
        row.get_by_role("link", name=f"Query {query.pk}").click()

        expect(coordinator.locator("#qc-thread")).to_contain_text("post-contrast series is missing")
        coordinator.get_by_label("Answer", exact=True).fill("The series was not acquired; scanner report attached.")
        coordinator.get_by_label("Attachment (optional, up to 20 MB)").first.set_input_files(
            files=[{"name": "scanner-report.txt", "mimeType": "text/plain", "buffer": b"contrast injector fault"}])
        coordinator.get_by_role("button", name="Send answer").click()

        expect(coordinator.locator("#qc-query-status")).to_contain_text("Answered")
        expect(coordinator.locator("#qc-thread")).to_contain_text("scanner report attached")
        expect(coordinator.get_by_role("link", name="scanner-report.txt")).to_be_visible()
        coordinator.screenshot(path=ARTIFACTS / "qc-query-answered.png", full_page=True)
    finally:
        site.close()

    query.refresh_from_db()
    assert query.status == Query.Status.ANSWERED
    assert query.messages.get(kind="answer").attachments.get().name == "scanner-report.txt"
    # QC sees the answer and closes the query
    page.goto(f"{app_server.url}/qc/queries/{query.pk}/")
    expect(page.locator("#qc-thread")).to_contain_text("not acquired")
    page.get_by_role("button", name="Close query").click()
    expect(page.locator("#qc-query-status")).to_contain_text("Closed")
