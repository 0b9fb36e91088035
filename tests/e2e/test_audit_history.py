"""An auditor opens the field history of a qualification decision from audit search: before, after, why."""

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from trials.models import SiteQualification

from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_auditor_reads_what_a_decision_changed_and_why(app_server, page):
    call_command("load_demo")  # QC approved site 101's phantom scans "within charter limits"
    qualification = SiteQualification.objects.filter(status=SiteQualification.Status.APPROVED).first()
    demo_login(page, app_server, "auditor")

    page.goto(f"{app_server.url}/audit/search")
    page.get_by_label("Action", exact=True).fill("trials.qualification_approved")
    page.get_by_label("Object id").fill(str(qualification.pk))
    page.get_by_role("button", name="Search").click()
    row = page.locator("#search-results tbody tr").first
    expect(row).to_contain_text("Qualification approved")

    row.get_by_text("changes", exact=True).click()  # htmx loads the versions into the disclosure
    versions = row.locator(".history-versions")
    expect(versions).to_contain_text("Reason for change: Phantom acquisition within charter limits.")
    status = versions.locator(".version").last.locator('tr[data-field="status"]')
    expect(status.locator("td.before")).to_have_text("submitted (Submitted for review)")
    expect(status.locator("td.after")).to_have_text("approved (Approved)")
    expect(versions.locator(".version").last).to_contain_text("changed by qc")

    page.goto(f"{app_server.url}/audit/history/trials/sitequalification/{qualification.pk}")
    expect(page.get_by_role("heading", name="Field history")).to_be_visible()
    expect(page.locator(".version")).to_have_count(qualification.history.count())

    # a sponsor viewer may not read the audit trail: the same address is not found
    page.context.clear_cookies()
    demo_login(page, app_server, "sponsor")
    response = page.goto(f"{app_server.url}/audit/history/trials/sitequalification/{qualification.pk}")
    assert response.status == 404
