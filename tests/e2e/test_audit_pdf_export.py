"""An auditor asks for the PDF of a long timeline: "being prepared", then the link, then the file."""

import pytest
from django.core.management import call_command
from django.db import transaction
from playwright.sync_api import expect

from audit import exports
from audit.models import AuditEvent, PdfExport
from audit.services import audit_record
from trials.models import Subject

from .helpers import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def media(tmp_path, settings, monkeypatch):
    """Default storage in this test's folder, for the app server and the worker (started after this)."""
    root = tmp_path / "media"
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}}
    monkeypatch.setenv("MEDIA_ROOT", str(root))
    return root


def test_a_long_timeline_pdf_is_prepared_in_the_background(media, worker, app_server, page, monkeypatch):
    monkeypatch.setattr(exports, "PDF_MAX_EVENTS", 20)  # the app server's limit; the worker makes any size
    call_command("load_demo")
    subject = Subject.objects.get(code="101-0001")
    with transaction.atomic():
        for n in range(40):
            audit_record(actor=None, action="intake.instance_received", target=("intake.instance", n, f"CT {n}"),
                         trial_id=subject.trial_id, site_id=subject.site_id, subject_id=subject.pk,
                         subject_code=subject.code, details={"channel": "cstore", "n": n})
    demo_login(page, app_server, "auditor")

    page.goto(f"{app_server.url}/audit/subjects/{subject.pk}/timeline")
    page.get_by_role("link", name="PDF (inspection binder)").click()

    expect(page.get_by_role("heading", name="Timeline PDF")).to_contain_text("101-0001")
    link = page.get_by_role("link", name="Download the PDF")
    expect(link).to_be_visible(timeout=90_000)  # htmx polls every 2 s until the worker is done
    expect(page.locator("#export-status")).to_contain_text("Ready: 41 events")
    with page.expect_download() as download_info:
        link.click()
    pdf = open(download_info.value.path(), "rb").read()
    export = PdfExport.objects.get()
    assert pdf.startswith(b"%PDF") and len(pdf) == export.size
    assert AuditEvent.objects.filter(action="audit.timeline_exported", actor__username="auditor").count() == 1
    assert AuditEvent.objects.filter(action="audit.export_downloaded", actor__username="auditor").count() == 1

    page.goto(f"{app_server.url}/audit/subjects/{subject.pk}/timeline")  # the timeline lists the export
    expect(page.get_by_role("link", name="(ready)")).to_have_attribute("href", f"/audit/exports/{export.pk}")
