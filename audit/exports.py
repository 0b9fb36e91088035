"""Exports of the audit trail: CSV and JSON streamed, PDF for an inspection binder.

Every export is an audit event of its own, recorded before the first byte is sent, and every file
carries what was true of the chain when it was made: the chain head (seq and hash) and the verification
of the exported events against their own seals (as ``chain.verify_events`` does, in the same single read
that fetches the rows). The rows are those that existed when the export started (``as_of``); the export's
own event is not among them.
"""

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from django.core.files import File
from django.core.files.storage import storages
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils import timezone

from . import services
from .chain import CONTENT_FIELDS, chain_head, link_hash
from .models import AuditEvent, PdfExport
from .selectors import action_words, subject_get_for_auditor, timeline_events
from .services import export_record

CSV_COLUMNS = ["seq", "id", "occurred_at_utc", "occurred_at_local", "actor_label", "actor_role", "action",
               "action_words", "target_type", "target_id", "target_label", "trial_id", "site_id", "subject_code",
               "details", "reason", "ip_address", "hash"]
# an export is read whole (verified before its first byte); beyond this, narrow the selection
EXPORT_MAX_EVENTS = 200_000
# WeasyPrint needs about 8-10 ms of CPU per event here: beyond this, the PDF is made by a Celery task
PDF_MAX_EVENTS = 500
PDF_BACKGROUND_MAX_EVENTS = EXPORT_MAX_EVENTS
# the background PDF is laid out this many pages at a time (flat memory), the parts joined with pypdf
PDF_CHUNK_PAGES = 40
# paginated here, not by WeasyPrint, so that every part knows its page numbers and the total: events are
# packed by an estimate of their height in 10 pt lines, on the safe side (8 pt DejaVu Sans sets about 175
# characters to a line of A4 landscape; counted as 130); a page holds 51 such lines, filled to PAGE_LINES
PAGE_LINES = 48
CHARS_PER_LINE = 130
EVENT_GAP_LINES = 0.8  # padding and rule between events
DETAIL_CHARS = 600
PDF_STORAGE = "default"
ZERO = dt.timedelta(0)

logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)


class ExportTooLarge(Exception):
    """The selection holds more events than one export may."""


@dataclass
class ExportMeta:
    """What the file says about itself: the title line, scope, chain head and verification."""

    title: str
    scope: dict
    as_of: dt.datetime
    rows: int
    chain_head_seq: int
    chain_head_hash: str
    verification: dict
    export_event_id: int | None = None
    exported_by: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"title": self.title, "scope": self.scope, "as_of_utc": self.as_of.isoformat(),
                "rows": self.rows, "exported_by": self.exported_by, "export_event_id": self.export_event_id,
                "chain_head_seq": self.chain_head_seq, "chain_head_hash": self.chain_head_hash,
                "verification": self.verification}


@dataclass
class Snapshot:
    """The exported rows, read once: each checked against its own seal on the way (``chain.link_hash``)."""

    rows: list[dict]
    failed: list[int]
    unsealed: int

    def verification(self) -> dict:
        failed, unsealed = sorted(self.failed), self.unsealed
        summary = (f"FAILED: {len(failed)} event(s) do not match their seal: ids {failed[:20]}" if failed
                   else "OK: every sealed event matches its seal")
        return {"ok": not failed, "failed_event_ids": failed, "unsealed": unsealed,
                "summary": summary + (f"; {unsealed} not yet sealed" if unsealed else "")}


def snapshot(events: QuerySet[AuditEvent], *, tz: dt.tzinfo, limit: int = EXPORT_MAX_EVENTS) -> Snapshot:
    """Read the events in one query, in the queryset's order, verifying each sealed one as
    ``chain.verify_events`` does (recompute its hash from its content and prev_hash)."""
    newest_first = str(events.query.order_by[0]).startswith("-") if events.query.order_by else False
    # the queryset's own WHERE clause on a raw SELECT: the same index scan the page uses, with the row
    # values as PostgreSQL gives them (details as jsonb text, hashed and written without re-encoding)
    query = events.query
    where_sql, params = query.get_compiler(using=events.db).compile(query.where)
    direction = "DESC" if newest_first else "ASC"
    rows, failed, unsealed, known_words = [], [], 0, {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(CONTENT_FIELDS)}, seq, prev_hash, hash FROM audit_auditevent "  # noqa: S608
                       f"WHERE {where_sql or 'TRUE'} ORDER BY occurred_at {direction}, id {direction} LIMIT %s",
                       [*params, limit + 1])
        names = [column.name for column in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            if row["seq"] is None:
                unsealed += 1
            elif link_hash(prev_hash=row["prev_hash"], row=row) != row["hash"]:
                failed.append(row["id"])
            when = row["occurred_at"]
            utc = when if when.utcoffset() == ZERO else when.astimezone(dt.UTC)
            row["occurred_at_utc"] = utc.isoformat(timespec="microseconds")
            row["occurred_at_local"] = when.astimezone(tz).isoformat(timespec="seconds")
            words = known_words.get(row["action"])
            if words is None:
                words = known_words[row["action"]] = action_words(row["action"])
            row["action_words"] = words
            rows.append(row)
    if len(rows) > limit:
        raise ExportTooLarge(f"more than {limit} events: narrow the selection")
    return Snapshot(rows=rows, failed=failed, unsealed=unsealed)


def prepare(*, user, events: QuerySet[AuditEvent], action: str, export_format: str, title: str, scope: dict,
            tz: dt.tzinfo = dt.UTC, trial_id: int | None = None, site_id: int | None = None,
            subject_id: int | None = None, subject_code: str = "", limit: int = EXPORT_MAX_EVENTS
            ) -> tuple[list[dict], ExportMeta]:
    """Fix the rows (as of now), read the chain head, verify, and record the export event.

    Raises ExportTooLarge (recording nothing) when the selection holds more than ``limit`` events.
    """
    as_of = timezone.now()
    head_seq, head_hash = chain_head()
    taken = snapshot(events.filter(occurred_at__lte=as_of), tz=tz, limit=limit)
    verification = taken.verification()
    event = export_record(actor=user, action=action, export_format=export_format, rows=len(taken.rows),
                          chain_head_seq=head_seq, chain_head_hash=head_hash, verification=verification,
                          trial_id=trial_id, site_id=site_id, subject_id=subject_id, subject_code=subject_code,
                          filters=scope)
    meta = ExportMeta(title=title, scope=scope, as_of=as_of, rows=len(taken.rows), chain_head_seq=head_seq,
                      chain_head_hash=head_hash, verification=verification, export_event_id=event.pk,
                      exported_by=user.get_username())
    return taken.rows, meta


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows: Iterable[dict], meta: ExportMeta, *, batch: int = 500) -> Iterator[str]:
    writer = csv.writer(_Echo())
    preamble = [["# title", meta.title], ["# exported_by", meta.exported_by], ["# as_of_utc", meta.as_of.isoformat()],
                ["# scope", json.dumps(meta.scope, sort_keys=True)], ["# rows", meta.rows],
                ["# chain_head_seq", meta.chain_head_seq], ["# chain_head_hash", meta.chain_head_hash],
                ["# verification", meta.verification["summary"]], ["# export_event_id", meta.export_event_id]]
    yield "".join(writer.writerow(line) for line in preamble)
    yield writer.writerow(CSV_COLUMNS)
    chunk = []
    for row in rows:
        chunk.append(writer.writerow([row[name] if row[name] is not None else "" for name in CSV_COLUMNS]))
        if len(chunk) >= batch:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def _json_lines(rows: Iterable[dict], meta: ExportMeta, *, batch: int = 500) -> Iterator[str]:
    yield '{"export": ' + json.dumps(meta.as_dict(), ensure_ascii=False) + ', "events": ['
    first, chunk = True, []
    for row in rows:
        # details is the jsonb text as PostgreSQL gives it: valid JSON, spliced in without re-encoding
        body = json.dumps({name: row[name] for name in CSV_COLUMNS if name != "details"}, ensure_ascii=False,
                          default=str)
        chunk.append(("" if first else ",") + "\n" + body[:-1] + ', "details": ' + (row["details"] or "{}") + "}")
        first = False
        if len(chunk) >= batch:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk) + "\n]}\n"


def csv_response(*, rows: list[dict], meta: ExportMeta, filename: str):
    response = StreamingHttpResponse(_csv_lines(rows, meta), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def json_response(*, rows: list[dict], meta: ExportMeta, filename: str):
    response = StreamingHttpResponse(_json_lines(rows, meta),
                                     content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{filename}.json"'
    return response


def pdf_available() -> bool:
    """Whether WeasyPrint and the system libraries it loads (Pango, HarfBuzz) are there."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def pdf_bytes(*, rows: list[dict], meta: ExportMeta, context: dict | None = None) -> bytes:
    """A paginated PDF (WeasyPrint): title block with chain head and verification, then one block per event,
    each page headed with the title and numbered "page N of M"."""
    from weasyprint import HTML  # imported here: only PDF exports pay for loading it

    html = render_to_string("audit/timeline_pdf.html", {"meta": meta, "rows": rows, **(context or {})})
    return HTML(string=html).write_pdf()


def pdf_response(*, rows: list[dict], meta: ExportMeta, filename: str, context: dict | None = None) -> HttpResponse:
    response = HttpResponse(pdf_bytes(rows=rows, meta=meta, context=context),
                            content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}.pdf"'
    return response


# -- large PDFs: paginated here, laid out a chunk of pages at a time, written to storage by a task ----------

def _lines(text: str) -> int:
    return max(1, -(-len(text) // CHARS_PER_LINE))


def _event_lines(row: dict) -> int:
    """An over-estimate of the 10 pt lines one event takes (timeline_pdf_pages.html's three parts)."""
    head = 90 + len(str(row.get("seq") or "")) + len(str(row["id"]))
    what = (len(row["action_words"]) + len(row["action"]) + len(row["actor_label"] or "system")
            + len(row["actor_role"] or "") + len(row["target_label"] or "") + len(row["target_type"] or "")
            + len(row["target_id"] or "") + 20)
    rest = min(len(row["reason"] or ""), DETAIL_CHARS + 1) + min(len(row["details"] or ""), DETAIL_CHARS + 1) + 12
    return _lines("x" * head) + _lines("x" * what) + _lines("x" * rest)


def paginate(rows: list[dict], *, page_lines: float = PAGE_LINES) -> list[list[dict]]:
    """Events grouped into pages of the PDF, in order; each page's estimated height fits ``page_lines``."""
    pages, page, used = [], [], 0.0
    for row in rows:
        cost = _event_lines(row) + EVENT_GAP_LINES
        if page and used + cost > page_lines:
            pages.append(page)
            page, used = [], 0.0
        page.append(row)
        used += cost
    if page:
        pages.append(page)
    return pages


def pdf_write_paginated(*, rows: list[dict], meta: ExportMeta, out: BinaryIO, context: dict | None = None) -> int:
    """Write the PDF of any number of events to ``out``: a cover page (title, chain head, verification),
    then the events, every page headed and numbered "page N of M". Returns M.

    Memory stays flat: WeasyPrint lays out PDF_CHUNK_PAGES pages at a time and each part is appended to
    the file with pypdf; the page counter of each part starts where the previous one stopped.
    """
    from pypdf import PdfWriter
    from weasyprint import HTML

    pages = paginate(rows)
    total = 1 + len(pages)
    writer = PdfWriter()
    for start in range(0, max(len(pages), 1), PDF_CHUNK_PAGES):
        chunk = pages[start:start + PDF_CHUNK_PAGES]
        html = render_to_string("audit/timeline_pdf_pages.html", {
            "meta": meta, "pages": chunk, "cover": start == 0, "first_page": 1 if start == 0 else start + 2,
            "total_pages": total, "detail_chars": DETAIL_CHARS, **(context or {})})
        writer.append(io.BytesIO(HTML(string=html).write_pdf()))
    writer.add_metadata({"/Title": meta.title, "/Author": f"Corelab audit export {meta.export_event_id}"})
    writer.write(out)
    return total


def pdf_export_build(*, export_id: int) -> PdfExport | None:
    """Make one queued timeline PDF and store it; idempotent (a finished export is left as it is).

    The rows are the subject's events up to the export's ``as_of`` (when it was asked for), so a
    redelivered task makes the same file; the export's audit event is recorded once, on the first run.
    """
    export = services.pdf_export_start(export_id=export_id)
    if export is None:
        return None
    try:
        subject = subject_get_for_auditor(user=export.requested_by, subject_id=export.subject_id)
    except Http404:
        return services.pdf_export_fail(export_id=export.pk,
                                        error="You may no longer read this subject's audit trail.")
    events = timeline_events(subject=subject, family=export.family).filter(occurred_at__lte=export.as_of)
    try:
        taken = snapshot(events, tz=subject.tz, limit=PDF_BACKGROUND_MAX_EVENTS)
    except ExportTooLarge:
        return services.pdf_export_fail(
            export_id=export.pk, error=f"More than {PDF_BACKGROUND_MAX_EVENTS} events: filter the timeline by "
                                       "a family of actions, or export it as CSV or JSON.")
    scope = {"subject_id": subject.id, "subject_code": subject.code, "trial": subject.trial_label,
             "site": subject.site_label, "site_time_zone": subject.time_zone, "family": export.family,
             "pdf_export_id": export.pk}
    if export.audit_event_id is None:
        head_seq, head_hash = chain_head()
        event = services.pdf_export_event_record(export=export, rows=len(taken.rows), chain_head_seq=head_seq,
                                                 chain_head_hash=head_hash, verification=taken.verification(),
                                                 scope=scope)
    else:
        event = export.audit_event
    meta = ExportMeta(title=f"Patient timeline {subject.code} ({subject.trial_label}, {subject.site_label})",
                      scope=scope, as_of=export.as_of, rows=len(taken.rows),
                      chain_head_seq=event.details["chain_head_seq"], chain_head_hash=event.details["chain_head_hash"],
                      verification=event.details["verification"], export_event_id=event.pk,
                      exported_by=export.requested_by.get_username())
    storage = storages[PDF_STORAGE]
    name = f"timeline-{subject.trial_label}-{subject.code}-{export.as_of:%Y%m%dT%H%M%SZ}".replace(" ", "_")
    key = f"audit-exports/{export.pk}/{name}.pdf"
    with tempfile.TemporaryFile() as out:
        pages = pdf_write_paginated(rows=taken.rows, meta=meta, out=out, context={"subject": subject})
        size, digest = out.tell(), hashlib.sha256()
        out.seek(0)
        for block in iter(lambda: out.read(1 << 20), b""):
            digest.update(block)
        out.seek(0)
        if storage.exists(key):  # a run that died after storing: same rows, same name
            storage.delete(key)
        stored = storage.save(key, File(out, name=key))
    return services.pdf_export_finish(export_id=export.pk, storage_key=stored, size=size,
                                      sha256=digest.hexdigest(), pages=pages)
