import re

import pydicom
import pytest
from django.core.management import call_command
from playwright.sync_api import expect
from pydicom.data import get_testdata_file

from audit.models import AuditEvent
from deid.models import DeidProfile

from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_manager_previews_a_sample_then_saves_a_new_version(app_server, page, tmp_path):
    call_command("load_demo")
    sample = tmp_path / "sample.dcm"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "Doe^Jane", "MRN-1001"
    ds.save_as(sample, enforce_file_format=True)
    demo_login(page, app_server, "manager")

    page.get_by_role("link", name="De-identification").click()
    expect(page.get_by_role("heading", name=re.compile("De-identification profile"))).to_be_visible()
    current = page.locator("#current-profile").get_by_role("heading").inner_text()
    version = int(current.rsplit(" ", 1)[1])

    page.get_by_label("Sample DICOM file").set_input_files(sample)
    page.get_by_role("button", name="Preview").click()

    row = page.locator("#preview-table tbody tr").filter(has=page.get_by_role("cell", name="PatientName", exact=True))
    expect(row).to_contain_text("PREVIEW-0001")
    expect(row).to_contain_text("Doe^Jane")  # a trial manager may see quarantine
    expect(page.locator("#preview-verification")).to_have_text("passed")
    assert AuditEvent.objects.filter(action="deid.profile_previewed").count() == 1

    page.get_by_label(re.compile("Retain Institution Identity Option")).check()
    page.get_by_label("Reason for this version").fill("sites' names needed for the charter check")
    page.get_by_role("button", name=f"Save as version {version + 1}").click()

    expect(page.get_by_role("status")).to_contain_text(
        f"Version {version + 1} saved: it switches on Retain Institution Identity Option")
    expect(page.locator("#current-profile").get_by_role("heading")).to_have_text(f"Current: version {version + 1}")
    expect(page.locator(f"#version-{version}")).to_be_visible()
    newest = DeidProfile.objects.order_by("-version").first()
    assert newest.version == version + 1 and "retain_institution_identity" in newest.options
    assert newest.note == "sites' names needed for the charter check"
