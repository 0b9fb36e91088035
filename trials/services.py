"""Every write to trials, sites, protocol versions and memberships, each with its audit event."""

import hashlib
from datetime import date

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from audit.services import ActorContext, audit_record, history_save

from .charter import charter_parse, procedures_needing_requalification
from .exceptions import EnrollmentError, InvalidTransition, MembershipError, NotQualified, NotTrained
from .keys import patient_id_hash
from .models import (
    Membership,
    ProtocolVersion,
    Role,
    Scanner,
    Site,
    SiteNotice,
    SiteQualification,
    Subject,
    SubjectArm,
    TrainingRecord,
    Trial,
    Visit,
)
from .permissions import Perm, ensure, primary_role

User = get_user_model()


def audit_context(*, actor, trial_id: int | None, subject_id: int | None) -> ActorContext:
    """Resolver registered with audit: the actor's role in the trial, for every event."""
    role = primary_role(user=actor, trial_id=trial_id) if actor is not None and trial_id is not None else ""
    return ActorContext(role=role)


@transaction.atomic
def trial_create(*, actor, protocol_number: str, title: str, sponsor: str, phase: str = "",
                 sponsor_blinded: bool = True, status: str = Trial.Status.SETUP) -> Trial:
    """Register a new trial (in set-up unless told otherwise). Staff only; None is the system (demo load)."""
    if actor is not None and not actor.is_staff:
        raise PermissionDenied("only Corelab staff register new trials")
    trial = Trial(protocol_number=protocol_number, title=title, sponsor=sponsor, phase=phase,
                  sponsor_blinded=sponsor_blinded, status=status)
    trial.full_clean()
    trial.save()
    audit_record(actor=actor, action="trials.trial_created", target=trial, trial_id=trial.pk,
                 details={"protocol_number": protocol_number, "sponsor": sponsor, "phase": phase, "status": status})
    return trial


_TRIAL_EDITABLE = {"title", "sponsor", "phase", "status", "sponsor_blinded", "readers_blinded_to_site"}


@transaction.atomic
def trial_update(*, actor, trial: Trial, reason: str, **changes) -> Trial:
    """Correct a trial's attributes; the reason goes on the history record and the audit event."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    unknown = set(changes) - _TRIAL_EDITABLE
    if unknown:
        raise ValidationError({field: "cannot be changed" for field in unknown})
    if not changes:
        raise ValidationError("nothing to change")
    trial = Trial.objects.select_for_update().get(pk=trial.pk)
    details = _correct(instance=trial, changes=changes, reason=reason)
    audit_record(actor=actor, action="trials.trial_updated", target=trial, trial_id=trial.pk, reason=reason,
                 details=details)
    return trial


def _correct(*, instance, changes: dict, reason: str) -> dict:
    """Apply a reasoned correction to a locked row; returns the before/after the audit event records."""
    before = {field: getattr(instance, field) for field in changes}
    for field, value in changes.items():
        setattr(instance, field, value)
    instance.full_clean()
    history_save(instance=instance, reason=reason, update_fields=list(changes))
    return {"before": _jsonable(before), "after": _jsonable(changes)}


@transaction.atomic
def site_create(*, actor, trial: Trial, number: str, name: str, country: str, time_zone: str = "UTC",
                status: str = Site.Status.PENDING) -> Site:
    """Add an investigator site to a trial."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    site = Site(trial=trial, number=number, name=name, country=country.upper(), time_zone=time_zone, status=status)
    site.full_clean()
    site.save()
    audit_record(actor=actor, action="trials.site_created", target=site, trial_id=trial.pk, site_id=site.pk,
                 details={"number": number, "name": name, "country": site.country, "status": status})
    return site


@transaction.atomic
def membership_grant(*, actor, user, trial: Trial, role: str, site: Site | None = None) -> Membership:
    """Give a user a role in a trial (site coordinators at one site)."""
    ensure(user=actor, perm=Perm.MANAGE_MEMBERS, trial_id=trial.pk)
    if role not in Role.values:
        raise MembershipError(f"unknown role {role!r}")
    if Membership.objects.filter(user=user, trial=trial, role=role, site=site).exists():
        raise MembershipError(f"{user} already holds {role} in {trial.protocol_number}")
    membership = Membership(user=user, trial=trial, role=role, site=site)
    membership.full_clean(validate_constraints=False)
    membership.save()
    audit_record(actor=actor, action="trials.role_granted", target=membership, trial_id=trial.pk,
                 site_id=site.pk if site else None,
                 details={"user": user.get_username(), "role": role, "site": site.number if site else None})
    return membership


@transaction.atomic
def membership_revoke(*, actor, membership: Membership, reason: str) -> None:
    """Take a role away; the history keeps who held it and why it ended."""
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    ensure(user=actor, perm=Perm.MANAGE_MEMBERS, trial_id=membership.trial_id)
    if not (reason or "").strip():
        raise MembershipError("a reason is required to revoke a role")
    audit_record(actor=actor, action="trials.role_revoked", target=membership, trial_id=membership.trial_id,
                 site_id=membership.site_id, reason=reason,
                 details={"user": membership.user.get_username(), "role": membership.role})
    membership._change_reason = reason
    membership.delete()


def _jsonable(values: dict) -> dict:
    return {key: value if isinstance(value, str | int | float | bool | type(None)) else str(value)
            for key, value in values.items()}


# -- protocol versions and the imaging charter ---------------------------------------------------------------

@transaction.atomic
def protocol_version_release(*, actor, trial: Trial, label: str, effective_date: date, approved_on: date,
                             charter: dict, approved_by: str = "", change_summary: str = "") -> ProtocolVersion:
    """Release a protocol version and make it the one current version; earlier versions are never edited.

    Qualifications for procedures the new charter marks ``requalify`` are invalidated, each with an audit
    event and a notice to the site. A bad charter raises ValidationError with field-level messages.
    """
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    new_charter = charter_parse(charter)
    Trial.objects.select_for_update().get(pk=trial.pk)  # one release at a time per trial
    previous = ProtocolVersion.objects.filter(trial=trial, is_current=True).first()
    if ProtocolVersion.objects.filter(trial=trial, label=label).exists():
        raise ValidationError({"label": f"version {label} already exists in {trial.protocol_number}"})
    if previous is not None:
        previous.is_current = False
        previous.save(update_fields=["is_current"])
    version = ProtocolVersion(trial=trial, label=label, effective_date=effective_date, approved_on=approved_on,
                              approved_by=approved_by, change_summary=change_summary,
                              charter=new_charter.to_dict(), is_current=True, released_by=actor)
    version.full_clean(validate_constraints=False)
    version.save()
    audit_record(actor=actor, action="trials.protocol_version_released", target=version, trial_id=trial.pk,
                 details={"label": label, "effective_date": effective_date.isoformat(),
                          "supersedes": previous.label if previous else None,
                          "procedures": [p.code for p in new_charter.procedures],
                          "visits": [v.code for v in new_charter.visits]})
    requalify = procedures_needing_requalification(old=previous.parsed_charter if previous else None,
                                                   new=new_charter)
    live = SiteQualification.objects.filter(site__trial=trial, procedure__in=requalify,
                                            status__in=_LIVE_QUALIFICATION).exclude(protocol_version=version)
    for qualification in live.select_related("site"):
        _qualification_invalidate(actor=actor, qualification=qualification,
                                  reason=f"protocol version {label} requires requalification for "
                                         f"{qualification.procedure}")
    return version


# -- sites and scanners -------------------------------------------------------------------------------------

@transaction.atomic
def site_update(*, actor, site: Site, reason: str, **changes) -> Site:
    """Correct a site's attributes, with a reason."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=site.trial_id)
    site = Site.objects.select_for_update().get(pk=site.pk)
    details = _correct(instance=site, changes=changes, reason=reason)
    audit_record(actor=actor, action="trials.site_updated", target=site, trial_id=site.trial_id, site_id=site.pk,
                 reason=reason, details=details)
    return site


@transaction.atomic
def scanner_register(*, actor, site: Site, manufacturer: str, model: str, serial: str, modality: str,
                     software_version: str = "", station_name: str = "") -> Scanner:
    """Record a site's scanner as its DICOM headers name it (site coordinators for their site, managers)."""
    _ensure_site_actor(actor=actor, site=site)
    scanner = Scanner(site=site, manufacturer=manufacturer.strip(), model=model.strip(), serial=serial.strip(),
                      modality=modality.strip().upper(), software_version=software_version.strip(),
                      station_name=station_name.strip())
    scanner.full_clean()
    scanner.save()
    audit_record(actor=actor, action="trials.scanner_registered", target=scanner, trial_id=site.trial_id,
                 site_id=site.pk, details={**scanner.identity(), "modality": scanner.modality})
    return scanner


@transaction.atomic
def scanner_update(*, actor, scanner: Scanner, reason: str, **changes) -> Scanner:
    """Correct or upgrade a scanner; a changed identity (e.g. new software) invalidates its qualifications."""
    _ensure_site_actor(actor=actor, site=scanner.site)
    scanner = Scanner.objects.select_for_update().get(pk=scanner.pk)
    before = scanner.identity()
    details = _correct(instance=scanner, changes=changes, reason=reason)
    audit_record(actor=actor, action="trials.scanner_updated", target=scanner, trial_id=scanner.site.trial_id,
                 site_id=scanner.site_id, reason=reason, details=details)
    if scanner.identity() != before:
        for qualification in scanner.qualifications.filter(status__in=_LIVE_QUALIFICATION):
            _qualification_invalidate(actor=actor, qualification=qualification,
                                      reason=f"scanner {scanner} changed: {reason}")
    return scanner


# -- qualification ------------------------------------------------------------------------------------------

_LIVE_QUALIFICATION = [SiteQualification.Status.PENDING, SiteQualification.Status.SUBMITTED,
                       SiteQualification.Status.APPROVED]


@transaction.atomic
def qualification_request(*, actor, site: Site, scanner: Scanner, procedure: str) -> SiteQualification:
    """Open a qualification for a charter procedure on a scanner, under the current protocol version."""
    _ensure_site_actor(actor=actor, site=site)
    version = _current_version(site.trial)
    charter = version.parsed_charter
    if charter.procedure(procedure) is None:
        raise ValidationError({"procedure": f"{procedure} is not a procedure of protocol v{version.label}"})
    if scanner.site_id != site.pk:
        raise ValidationError({"scanner": "the scanner belongs to another site"})
    allowed = charter.procedure(procedure).modalities
    if scanner.modality not in allowed:
        raise ValidationError({"scanner": f"{scanner} is a {scanner.modality} scanner; {procedure} needs "
                                          f"{', '.join(allowed)}"})
    if SiteQualification.objects.filter(site=site, scanner=scanner, protocol_version=version, procedure=procedure,
                                        status__in=_LIVE_QUALIFICATION).exists():
        raise InvalidTransition(f"{procedure} on {scanner} already has an open or approved qualification")
    qualification = SiteQualification.objects.create(site=site, scanner=scanner, protocol_version=version,
                                                     procedure=procedure, scanner_identity=scanner.identity())
    audit_record(actor=actor, action="trials.qualification_requested", target=qualification,
                 trial_id=site.trial_id, site_id=site.pk,
                 details={"procedure": procedure, "scanner": scanner.identity(), "protocol_version": version.label})
    return qualification


@transaction.atomic
def qualification_submit(*, actor, qualification: SiteQualification, study_reference: str) -> SiteQualification:
    """Submit the phantom or test-subject study the qualification will be judged on."""
    qualification = SiteQualification.objects.select_for_update().select_related("site").get(pk=qualification.pk)
    _ensure_site_actor(actor=actor, site=qualification.site)
    if qualification.status not in (SiteQualification.Status.PENDING, SiteQualification.Status.SUBMITTED):
        raise InvalidTransition(f"qualification is {qualification.get_status_display().lower()}; "
                                "request a new one to submit another study")
    if not study_reference.strip():
        raise ValidationError({"study_reference": "name the phantom or test-subject study"})
    qualification.status = SiteQualification.Status.SUBMITTED
    qualification.study_reference = study_reference.strip()
    qualification.submitted_by = actor
    qualification.submitted_at = timezone.now()
    qualification.save()
    audit_record(actor=actor, action="trials.qualification_submitted", target=qualification,
                 trial_id=qualification.site.trial_id, site_id=qualification.site_id,
                 details={"procedure": qualification.procedure, "study_reference": qualification.study_reference})
    return qualification


@transaction.atomic
def qualification_decide(*, actor, qualification: SiteQualification, approve: bool,
                         reason: str = "") -> SiteQualification:
    """Approve or reject a submitted qualification; a rejection needs a reason and notifies the site."""
    qualification = SiteQualification.objects.select_for_update().select_related("site").get(pk=qualification.pk)
    ensure(user=actor, perm=Perm.REVIEW_QUALIFICATION, trial_id=qualification.site.trial_id)
    if qualification.status != SiteQualification.Status.SUBMITTED:
        raise InvalidTransition(f"qualification is {qualification.get_status_display().lower()}, not submitted")
    if actor is not None and qualification.submitted_by_id == actor.pk:
        raise InvalidTransition("the person who submitted a qualification cannot also review it")
    if not approve and not reason.strip():
        raise ValidationError({"reason": "say why the qualification is rejected"})
    qualification.status = SiteQualification.Status.APPROVED if approve else SiteQualification.Status.REJECTED
    qualification.reviewer = actor
    qualification.decided_at = timezone.now()
    qualification.decision_reason = reason.strip()
    qualification.save()
    action = "trials.qualification_approved" if approve else "trials.qualification_rejected"
    audit_record(actor=actor, action=action, target=qualification, trial_id=qualification.site.trial_id,
                 site_id=qualification.site_id, reason=reason.strip(),
                 details={"procedure": qualification.procedure, "study_reference": qualification.study_reference})
    if not approve:
        site_notify(site=qualification.site, subject=f"Qualification for {qualification.procedure} rejected",
                    body=f"The qualification of {qualification.scanner} for {qualification.procedure} was "
                         f"rejected: {reason.strip()}")
    return qualification


@transaction.atomic
def qualification_check_scan(*, site: Site, procedure: str, identity: dict[str, str]) -> list[SiteQualification]:
    """Called at intake for each study: a scan from a scanner other than the qualified one invalidates.

    ``identity`` holds manufacturer, model, serial and software_version as read from the DICOM header.
    Returns the qualifications invalidated (empty when the scanner matches an approved qualification).
    """
    approved = list(SiteQualification.objects.select_for_update().filter(
        site=site, procedure=procedure, status=SiteQualification.Status.APPROVED).select_related("scanner"))
    seen = {key: (identity.get(key) or "").strip() for key in ("manufacturer", "model", "serial", "software_version")}
    if not approved or any(q.scanner_identity == seen for q in approved):
        return []
    same_device = [q for q in approved if all(q.scanner_identity.get(k) == seen[k]
                                              for k in ("manufacturer", "model", "serial"))]
    invalidated = same_device or approved
    for qualification in invalidated:
        what = "software " + seen["software_version"] if same_device else \
            f"{seen['manufacturer']} {seen['model']} (SN {seen['serial']})"
        _qualification_invalidate(actor=None, qualification=qualification,
                                  reason=f"a {procedure} scan arrived from {what}, not the qualified "
                                         f"{qualification.scanner} (software {qualification.scanner_identity.get('software_version', '')})",
                                  details={"scan_scanner": seen})
    return invalidated


def _qualification_invalidate(*, actor, qualification: SiteQualification, reason: str,
                              details: dict | None = None) -> None:
    qualification.status = SiteQualification.Status.INVALIDATED
    qualification.invalidated_at = timezone.now()
    qualification.invalidated_reason = reason
    qualification._change_reason = reason
    qualification.save(update_fields=["status", "invalidated_at", "invalidated_reason"])
    audit_record(actor=actor, action="trials.qualification_invalidated", target=qualification,
                 trial_id=qualification.site.trial_id, site_id=qualification.site_id, reason=reason,
                 details={"procedure": qualification.procedure, **(details or {})})
    site_notify(site=qualification.site, subject=f"Qualification for {qualification.procedure} invalidated",
                body=f"Site {qualification.site.number}: {reason}. Submit a new qualification scan before "
                     f"sending {qualification.procedure} scans of trial subjects.")


# -- training -----------------------------------------------------------------------------------------------

@transaction.atomic
def training_record_add(*, actor, user, site: Site, protocol_version: ProtocolVersion, topic: str,
                        trained_on: date, trainer: str, evidence=None) -> TrainingRecord:
    """Record that a site user was trained on a protocol version; the evidence file's sha256 is kept."""
    _ensure_site_actor(actor=actor, site=site)
    if protocol_version.trial_id != site.trial_id:
        raise ValidationError({"protocol_version": "the version belongs to another trial"})
    if not Membership.objects.filter(user=user, trial_id=site.trial_id, site=site).exists():
        raise ValidationError({"user": f"{user} holds no role at site {site.number}"})
    if trained_on > timezone.localdate():
        raise ValidationError({"trained_on": "training cannot be dated in the future"})
    record = TrainingRecord(user=user, site=site, protocol_version=protocol_version, topic=topic,
                            trained_on=trained_on, trainer=trainer, recorded_by=actor)
    if evidence is not None:
        digest = hashlib.sha256()
        for chunk in evidence.chunks():
            digest.update(chunk)
        record.evidence_sha256 = digest.hexdigest()
        record.evidence = evidence
    record.full_clean()
    record.save()
    audit_record(actor=actor, action="trials.training_recorded", target=record, trial_id=site.trial_id,
                 site_id=site.pk, details={"user": user.get_username(), "protocol_version": protocol_version.label,
                                           "topic": topic, "trained_on": trained_on.isoformat(),
                                           "evidence_sha256": record.evidence_sha256})
    return record


# -- the upload gate ----------------------------------------------------------------------------------------

def submission_gate(*, user, site: Site, procedure: str) -> None:
    """Raise unless ``user`` may submit subject scans of ``procedure`` for ``site`` now.

    NotQualified: the site has no approved qualification for the procedure (the message also says
    whether training is missing); NotTrained: the user has no training record for the current version.
    """
    version = _current_version(site.trial)
    qualified = SiteQualification.objects.filter(site=site, procedure=procedure,
                                                 status=SiteQualification.Status.APPROVED).exists()
    trained = TrainingRecord.objects.filter(user=user, site=site, protocol_version=version).exists()
    training_note = "" if trained else f"; {user} also has no training record for protocol v{version.label}"
    if not qualified:
        raise NotQualified(f"site {site.number} is not qualified for {procedure} on protocol "
                           f"v{version.label}{training_note}")
    if not trained:
        raise NotTrained(f"{user} has no training record for protocol v{version.label} at site {site.number}")


# -- subjects -----------------------------------------------------------------------------------------------

@transaction.atomic
def subject_enroll(*, actor, site: Site, code: str, patient_id: str, enrollment_date: date) -> Subject:
    """Enroll a subject at a site (coordinators only at their own site) and lay out its visits.

    The local patient ID is stored only as the trial-keyed hash used to match incoming DICOM.
    """
    ensure(user=actor, perm=Perm.ENROLL, trial_id=site.trial_id, site_id=site.pk)
    trial = site.trial
    version = _current_version(trial)
    code = code.strip()
    if Subject.objects.filter(trial=trial, code=code).exists():
        raise EnrollmentError(f"subject code {code} is already used in {trial.protocol_number}")
    try:
        hashed = patient_id_hash(trial=trial, patient_id=patient_id)
    except ValueError as exc:
        raise EnrollmentError(str(exc)) from exc
    existing = Subject.objects.filter(trial=trial, patient_id_hash=hashed).first()
    if existing is not None:
        raise EnrollmentError(f"this patient is already enrolled as {existing.code}")
    subject = Subject(trial=trial, site=site, code=code, patient_id_hash=hashed, enrollment_date=enrollment_date)
    subject.full_clean()
    subject.save()
    charter = version.parsed_charter
    for visit in charter.visits:
        start, nominal, end = charter.visit_window(visit_code=visit.code, enrollment_date=enrollment_date)
        Visit.objects.create(subject=subject, timepoint=visit.code, label=visit.label, nominal_date=nominal,
                             window_start=start, window_end=end, procedures=list(visit.procedures),
                             protocol_version=version)
    audit_record(actor=actor, action="trials.subject_enrolled", target=subject, trial_id=trial.pk,
                 site_id=site.pk, subject_id=subject.pk, subject_code=subject.code,
                 details={"enrollment_date": enrollment_date.isoformat(), "protocol_version": version.label,
                          "visits": [v.code for v in charter.visits]})
    return subject


@transaction.atomic
def subject_arm_assign(*, actor, subject: Subject, arm: str) -> SubjectArm:
    """Record the subject's treatment arm (unblinded roles only); kept apart from Subject."""
    ensure(user=actor, perm=Perm.VIEW_ARM, trial_id=subject.trial_id)
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=subject.trial_id)
    if SubjectArm.objects.filter(subject=subject).exists():
        raise EnrollmentError(f"{subject.code} already has an arm; corrections go through the sponsor's IxRS")
    assignment = SubjectArm.objects.create(subject=subject, arm=arm.strip())
    # the arm itself is not written into the audit details: audit views are not all unblinded
    audit_record(actor=actor, action="trials.subject_arm_assigned", target=("trials.subjectarm", assignment.pk,
                                                                            f"arm of {subject.code}"),
                 trial_id=subject.trial_id, site_id=subject.site_id, subject_id=subject.pk,
                 subject_code=subject.code)
    return assignment


# -- notices to sites ---------------------------------------------------------------------------------------

@transaction.atomic
def site_notify(*, site: Site, subject: str, body: str, actor=None) -> SiteNotice:
    """Post a notice on the site's page and e-mail its coordinators once the transaction commits."""
    notice = SiteNotice.objects.create(site=site, subject=subject, body=body)
    audit_record(actor=actor, action="trials.site_notified", target=notice, trial_id=site.trial_id,
                 site_id=site.pk, details={"subject": subject})
    recipients = list(Membership.objects.filter(site=site, role=Role.SITE_COORDINATOR)
                      .exclude(user__email="").values_list("user__email", flat=True))
    if recipients:
        transaction.on_commit(lambda: send_mail(f"[{site.trial.protocol_number}] {subject}", body, None,
                                                recipients, fail_silently=True))
    return notice


@transaction.atomic
def site_notice_acknowledge(*, actor, notice: SiteNotice) -> SiteNotice:
    """A coordinator marks a notice as read."""
    _ensure_site_actor(actor=actor, site=notice.site)
    if notice.acknowledged_at is None:
        notice.acknowledged_by = actor
        notice.acknowledged_at = timezone.now()
        notice.save(update_fields=["acknowledged_by", "acknowledged_at"])
        audit_record(actor=actor, action="trials.site_notice_acknowledged", target=notice,
                     trial_id=notice.site.trial_id, site_id=notice.site_id)
    return notice


def _current_version(trial: Trial) -> ProtocolVersion:
    version = ProtocolVersion.objects.filter(trial=trial, is_current=True).first()
    if version is None:
        raise InvalidTransition(f"{trial.protocol_number} has no released protocol version yet")
    return version


def _ensure_site_actor(*, actor, site: Site) -> None:
    """Site coordinators act for their own site; trial managers for any."""
    if actor is None or has_site_role(user=actor, site=site):
        return
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=site.trial_id)


def has_site_role(*, user, site: Site) -> bool:
    return Membership.objects.filter(user=user, site=site, role=Role.SITE_COORDINATOR).exists()
