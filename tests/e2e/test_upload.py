import datetime
import zipfile

import pytest
from django.core.management import call_command
from playwright.sync_api import expect
from pydicom.uid import generate_uid

from intake.models import Instance, Submission
from trials.models import Visit

from ..intake.dicom import make_study
from .conftest import ARTIFACTS
from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# the demo site 101 CT, as registered and qualified (trials.demo)
CT101 = {"Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM Force", "DeviceSerialNumber": "75123",
         "SoftwareVersions": "syngo CT VA50A"}



def test_a_coordinator_uploads_a_folder_a_zip_and_a_stray_file_and_sees_the_results(app_server, page, tmp_path):
    call_command("load_demo")
    baseline = Visit.objects.get(subject__code="101-0001", timepoint="BL")
    # one series: part of it as a folder, part packed in a zip (as sites do send them)
    scans = dict(patient_id="RUH-448812", scanner=CT101, date=datetime.date(2026, 1, 20), study_uid=generate_uid(),
                 series_uid=generate_uid())
    folder = tmp_path / "series"
    make_study(folder, count=3, **scans)
    packed = make_study(tmp_path / "packed", count=2, **scans)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in packed:
            zf.write(path, f"DICOM/{path.name}")
    stray = tmp_path / "notes.txt"
    stray.write_text("site initiation visit minutes")

    demo_login(page, app_server, "coord101")
    page.goto(f"{app_server.url}/upload/")
    # each choice re-renders the form (htmx) with the choices that follow from it
    page.get_by_label("Subject", exact=True).select_option(label="101-0001")
    page.get_by_label("Visit", exact=True).select_option(value=str(baseline.pk))
    page.get_by_label("Procedure", exact=True).select_option(value="CT_CAP")
    page.screenshot(path=ARTIFACTS / "upload-form.png", full_page=True)
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_text("Drop DICOM files, whole folders or .zip archives here")).to_be_visible()

    # the first request is cut off on the network: the browser sends that file again by itself
    attempts = []

    def flaky(route):
        attempts.append(route.request.headers.get("x-file-name"))
        if len(attempts) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/upload/*/files/", flaky)
    page.locator("input[data-pick=folder]").set_input_files(folder)
    page.locator("input[data-pick=files]").set_input_files([archive, stray])

    rows = page.locator(".upload-file")
    expect(rows).to_have_count(5)
    expect(page.locator(".upload-file[data-state=done]")).to_have_count(5, timeout=30_000)
    expect(page.locator(".upload-summary")).to_contain_text("5 of 5 sent")
    expect(page.locator(".upload-summary")).to_contain_text("5 accepted · 0 duplicate · 1 rejected")
    expect(rows.filter(has_text="export.zip")).to_contain_text("2 files: 2 accepted")
    expect(rows.filter(has_text="notes.txt")).to_contain_text("rejected: not a DICOM file")
    assert len(attempts) == 6 and attempts.count(attempts[0]) == 2  # one file went twice, each other once
    page.screenshot(path=ARTIFACTS / "upload-progress.png", full_page=True)

    page.get_by_role("button", name="Finish upload").click()
    results = page.locator("#results")
    expect(results).to_contain_text("5 accepted")
    expect(results).to_contain_text("1 rejected")
    expect(results.get_by_role("row", name="notes.txt")).to_contain_text("not a DICOM file")
    expect(results.locator("table.studies")).to_contain_text("101-0001 · Baseline · CT_CAP")

    submission = Submission.objects.get()
    assert submission.finished_at is not None and page.url.endswith(f"/upload/{submission.pk}/")
    assert Instance.objects.count() == 5
