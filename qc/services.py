"""Every QC write: automated runs, and the analyst's accept or reject. Each one audited.

``qc_run`` is the system's act (Celery, the sweeper); ``study_accept`` and ``study_reject`` are a QC
analyst's (Perm.QC_REVIEW on the study's trial). Queries: QC raises, closes and reopens them; the site's
coordinators (their own site only) answer; both sides write in the thread and attach files. A beat task
marks overdue queries and escalates each once by e-mail; another (off unless QC_AUTO_MISSING_QUERIES)
raises queries for timepoints whose window closed with nothing received.
"""

import datetime
import hashlib
import logging
import secrets

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record
from deid.models import DeidRecord
from intake.models import ImagingStudy
from intake.selectors import NOT_RECEIVED
from intake.services import STUDY_TRANSITIONS, study_transition
from trials.models import Membership, Role, Subject, Visit
from trials.permissions import Perm, ensure, has_perm
from trials.services import site_notify

from .checks import run_checks
from .context import instances_digest, protocol_version_for, series_metadata, study_context
from .exceptions import QcError, QueryStateError, StudyAlreadyDecided
from .models import CheckResult, QcDecision, QcRun, Query, QueryAttachment, QueryMessage

log = logging.getLogger(__name__)

S = ImagingStudy.Status
# a study is checked once de-identified, and again while it waits for review (more instances arrived)
RUNNABLE = (S.DEIDENTIFIED, S.QC_PENDING)


def _study_where(study: ImagingStudy) -> dict:
    return {"trial_id": study.trial_id, "site_id": study.site_id, "subject_id": study.subject_id,
            "subject_code": study.subject.code if study.subject_id else ""}


def qc_run(*, study_id: int, trigger: str) -> QcRun | None:
    """Run every registered check on a de-identified study, store the results, and queue it for review.

    Idempotent: the same instances under the same charter version give back the existing run (a study that
    gained instances since gets a new one; the latest run is the one shown). Returns None when the study is
    not (or no longer) de-identified: de-identifying, decided or superseded studies are not checked. Files
    are read outside any transaction; the results and the move to QC pending are written in one.
    """
    study = (ImagingStudy.objects.select_related("subject", "visit__protocol_version", "qualification")
             .filter(pk=study_id).first())
    if study is None or study.status not in RUNNABLE:
        return None
    version = protocol_version_for(study)
    digest, count = instances_digest(study)
    existing = QcRun.objects.filter(study=study, instances_digest=digest, protocol_version=version).first()
    if existing is None:
        started = timezone.now()
        ctx = study_context(study, version)
        findings = run_checks(ctx)
        metadata = series_metadata(ctx)
    with transaction.atomic():
        locked = ImagingStudy.objects.select_for_update().get(pk=study.pk)
        if locked.status not in RUNNABLE or instances_digest(locked)[0] != digest:
            return None  # moved on meanwhile: the event that moved it brings its own run
        if existing is None:
            try:
                with transaction.atomic():
                    existing = _run_store(study=locked, version=version, trigger=trigger, digest=digest,
                                          count=count, started=started, findings=findings, metadata=metadata)
            except IntegrityError:  # a concurrent run of the same content got there first
                existing = QcRun.objects.get(study=locked, instances_digest=digest, protocol_version=version)
        if locked.status == S.DEIDENTIFIED:
            study_transition(actor=None, study=locked, to=S.QC_PENDING,
                             reason=f"automated QC: {existing.failed} failed, {existing.warned} warning(s)",
                             details={"qc_run": existing.pk})
    return existing


def _run_store(*, study, version, trigger, digest, count, started, findings, metadata) -> QcRun:
    counts = {outcome: sum(1 for f in findings if f.outcome == outcome) for outcome in ("pass", "fail", "warn")}
    label = version.label if version else ""
    run = QcRun.objects.create(
        study=study, protocol_version=version, charter_version=label, trigger=trigger, instance_count=count,
        instances_digest=digest, passed=counts["pass"], failed=counts["fail"], warned=counts["warn"],
        series_metadata=metadata, started_at=started, finished_at=timezone.now())
    CheckResult.objects.bulk_create([
        CheckResult(run=run, rule=f.rule, series_id=f.series_id, expected=f.expected[:300], measured=f.measured[:300],
                    outcome=f.outcome, message=f.message, charter_version=label) for f in findings])
    audit_record(actor=None, action="qc.run_completed", target=run, **_study_where(study),
                 details={"study": study.pk, "trigger": trigger, "charter_version": label,
                          "protocol_version": version.pk if version else None, "instances": count,
                          "passed": counts["pass"], "failed": counts["fail"], "warned": counts["warn"],
                          "failed_rules": sorted({f.rule for f in findings if f.outcome == "fail"})})
    return run


def _locked_for_decision(*, analyst, study: ImagingStudy) -> ImagingStudy:
    """The study, row-locked until commit, still awaiting review: a second analyst waits here, then is told."""
    ensure(user=analyst, perm=Perm.QC_REVIEW, trial_id=study.trial_id)
    locked = ImagingStudy.objects.select_for_update(of=("self",)).select_related("subject", "visit", "site").get(
        pk=study.pk)
    if locked.status != S.QC_PENDING:
        decision = QcDecision.objects.filter(study=locked).select_related("analyst").first()
        if decision is not None:
            raise StudyAlreadyDecided(
                f"this study was already {decision.get_decision_display().lower()} by "
                f"{decision.analyst.get_username()} at {decision.decided_at:%Y-%m-%d %H:%M} UTC")
        raise StudyAlreadyDecided(f"this study is {locked.get_status_display().lower()}, not awaiting QC")
    return locked


def _earlier_versions(study: ImagingStudy):
    if study.subject_id is None:
        return ImagingStudy.objects.none()
    return (ImagingStudy.objects.select_for_update().filter(
        subject_id=study.subject_id, visit_id=study.visit_id, procedure=study.procedure, version__lt=study.version)
        .exclude(status=S.SUPERSEDED).order_by("version"))


@transaction.atomic
def study_accept(*, analyst, study: ImagingStudy, note: str = "") -> ImagingStudy:
    """Accept a study awaiting QC: it becomes the authoritative version for its subject/visit/procedure and
    every earlier version still standing is marked superseded (kept, never deleted). QC analysts only;
    a study decided meanwhile raises StudyAlreadyDecided."""
    study = _locked_for_decision(analyst=analyst, study=study)
    note = (note or "").strip()
    superseded = []
    for old in _earlier_versions(study):
        reason = f"version {study.version} accepted at QC"
        if S.SUPERSEDED in STUDY_TRANSITIONS[old.status]:
            study_transition(actor=analyst, study=old, to=S.SUPERSEDED, reason=reason)
        else:
            # a version still in intake, de-identification or QC: the status machine only closes decided
            # ones, but an accepted rescan outranks it all the same
            before = old.status
            old.status, old.status_changed_at = S.SUPERSEDED, timezone.now()
            old._change_reason = reason
            old.save(update_fields=["status", "status_changed_at"])
            audit_record(actor=analyst, action="qc.study_superseded", target=old, reason=reason,
                         details={"from": before, "by": study.pk}, **_study_where(old))
        superseded.append(old.pk)
    run = QcRun.objects.filter(study=study).order_by("-started_at", "-pk").first()
    study = study_transition(actor=analyst, study=study, to=S.ACCEPTED, reason=note or "accepted at QC",
                             details={"superseded": superseded})
    decision = QcDecision.objects.create(study=study, run=run, analyst=analyst,
                                         decision=QcDecision.Decision.ACCEPT, reason=note, superseded=superseded)
    audit_record(actor=analyst, action="qc.study_accepted", target=study, reason=note or None,
                 details={"decision": decision.pk, "qc_run": run.pk if run else None, "superseded": superseded,
                          "version": study.version}, **_study_where(study))
    return study


@transaction.atomic
def study_reject(*, analyst, study: ImagingStudy, reason: str) -> ImagingStudy:
    """Reject a study awaiting QC with a reason; the site's coordinators are notified (page and e-mail).
    QC analysts only; a study decided meanwhile raises StudyAlreadyDecided."""
    reason = (reason or "").strip()
    if not reason:
        raise QcError("say why the study is rejected: the site reads it")
    study = _locked_for_decision(analyst=analyst, study=study)
    run = QcRun.objects.filter(study=study).order_by("-started_at", "-pk").first()
    study = study_transition(actor=analyst, study=study, to=S.REJECTED, reason=reason)
    decision = QcDecision.objects.create(study=study, run=run, analyst=analyst,
                                         decision=QcDecision.Decision.REJECT, reason=reason)
    what = (f"{study.subject.code if study.subject_id else 'study'} "
            f"{study.visit.label if study.visit_id else ''} {study.procedure} (version {study.version})")
    site_notify(site=study.site, actor=analyst, subject=f"Study rejected at QC: {' '.join(what.split())}",
                body=f"{' '.join(what.split())} was rejected at quality control.\n\nReason: {reason}\n\n"
                     "Send a rescan (a new upload for the same visit and procedure) if the protocol allows one.")
    audit_record(actor=analyst, action="qc.study_rejected", target=study, reason=reason,
                 details={"decision": decision.pk, "qc_run": run.pk if run else None, "version": study.version},
                 **_study_where(study))
    return study


# -- queries --------------------------------------------------------------------------------------------

Q_ = Query.Status
QUERY_DUE_DAYS = 7  # a due date left blank: a week from today
ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024


def attachment_limit() -> int:
    """Bytes an attachment may have (QC_QUERY_ATTACHMENT_MAX_BYTES, 20 MiB unless set)."""
    return getattr(settings, "QC_QUERY_ATTACHMENT_MAX_BYTES", ATTACHMENT_MAX_BYTES)


def _query_where(query: Query) -> dict:
    return {"trial_id": query.trial_id, "site_id": query.site_id, "subject_id": query.subject_id,
            "subject_code": query.subject.code if query.subject_id else ""}


def query_side(*, user, query: Query) -> str:
    """Which side of the conversation the user writes for: "qc" (QC analysts of the trial) or "site"
    (coordinators of the query's site). Anyone else: PermissionDenied."""
    if user is not None and has_perm(user=user, perm=Perm.QC_REVIEW, trial_id=query.trial_id):
        return QueryMessage.Side.QC
    if user is not None and has_perm(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=query.trial_id,
                                     site_id=query.site_id):
        return QueryMessage.Side.SITE
    raise PermissionDenied(f"{user} takes no part in query {query.pk}")


def query_describe(query: Query) -> str:
    """Subject, visit and procedure (and study version) the query is about, for notices and e-mails."""
    parts = [query.subject.code if query.subject_id else "", query.visit.label if query.visit_id else "",
             query.procedure]
    if query.study_id:
        parts.append(f"(version {query.study.version})")
    return " ".join(p for p in parts if p) or f"site {query.site.number}"


def _locked(query: Query) -> Query:
    return (Query.objects.select_for_update(of=("self",)).select_related("trial", "site", "subject", "visit", "study")
            .get(pk=query.pk))


@transaction.atomic
def query_raise(*, analyst, category: str, text: str, study: ImagingStudy | None = None,
                subject: Subject | None = None, visit: Visit | None = None, procedure: str = "",
                due_date: datetime.date | None = None, automatic: bool = False) -> Query:
    """Raise a query to a study's site (or about a subject's visit when no study arrived) and notify the
    site's coordinators. QC analysts of the trial; ``analyst`` None is the system (missing timepoints)."""
    text = (text or "").strip()
    if not text:
        raise QcError("say what the site should look at: the query needs a text")
    if category not in Query.Category.values:
        raise QcError(f"unknown category {category!r}")
    if study is not None:
        trial_id, site, subject, visit = study.trial_id, study.site, study.subject, study.visit
        procedure = study.procedure
    elif subject is not None:
        if visit is not None and visit.subject_id != subject.pk:
            raise QcError("that visit belongs to another subject")
        trial_id, site = subject.trial_id, subject.site
    else:
        raise QcError("a query is about a study, or a subject (and visit) when the study is missing")
    ensure(user=analyst, perm=Perm.QC_REVIEW, trial_id=trial_id)
    today = timezone.localdate()
    due_date = due_date or today + datetime.timedelta(days=QUERY_DUE_DAYS)
    if due_date < today:
        raise QcError("the due date is in the past")
    query = Query.objects.create(trial_id=trial_id, site=site, study=study, subject=subject, visit=visit,
                                 procedure=procedure or "", category=category, text=text, due_date=due_date,
                                 raised_by=analyst, raised_at=timezone.now(), automatic=automatic)
    QueryMessage.objects.create(query=query, author=analyst, text=text,
                                side=QueryMessage.Side.QC if analyst else QueryMessage.Side.SYSTEM)
    what = query_describe(query)
    site_notify(site=site, actor=analyst, subject=f"QC query: {query.get_category_display()} · {what}",
                body=f"Quality control raised a query about {what} ({query.get_category_display()}).\n\n{text}\n\n"
                     f"Please answer by {due_date:%Y-%m-%d} on the Queries page (query {query.pk}).")
    audit_record(actor=analyst, action="qc.query_raised", target=query, **_query_where(query),
                 details={"category": category, "study": study.pk if study else None,
                          "visit": visit.pk if visit else None, "procedure": query.procedure,
                          "due_date": due_date.isoformat(), "automatic": automatic})
    return query


@transaction.atomic
def query_message_add(*, author, query: Query, text: str, files=()) -> QueryMessage:
    """Add a message (and any files) to the thread. QC analysts of the trial, or coordinators of the query's
    own site; a closed query takes no messages (reopen it first). A QC message notifies the site."""
    query = _locked(query)
    side = query_side(user=author, query=query)
    text = (text or "").strip()
    if not text and not files:
        raise QcError("the message is empty")
    if query.status == Q_.CLOSED:
        raise QueryStateError("this query is closed: QC reopens it to continue the conversation")
    message = QueryMessage.objects.create(query=query, author=author, side=side, text=text)
    for upload in files:
        query_attachment_add(author=author, query=query, upload=upload, message=message)
    if side == QueryMessage.Side.QC:
        site_notify(site=query.site, actor=author, subject=f"QC query {query.pk}: new message",
                    body=f"QC wrote on the query about {query_describe(query)}:\n\n{text}")
    audit_record(actor=author, action="qc.query_message_added", target=query, **_query_where(query),
                 details={"message": message.pk, "side": side, "text": text})
    return message


def _sha256(upload) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    for chunk in upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b""):
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


@transaction.atomic
def query_attachment_add(*, author, query: Query, upload, message: QueryMessage | None = None) -> QueryAttachment:
    """Store a file on the query (default store, under a random key; the size limit holds) with its sha256.
    Either side of the query; not on a closed query."""
    query = _locked(query)
    side = query_side(user=author, query=query)
    if query.status == Q_.CLOSED:
        raise QueryStateError("this query is closed: QC reopens it to add files")
    limit = attachment_limit()
    size = upload.size
    if size > limit:
        raise QcError(f"{upload.name} is {size} bytes; attachments are limited to {limit} bytes")
    if size == 0:
        raise QcError(f"{upload.name} is empty")
    sha256 = _sha256(upload)
    # the key says nothing of the query's content and cannot be guessed; the upload's name is only shown
    key = default_storage.save(f"qc/queries/{query.pk}/{secrets.token_urlsafe(24)}", upload)
    attachment = QueryAttachment.objects.create(
        query=query, message=message, uploaded_by=author, name=(upload.name or "attachment")[-200:],
        content_type=(getattr(upload, "content_type", "") or "")[:100], key=key, size=size, sha256=sha256)
    audit_record(actor=author, action="qc.query_attachment_added", target=query, **_query_where(query),
                 details={"attachment": attachment.pk, "name": attachment.name, "size": size, "sha256": sha256,
                          "side": side})
    return attachment


@transaction.atomic
def query_attachment_open(*, user, attachment: QueryAttachment):
    """Open an attachment for download, recording who fetched it. Either side of its query."""
    query = attachment.query
    query_side(user=user, query=query)
    audit_record(actor=user, action="qc.query_attachment_downloaded", target=query, **_query_where(query),
                 details={"attachment": attachment.pk, "name": attachment.name, "sha256": attachment.sha256})
    return default_storage.open(attachment.key, "rb")


def _rescan_ok(query: Query, rescan: ImagingStudy) -> None:
    if query.subject_id is None or query.visit_id is None:
        raise QcError("this query names no visit, so no rescan can be linked to it")
    same = (rescan.trial_id == query.trial_id and rescan.site_id == query.site_id
            and rescan.subject_id == query.subject_id and rescan.visit_id == query.visit_id
            and (not query.procedure or rescan.procedure == query.procedure))
    if not same:
        raise QcError("the rescan must be of the same subject, visit and procedure as the query")
    if rescan.pk == query.study_id or rescan.created_at < query.raised_at:
        raise QcError("link a study uploaded after the query was raised")


@transaction.atomic
def query_answer(*, coordinator, query: Query, text: str, rescan: ImagingStudy | None = None,
                 files=()) -> Query:
    """The site answers an open (or reopened) query, optionally linking a rescan: a study of the same
    subject, visit and procedure uploaded after the query was raised. Coordinators of the query's site only."""
    query = _locked(query)
    if query_side(user=coordinator, query=query) != QueryMessage.Side.SITE:
        raise PermissionDenied("only the site's coordinators answer a query")
    text = (text or "").strip()
    if not text:
        raise QcError("the answer is empty")
    if query.status not in Query.WAITING_ON_SITE:
        raise QueryStateError(f"this query is {query.get_status_display().lower()}: there is nothing to answer")
    if rescan is not None:
        _rescan_ok(query, rescan)
    message = QueryMessage.objects.create(query=query, author=coordinator, side=QueryMessage.Side.SITE,
                                          kind=QueryMessage.Kind.ANSWER, text=text, rescan=rescan)
    for upload in files:
        query_attachment_add(author=coordinator, query=query, upload=upload, message=message)
    query.status, query.answered_at, query.overdue = Q_.ANSWERED, timezone.now(), False
    if rescan is not None:
        query.rescan = rescan
    query.save(update_fields=["status", "answered_at", "overdue", "rescan"])
    audit_record(actor=coordinator, action="qc.query_answered", target=query, **_query_where(query),
                 details={"message": message.pk, "text": text, "rescan": rescan.pk if rescan else None})
    return query


@transaction.atomic
def query_close(*, analyst, query: Query, note: str = "") -> Query:
    """QC closes a query (normally once answered). QC analysts of the trial."""
    query = _locked(query)
    ensure(user=analyst, perm=Perm.QC_REVIEW, trial_id=query.trial_id)
    if query.status == Q_.CLOSED:
        raise QueryStateError("this query is already closed")
    note = (note or "").strip()
    QueryMessage.objects.create(query=query, author=analyst, side=QueryMessage.Side.QC,
                                kind=QueryMessage.Kind.CLOSE, text=note)
    before = query.status
    query.status, query.closed_at, query.closed_by, query.overdue = Q_.CLOSED, timezone.now(), analyst, False
    query.save(update_fields=["status", "closed_at", "closed_by", "overdue"])
    audit_record(actor=analyst, action="qc.query_closed", target=query, reason=note or None,
                 **_query_where(query), details={"from": before})
    return query


@transaction.atomic
def query_reopen(*, analyst, query: Query, reason: str, due_date: datetime.date | None = None) -> Query:
    """QC reopens an answered or closed query with a reason (the site is notified); a new due date starts a new
    deadline, so the query may be escalated again. QC analysts of the trial."""
    query = _locked(query)
    ensure(user=analyst, perm=Perm.QC_REVIEW, trial_id=query.trial_id)
    reason = (reason or "").strip()
    if not reason:
        raise QcError("say why the query is reopened: the site reads it")
    if query.status not in (Q_.ANSWERED, Q_.CLOSED):
        raise QueryStateError(f"this query is {query.get_status_display().lower()}, not answered or closed")
    today = timezone.localdate()
    due_date = due_date or max(query.due_date, today + datetime.timedelta(days=QUERY_DUE_DAYS))
    QueryMessage.objects.create(query=query, author=analyst, side=QueryMessage.Side.QC,
                                kind=QueryMessage.Kind.REOPEN, text=reason)
    before = query.status
    query.status, query.closed_at, query.closed_by = Q_.REOPENED, None, None
    query.due_date, query.overdue, query.escalated_at = due_date, False, None
    query.save(update_fields=["status", "closed_at", "closed_by", "due_date", "overdue", "escalated_at"])
    site_notify(site=query.site, actor=analyst, subject=f"QC query {query.pk} reopened",
                body=f"QC reopened the query about {query_describe(query)}:\n\n{reason}\n\n"
                     f"Please answer by {due_date:%Y-%m-%d}.")
    audit_record(actor=analyst, action="qc.query_reopened", target=query, reason=reason, **_query_where(query),
                 details={"from": before, "due_date": due_date.isoformat()})
    return query


def _escalation_recipients(query: Query) -> list[str]:
    members = Membership.objects.filter(
        Q(role=Role.SITE_COORDINATOR, site_id=query.site_id) | Q(role=Role.TRIAL_MANAGER), trial_id=query.trial_id)
    return sorted(set(members.exclude(user__email="").values_list("user__email", flat=True)))


def queries_mark_overdue(*, today: datetime.date | None = None) -> list[int]:
    """Mark queries waiting on the site past their due date overdue and escalate each once: an e-mail to the
    site's coordinators and the trial's managers, and an audit event. The system's act (beat); idempotent:
    returns the ids escalated by this call."""
    today = today or timezone.localdate()
    escalated = []
    due = Query.objects.filter(status__in=Query.WAITING_ON_SITE, due_date__lt=today, escalated_at__isnull=True)
    for query_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            query = (Query.objects.select_for_update(of=("self",), skip_locked=True)
                     .select_related("trial", "site", "subject", "visit", "study")
                     .filter(pk=query_id, status__in=Query.WAITING_ON_SITE, due_date__lt=today,
                             escalated_at__isnull=True).first())
            if query is None:
                continue  # answered, escalated or being handled meanwhile
            query.overdue, query.escalated_at = True, timezone.now()
            query.save(update_fields=["overdue", "escalated_at"])
            recipients = _escalation_recipients(query)
            days = (today - query.due_date).days
            subject = (f"[{query.trial.protocol_number}] Overdue QC query {query.pk}: "
                       f"{query.get_category_display()} · {query_describe(query)}")
            body = (f"The QC query about {query_describe(query)} at site {query.site.number} was due on "
                    f"{query.due_date:%Y-%m-%d} and is {days} day(s) overdue without an answer.\n\n"
                    f"{query.text}\n\nAnswer it on the Queries page (query {query.pk}).")
            if recipients:
                transaction.on_commit(lambda s=subject, b=body, r=recipients: send_mail(s, b, None, r))
            audit_record(actor=None, action="qc.query_escalated", target=query, **_query_where(query),
                         details={"due_date": query.due_date.isoformat(), "days_overdue": days,
                                  "recipients": recipients})
        escalated.append(query_id)
    return escalated


def queries_raise_missing(*, today: datetime.date | None = None) -> list[int]:
    """Raise a "missing timepoint" query for each visit procedure whose window closed with nothing received
    (expected-vs-received's overdue rows), once per visit and procedure. Off unless QC_AUTO_MISSING_QUERIES;
    the system's act (beat); idempotent. Returns the ids of the queries raised."""
    if not getattr(settings, "QC_AUTO_MISSING_QUERIES", False):
        return []
    today = today or timezone.localdate()
    raised = []
    visits = (Visit.objects.filter(window_end__lt=today, subject__status=Subject.Status.ENROLLED)
              .select_related("subject__site", "subject__trial").order_by("pk"))
    for visit in visits:
        received = set(ImagingStudy.objects.filter(visit=visit).exclude(status__in=NOT_RECEIVED)
                       .values_list("procedure", flat=True))
        asked = set(Query.objects.filter(visit=visit, automatic=True).values_list("procedure", flat=True))
        for procedure in visit.procedures:
            if procedure in received or procedure in asked:
                continue
            try:
                with transaction.atomic():
                    query = query_raise(
                        analyst=None, category=Query.Category.MISSING_TIMEPOINT, subject=visit.subject, visit=visit,
                        procedure=procedure, automatic=True,
                        text=(f"No {procedure} images have arrived for {visit.subject.code} {visit.label}; its "
                              f"window closed on {visit.window_end:%Y-%m-%d}. Please upload them, or tell us why "
                              "they will not come (missed visit, withdrawn, scanned elsewhere)."))
            except IntegrityError:
                continue  # a concurrent sweep raised it
            raised.append(query.pk)
    return raised


def query_raise_for_held(*, record_id: int) -> Query | None:
    """De-identification held a file of a study (verification failed, or the engine refused it): ask the
    site about it, once per study while such a query is open. The text names attributes, never values.
    Returns the query raised, or None when one is already open (or the record is not held)."""
    record = (DeidRecord.objects.select_related("instance__study__site", "instance__study__subject",
                                                "instance__study__visit")
              .filter(pk=record_id).exclude(outcome=DeidRecord.Outcome.RELEASED).first())
    if record is None:
        return None
    study = record.instance.study
    with transaction.atomic():
        ImagingStudy.objects.select_for_update().filter(pk=study.pk).first()  # one query per study, however raced
        if Query.objects.filter(study=study, category=Query.Category.PHI_FOUND, automatic=True,
                                status__in=(Query.Status.OPEN, Query.Status.ANSWERED)).exists():
            return None
        findings = [line for line in (record.findings or "").splitlines() if line.strip()][:5]
        text = ("De-identification held a file of this study instead of releasing it to the core lab: "
                + ("; ".join(findings) if findings else record.get_outcome_display())
                + ". The file stays in quarantine. Please check what the scanner or PACS exported (burned-in "
                  "annotations, identifying text in descriptions or private fields) and send the study again, "
                  "or tell us if the file is as it should be.")
        return query_raise(analyst=None, category=Query.Category.PHI_FOUND, text=text, study=study,
                           automatic=True)
