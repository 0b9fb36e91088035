"""Every write to trials, sites, protocol versions and memberships, each with its audit event."""

from datetime import date

from django.contrib.auth import get_user_model
from django.db import transaction

from audit.services import ActorContext, audit_record, history_save

from .exceptions import MembershipError
from .models import Membership, ProtocolVersion, Role, Site, Trial
from .permissions import primary_role

User = get_user_model()


def audit_context(*, actor, trial_id: int | None, subject_id: int | None) -> ActorContext:
    """Resolver registered with audit: the actor's role in the trial, for every event."""
    role = primary_role(user=actor, trial_id=trial_id) if actor is not None and trial_id is not None else ""
    return ActorContext(role=role)


@transaction.atomic
def trial_create(*, actor, protocol_number: str, title: str, sponsor: str, phase: str = "",
                 sponsor_blinded: bool = True, status: str = Trial.Status.SETUP) -> Trial:
    """Register a new trial (in set-up unless told otherwise)."""
    trial = Trial(protocol_number=protocol_number, title=title, sponsor=sponsor, phase=phase,
                  sponsor_blinded=sponsor_blinded, status=status)
    trial.full_clean()
    trial.save()
    audit_record(actor=actor, action="trials.trial_created", target=trial, trial_id=trial.pk,
                 details={"protocol_number": protocol_number, "sponsor": sponsor, "phase": phase, "status": status})
    return trial


@transaction.atomic
def trial_update(*, actor, trial: Trial, reason: str, **changes) -> Trial:
    """Correct a trial's attributes; the reason goes on the history record and the audit event."""
    trial = Trial.objects.select_for_update().get(pk=trial.pk)
    before = {field: getattr(trial, field) for field in changes}
    for field, value in changes.items():
        setattr(trial, field, value)
    trial.full_clean()
    history_save(instance=trial, reason=reason, update_fields=list(changes))
    audit_record(actor=actor, action="trials.trial_updated", target=trial, trial_id=trial.pk, reason=reason,
                 details={"before": _jsonable(before), "after": _jsonable(changes)})
    return trial


@transaction.atomic
def site_create(*, actor, trial: Trial, number: str, name: str, country: str, time_zone: str = "UTC",
                status: str = Site.Status.PENDING) -> Site:
    """Add an investigator site to a trial."""
    site = Site(trial=trial, number=number, name=name, country=country.upper(), time_zone=time_zone, status=status)
    site.full_clean()
    site.save()
    audit_record(actor=actor, action="trials.site_created", target=site, trial_id=trial.pk, site_id=site.pk,
                 details={"number": number, "name": name, "country": site.country, "status": status})
    return site


@transaction.atomic
def protocol_version_create(*, actor, trial: Trial, label: str, effective_date: date, visit_schedule: list[dict],
                            change_summary: str = "") -> ProtocolVersion:
    """Release a protocol version and make it current; earlier versions stay unchanged but not current."""
    Trial.objects.select_for_update().get(pk=trial.pk)  # one release at a time per trial
    previous = ProtocolVersion.objects.filter(trial=trial, is_current=True).first()
    if previous is not None:
        previous.is_current = False
        previous.save(update_fields=["is_current"])
    version = ProtocolVersion(trial=trial, label=label, effective_date=effective_date,
                              visit_schedule=visit_schedule, change_summary=change_summary, is_current=True)
    version.full_clean()
    version.save()
    audit_record(actor=actor, action="trials.protocol_version_released", target=version, trial_id=trial.pk,
                 details={"label": label, "effective_date": effective_date.isoformat(),
                          "supersedes": previous.label if previous else None,
                          "visits": [visit["code"] for visit in visit_schedule]})
    return version


@transaction.atomic
def membership_grant(*, actor, user, trial: Trial, role: str, site: Site | None = None) -> Membership:
    """Give a user a role in a trial (site coordinators at one site)."""
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
