import datetime
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from intake.models import Submission
from intake.services import instance_receive, submission_close, submission_open
from trials.models import Site
from trials.services import subject_enroll

from ..intake.dicom import make_study
from .conftest import ARTIFACTS
from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OTHER_SITE = "the Patient ID belongs to a subject of another site (102-0001 is not enrolled at this site)"


@pytest.fixture(autouse=True)
def quarantine(settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "quarantine": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "quarantine")}}}



def test_a_coordinator_finds_the_association_with_refusals_and_reads_why(app_server, page, tmp_path):
    call_command("load_demo")
    site101, site102 = Site.objects.get(number="101"), Site.objects.get(number="102")
    subject_enroll(actor=get_user_model().objects.get(username="coord102"), site=site102, code="102-0001",
                   patient_id="CLINIC-7", enrollment_date=datetime.date(2026, 2, 2))
    # site 101's PACS sends one instance nobody is enrolled with and one of site 102's patient
    refused = submission_open(actor=None, site=site101, channel=Submission.Channel.DICOM, calling_ae="RUH_PACS")
    for name, patient_id in (("IM0001.dcm", "UNKNOWN-1"), ("IM0002.dcm", "CLINIC-7")):
        path = make_study(tmp_path / name, patient_id=patient_id, count=1)[0]
        instance_receive(submission=refused, path=path, name=name)
    submission_close(submission=refused)
    clean = submission_open(actor=None, site=site101, channel=Submission.Channel.DICOM, calling_ae="RUH_MR")
    path = make_study(tmp_path / "clean", patient_id="UNKNOWN-2", count=1)[0]
    instance_receive(submission=clean, path=path, name=path.name)
    submission_close(submission=clean)

    demo_login(page, app_server, "coord101")
    page.get_by_role("link", name="Received", exact=True).click()
    expect(page.get_by_role("heading", name="Received", exact=True)).to_be_visible()
    table = page.locator("#submissions-table")
    expect(table.locator(f"#submission-{clean.pk}")).to_contain_text("RUH_MR")
    expect(table.locator(f"#submission-{refused.pk}")).to_have_class("refused")  # highlighted

    # htmx swaps the table in place and the address keeps the filter
    page.get_by_label("With refusals only").check()
    expect(table.locator(f"#submission-{clean.pk}")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/intake/submissions/\?.*refused=on"))
    page.screenshot(path=ARTIFACTS / "submissions-list.png", full_page=True)
    table.get_by_role("link", name=str(refused.pk), exact=True).click()

    expect(page.get_by_role("heading", name=f"Submission {refused.pk}")).to_be_visible()
    row = page.locator("#refused-files").get_by_role("row", name="IM0002.dcm")
    expect(row).to_contain_text(OTHER_SITE)
    expect(page.locator("#submission-studies")).to_contain_text("no enrolled subject matches the Patient ID")
