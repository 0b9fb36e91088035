import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from trials.models import Site

from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]




def test_a_coordinator_sees_what_is_missing_for_qualification_and_fixes_one_gap(app_server, page):
    call_command("load_demo")
    demo_login(page, app_server, "coord102")

    page.get_by_role("link", name="My site").click()
    expect(page.get_by_role("heading", name="Site 102")).to_be_visible()
    status = page.locator("#qualification-status")
    expect(status.get_by_role("row", name="CT_CAP")).to_contain_text("awaiting review by the core lab")
    expect(status.get_by_role("row", name="MR_BRAIN")).to_contain_text("register a MR scanner")
    expect(page.locator("#training-status")).to_contain_text("training on the current version missing")

    page.get_by_text("Register a scanner").click()
    page.get_by_label("Modality").fill("MR")
    page.get_by_label("Manufacturer").fill("SIEMENS")
    page.get_by_label("Model name").fill("MAGNETOM Vida")
    page.get_by_label("Serial number").fill("175544")
    page.get_by_role("button", name="Register scanner").click()

    # htmx swapped the page section in place: the gap is now the qualification itself
    expect(page.get_by_role("status")).to_contain_text("Scanner registered")
    expect(status.get_by_role("row", name="MR_BRAIN")).not_to_contain_text("register a MR scanner")
    expect(status.get_by_role("row", name="MR_BRAIN")).to_contain_text("request a qualification")
    # site 101 is not this coordinator's: its page does not exist for them
    site101 = Site.objects.get(number="101")
    assert page.request.get(f"{app_server.url}/trials/{site101.trial_id}/sites/{site101.pk}/").status == 404


def test_qc_analyst_approves_a_submitted_qualification(app_server, page):
    call_command("load_demo")
    demo_login(page, app_server, "qc")

    page.get_by_role("link", name="Qualification review").click()
    page.locator("main table a").first.click()
    expect(page.get_by_role("heading", name="Qualification: CT_CAP")).to_be_visible()
    page.get_by_label("Approve").check()
    page.get_by_role("button", name="Record decision").click()
    expect(page.get_by_role("status")).to_contain_text("Qualification approved")
    expect(page.get_by_text("Nothing awaits review.")).to_be_visible()
