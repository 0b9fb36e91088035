"""Timeline PDFs too long for a request: made by a real Celery worker, stored, polled for, downloaded."""

import datetime as dt
import io
import time

import pytest
from django.utils import timezone
from pypdf import PdfReader

from audit import exports
from audit.exports import ExportMeta, paginate, pdf_export_build, pdf_write_paginated
from audit.models import AuditEvent, PdfExport
from audit.services import pdf_export_request
from config import sweeper
from trials.models import Membership

from .conftest import record


@pytest.fixture
def media(tmp_path, settings, monkeypatch):
    """Default storage in this test's own folder, for this process and the worker it starts."""
    root = tmp_path / "media"
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}}
    monkeypatch.setenv("MEDIA_ROOT", str(root))
    return root


def _text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def _request(subject, user, family: str = "") -> PdfExport:
    return pdf_export_request(actor=user, trial_id=subject.trial_id, site_id=subject.site_id, subject_id=subject.pk,
                              subject_code=subject.code, family=family)


def _wait_done(export: PdfExport, timeout: float = 120) -> PdfExport:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        export.refresh_from_db()
        if not export.pending:
            return export
        time.sleep(0.3)
    pytest.fail(f"export still {export.status} after {timeout} s")


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_makes_the_pdf_and_the_page_shows_the_link(client, auditor, history, media, worker,
                                                                monkeypatch):
    monkeypatch.setattr(exports, "PDF_MAX_EVENTS", 2)  # this process's limit: the 4 events go to the worker
    client.force_login(auditor)

    response = client.get(f"/audit/subjects/{history.pk}/timeline.pdf")

    export = PdfExport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/audit/exports/{export.pk}"
    page = client.get(response["Location"]).content.decode()
    assert "Being prepared" in page or "Ready" in page
    export = _wait_done(export)
    assert export.status == PdfExport.Status.READY, export.error

    status = client.get(f"/audit/exports/{export.pk}", HTTP_HX_REQUEST="true").content.decode()
    assert status.lstrip().startswith('<div id="export-status"') and "every 2s" not in status
    assert f'href="/audit/exports/{export.pk}/download"' in status and "Ready: 4 events" in status

    download = client.get(f"/audit/exports/{export.pk}/download")
    pdf = b"".join(download.streaming_content)
    assert download.status_code == 200 and download["Content-Type"] == "application/pdf"
    assert pdf.startswith(b"%PDF") and len(pdf) == export.size
    text = "\n".join(_text(pdf))
    for words in ["Patient timeline 102-0001", "Subject enrolled", "Image received", "Image de-identified",
                  "Study accepted", f"Page 2 of {export.pages}"]:
        assert words in text, words

    event = AuditEvent.objects.get(action="audit.timeline_exported")
    assert event.pk == export.audit_event_id and event.actor == auditor and event.subject_id == history.pk
    assert event.details["format"] == "pdf" and event.details["rows"] == 4
    assert event.details["verification"]["ok"] is True and event.details["chain_head_hash"] in text.replace("\n", "")
    assert event.details["filters"]["pdf_export_id"] == export.pk
    downloaded = AuditEvent.objects.get(action="audit.export_downloaded")
    assert downloaded.actor == auditor and downloaded.details["sha256"] == export.sha256


@pytest.mark.django_db
def test_the_build_is_idempotent(auditor, history, media):
    export = _request(history, auditor)

    first = pdf_export_build(export_id=export.pk)
    assert pdf_export_build(export_id=export.pk) is None  # done: left as it is
    assert first.status == PdfExport.Status.READY and (media / first.storage_key).read_bytes().startswith(b"%PDF")

    # a worker that died after storing: the message comes back, the export is still "running"
    PdfExport.objects.filter(pk=export.pk).update(status=PdfExport.Status.RUNNING)
    again = pdf_export_build(export_id=export.pk)

    assert again.status == PdfExport.Status.READY and again.storage_key == first.storage_key
    assert again.audit_event_id == first.audit_event_id
    assert AuditEvent.objects.filter(action="audit.timeline_exported").count() == 1
    assert len(list((media / "audit-exports" / str(export.pk)).iterdir())) == 1


@pytest.mark.django_db
def test_events_after_the_request_are_not_in_the_file(auditor, history, media):
    export = _request(history, auditor)
    record(actor=None, action="qc.query_raised", subject=history)  # after as_of

    done = pdf_export_build(export_id=export.pk)

    assert done.rows == 4
    assert "Query raised" not in "\n".join(_text((media / done.storage_key).read_bytes()))


@pytest.mark.django_db
def test_every_page_of_a_many_part_pdf_is_numbered_of_the_total(monkeypatch):
    monkeypatch.setattr(exports, "PDF_CHUNK_PAGES", 2)  # parts of 2 pages: this file has several
    rows = [{"id": n, "seq": n, "occurred_at_utc": f"2026-03-02T08:{n % 60:02d}:00.000000+00:00",
             "occurred_at_local": "2026-03-02T09:00:00+01:00", "action": "intake.instance_received",
             "action_words": "Image received", "actor_label": "coord2", "actor_role": "site_coordinator",
             "target_type": "intake.instance", "target_id": str(n), "target_label": f"CT event-{n:04d}",
             "reason": "rescanned after motion artefact" if n % 7 == 0 else "",
             "details": '{"sha256": "' + "ab" * 32 + '"}' + (" x" * 300 if n % 11 == 0 else "")}
            for n in range(130)]
    meta = ExportMeta(title="Patient timeline 102-0001", scope={"site_time_zone": "Europe/Paris"},
                      as_of=timezone.now(), rows=len(rows), chain_head_seq=7, chain_head_hash="c" * 64,
                      verification={"ok": True, "summary": "OK: every sealed event matches its seal"})
    out = io.BytesIO()

    total = pdf_write_paginated(rows=rows, meta=meta, out=out)

    pages = _text(out.getvalue())
    assert total == 1 + len(paginate(rows)) and len(pages) == total and total > 2 * exports.PDF_CHUNK_PAGES
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {total}" in text
    everything = "\n".join(pages)
    assert all(f"CT event-{n:04d}" in everything for n in range(130))  # nothing clipped away


@pytest.mark.django_db
def test_only_the_requester_sees_the_export(client, auditor, trial_manager, sponsor, outsider, history, media):
    export = pdf_export_build(export_id=_request(history, auditor).pk)
    for user in (trial_manager, sponsor, outsider):
        client.force_login(user)
        assert client.get(f"/audit/exports/{export.pk}").status_code == 404
        assert client.get(f"/audit/exports/{export.pk}/download").status_code == 404
    assert not AuditEvent.objects.filter(action="audit.export_downloaded").exists()


@pytest.mark.django_db
def test_a_pending_export_has_no_download_and_polls(client, auditor, history):
    export = _request(history, auditor)
    client.force_login(auditor)
    page = client.get(f"/audit/exports/{export.pk}").content.decode()
    assert "Being prepared" in page and 'hx-trigger="every 2s"' in page
    assert client.get(f"/audit/exports/{export.pk}/download").status_code == 404
    assert client.get("/audit/exports/999999").status_code == 404


@pytest.mark.django_db
def test_an_export_fails_clearly_when_access_was_withdrawn(client, auditor, history, media):
    export = _request(history, auditor)
    Membership.objects.filter(user=auditor).delete()

    failed = pdf_export_build(export_id=export.pk)

    assert failed.status == PdfExport.Status.FAILED and "no longer read" in failed.error
    assert not AuditEvent.objects.filter(action="audit.timeline_exported").exists()


@pytest.mark.django_db
def test_an_export_of_too_many_events_fails_clearly_and_records_nothing(client, auditor, history, media,
                                                                        monkeypatch):
    monkeypatch.setattr(exports, "PDF_BACKGROUND_MAX_EVENTS", 2)
    export = _request(history, auditor)

    failed = pdf_export_build(export_id=export.pk)

    assert failed.status == PdfExport.Status.FAILED and "More than 2 events" in failed.error
    client.force_login(auditor)
    assert "The PDF could not be made: More than 2 events" in client.get(f"/audit/exports/{export.pk}").content.decode()
    assert not AuditEvent.objects.filter(action="audit.timeline_exported").exists()


@pytest.mark.django_db
def test_the_sweeper_finds_an_export_whose_message_was_lost(auditor, history):
    export = _request(history, auditor)
    finder = next(work.find for name, work in sweeper._registry.items() if name == "audit.pdf_exports")
    assert list(finder(timezone.now() - dt.timedelta(minutes=10))) == []
    assert list(finder(timezone.now() + dt.timedelta(seconds=1))) == [export.pk]
