"""An auditor finds a subject through audit search, opens its timeline and downloads the CSV."""

import csv
import io

import pytest
from django.core.management import call_command
from django.db import transaction
from playwright.sync_api import expect

from audit.chain import chain_head, chain_seal
from audit.models import AuditEvent
from audit.services import audit_record
from trials.models import Subject

from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]




def test_an_auditor_opens_a_subjects_timeline_and_downloads_the_csv(app_server, page):
    call_command("load_demo")
    subject = Subject.objects.get(code="101-0001")
    with transaction.atomic():
        for n in range(130):  # more than one page
            audit_record(actor=None, action="intake.instance_received", target=("intake.instance", n, f"CT {n}"),
                         trial_id=subject.trial_id, site_id=subject.site_id, subject_id=subject.pk,
                         subject_code=subject.code, details={"channel": "cstore", "n": n})
    chain_seal()
    demo_login(page, app_server, "auditor")

    page.goto(f"{app_server.url}/audit/search")
    page.get_by_label("Subject code").fill("101-0001")
    page.get_by_role("button", name="Search").click()
    page.locator("#search-results").get_by_role("link", name="101-0001").first.click()

    expect(page.get_by_role("heading", name="Patient timeline")).to_contain_text("101-0001")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Subject enrolled")
    expect(timeline.locator("tr[id^=event-]")).to_have_count(100)
    page.get_by_role("link", name="Later events").click()  # htmx appends the next page in place
    expect(timeline.locator("tr[id^=event-]")).to_have_count(AuditEvent.objects.filter(
        subject_id=subject.pk).count())

    with page.expect_download() as download_info:
        page.get_by_role("link", name="CSV").click()
    text = open(download_info.value.path(), encoding="utf-8").read()
    lines = text.splitlines()
    meta = dict(line.split(",", 1) for line in lines if line.startswith("#"))
    rows = list(csv.DictReader(io.StringIO("\n".join(line for line in lines if not line.startswith("#")))))
    assert rows[0]["action"] == "trials.subject_enrolled" and len(rows) == 131
    assert meta["# chain_head_hash"] == chain_head()[1] or int(meta["# chain_head_seq"]) <= chain_head()[0]
    assert meta["# verification"].startswith("OK")
    export = AuditEvent.objects.get(action="audit.timeline_exported")
    assert export.actor.username == "auditor" and export.subject_id == subject.pk
    assert meta["# export_event_id"] == str(export.pk)
