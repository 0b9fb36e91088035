import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from audit.models import AuditEvent
from trials.demo import DEMO_PROTOCOL, DEMO_USERS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MANAGER_PASSWORD = next(password for username, _, _, password in DEMO_USERS if username == "manager")


def test_demo_manager_logs_in_sees_the_trial_and_logs_out(app_server, page):
    call_command("load_demo")

    page.goto(app_server.url)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill("manager")
    page.get_by_label("Password").fill(MANAGER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Your trials")).to_be_visible()
    assert page.evaluate("typeof htmx.ajax") == "function"  # served from node_modules via static files
    page.get_by_role("link", name=DEMO_PROTOCOL).click()
    expect(page.get_by_role("heading", name=re.compile(DEMO_PROTOCOL))).to_be_visible()
    expect(page.get_by_role("cell", name="Klinikum am See")).to_be_visible()
    expect(page.get_by_role("cell", name="Week 6")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert list(AuditEvent.objects.filter(actor_label="manager", action__startswith="auth.").values_list("action", flat=True)) == [
        "auth.login", "auth.logout"]


def test_wrong_password_shows_an_error_and_is_audited(app_server, page):
    call_command("load_demo")

    page.goto(f"{app_server.url}/accounts/login/")
    page.get_by_label("Username").fill("manager")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("did not match")
    assert AuditEvent.objects.filter(action="auth.login_failed", details__username="manager").count() == 1
