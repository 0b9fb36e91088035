"""Every QC write: automated runs, and the analyst's accept or reject. Each one audited.

``qc_run`` is the system's act (Celery, the sweeper); ``study_accept`` and ``study_reject`` are a QC
analyst's (Perm.QC_REVIEW on the study's trial). Site queries will join these; they are not built yet.
"""

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from intake.models import ImagingStudy
from intake.services import STUDY_TRANSITIONS, study_transition
from trials.permissions import Perm, ensure
from trials.services import site_notify

from .checks import run_checks
from .context import instances_digest, protocol_version_for, series_metadata, study_context
from .exceptions import QcError, StudyAlreadyDecided
from .models import CheckResult, QcDecision, QcRun

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
