"""A trial manager opens the reader agreement page in a real browser, looks at one month through htmx and
downloads the SDTM zip."""

import zipfile

import pytest
from playwright.sync_api import expect

from audit.models import AuditEvent
from reads.sdtm import FILES

from ..reads.conftest import PASSWORD, accept, enroll, reading, reads_charter  # noqa: F401 (fixtures)
from ..reads.test_metrics import seed

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_manager_reads_the_agreement_tables_and_downloads_sdtm(app_server, page, reading, enroll,  # noqa: F811
                                                                 accept):  # noqa: F811
    seed(reading, enroll, accept)

    page.goto(f"{app_server.url}/accounts/login/")
    page.get_by_label("Username").fill("manager")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your trials")).to_be_visible()

    page.goto(f"{app_server.url}/reads/oversight/")
    page.get_by_role("link", name="CL-TEST-001").click()
    expect(page.get_by_role("heading", name="Reader agreement · CL-TEST-001")).to_be_visible()
    pairs = page.locator("#agreement-pairs")
    expect(pairs).to_contain_text("reader1 · reader2")
    expect(pairs).to_contain_text("0.375")
    expect(page.locator("#agreement-readers")).to_contain_text("0.4 (2/5)")

    page.locator("#agreement-drift").get_by_role("link", name="2026-04").click()
    expect(page.get_by_role("heading", name="Month 2026-04")).to_be_visible()
    expect(page.locator("#agreement-pairs")).to_contain_text("75.0%")
    assert page.url.endswith("?period=2026-04")  # htmx pushed the month into the address bar

    with page.expect_download() as info:
        page.get_by_role("button", name="Download SDTM (TU, TR, RS as CSV and XPT)").click()
    download = info.value
    assert download.suggested_filename == "CL-TEST-001-sdtm.zip"
    assert sorted(zipfile.ZipFile(download.path()).namelist()) == sorted(FILES)
    assert AuditEvent.objects.filter(action="reads.sdtm_exported", actor=reading.manager).count() == 1
