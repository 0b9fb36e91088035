"""Who may do what. Every access decision in Corelab is made here.

Views, API endpoints and selectors ask these functions; none checks a role by hand.
Permissions are granted per trial through Membership; a site coordinator's
permissions stop at their own site. Missing and forbidden look the same to the
caller (``require`` raises Http404), so existence never leaks across trials.
"""

from collections.abc import Iterable
from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import SITE_SCOPED_ROLES, Membership, Role


class Perm(StrEnum):
    VIEW_TRIAL = "view_trial"            # see the trial and the sites one may see
    MANAGE_TRIAL = "manage_trial"        # protocol versions, sites, scanners
    MANAGE_MEMBERS = "manage_members"    # grant and revoke roles
    VIEW_ALL_SITES = "view_all_sites"    # not limited to one site
    SUBMIT_IMAGES = "submit_images"      # upload, answer queries, qualify the site
    QC_REVIEW = "qc_review"              # QC queue, accept/reject, raise queries
    READ = "read"                        # blinded reads of assigned timepoints
    ADJUDICATE = "adjudicate"
    VIEW_DASHBOARDS = "view_dashboards"
    VIEW_AUDIT = "view_audit"            # audit search, patient timelines, exports
    REVIEW_QUALIFICATION = "review_qualification"  # approve or reject a site's qualification
    ENROLL = "enroll"                    # enroll subjects (coordinators at their own site)
    VIEW_ARM = "view_arm"                # see treatment arms (never readers, QC or blinded sponsors)
    VIEW_QUARANTINE = "view_quarantine"  # see original (PHI) values, e.g. in the de-identification preview


ROLE_PERMS: dict[str, frozenset[Perm]] = {
    Role.TRIAL_MANAGER: frozenset({Perm.VIEW_TRIAL, Perm.MANAGE_TRIAL, Perm.MANAGE_MEMBERS, Perm.VIEW_ALL_SITES,
                                   Perm.VIEW_DASHBOARDS, Perm.VIEW_AUDIT, Perm.REVIEW_QUALIFICATION, Perm.ENROLL,
                                   Perm.VIEW_ARM, Perm.VIEW_QUARANTINE}),
    Role.SITE_COORDINATOR: frozenset({Perm.VIEW_TRIAL, Perm.SUBMIT_IMAGES, Perm.ENROLL}),
    Role.QC_ANALYST: frozenset({Perm.VIEW_TRIAL, Perm.VIEW_ALL_SITES, Perm.QC_REVIEW, Perm.REVIEW_QUALIFICATION}),
    # readers and adjudicators are blinded to site identity: they see the trial, no site
    Role.READER: frozenset({Perm.VIEW_TRIAL, Perm.READ}),
    Role.ADJUDICATOR: frozenset({Perm.VIEW_TRIAL, Perm.ADJUDICATE}),
    Role.SPONSOR_VIEWER: frozenset({Perm.VIEW_TRIAL, Perm.VIEW_ALL_SITES, Perm.VIEW_DASHBOARDS}),
    Role.AUDITOR: frozenset({Perm.VIEW_TRIAL, Perm.VIEW_ALL_SITES, Perm.VIEW_AUDIT, Perm.VIEW_ARM}),
}


def _memberships(user):
    if user is None or not user.is_authenticated or not user.is_active:
        return Membership.objects.none()
    return Membership.objects.filter(user=user)


def roles_for(*, user, trial_id: int) -> set[str]:
    """The roles the user holds in one trial."""
    return set(_memberships(user).filter(trial_id=trial_id).values_list("role", flat=True))


def roles_with(perm: Perm) -> list[str]:
    return [role for role, perms in ROLE_PERMS.items() if perm in perms]


def trial_ids_with(*, user, perm: Perm) -> set[int]:
    """Trials in which the user holds a role granting ``perm``."""
    return set(_memberships(user).filter(role__in=roles_with(perm)).values_list("trial_id", flat=True))


def trial_ids_by_perm(*, user, perms: Iterable[Perm]) -> dict[Perm, set[int]]:
    """``trial_ids_with`` for several perms in one query: what a per-request check that needs four of them
    (DICOMweb's scope, asked on every frame a viewer fetches) can afford."""
    perms = list(perms)
    found: dict[Perm, set[int]] = {perm: set() for perm in perms}
    wanted = {role for perm in perms for role in roles_with(perm)}
    for trial_id, role in _memberships(user).filter(role__in=wanted).values_list("trial_id", "role").order_by():
        for perm in perms:
            if perm in ROLE_PERMS.get(role, ()):
                found[perm].add(trial_id)
    return found


def perms_in_any_trial(*, user) -> set[Perm]:
    """Every perm the user holds in at least one trial, in one query (``trial_ids_with(perm)`` is non-empty
    exactly for these): what the navigation asks for each of its entries."""
    roles = set(_memberships(user).values_list("role", flat=True).order_by())
    return {perm for role in roles for perm in ROLE_PERMS.get(role, ())}


def site_ids_with(*, user, perm: Perm, trial_id: int) -> set[int] | None:
    """Sites of the trial the user may act on with ``perm``: None means every site, an empty set none."""
    rows = _memberships(user).filter(trial_id=trial_id, role__in=roles_with(perm)).values_list("role", "site_id")
    sites: set[int] = set()
    for role, site_id in rows:
        if role not in SITE_SCOPED_ROLES:
            if perm == Perm.VIEW_TRIAL and Perm.VIEW_ALL_SITES not in ROLE_PERMS[role]:
                continue  # readers see the trial but no site
            return None
        sites.add(site_id)
    return sites


def has_perm(*, user, perm: Perm, trial_id: int, site_id: int | None = None) -> bool:
    """Whether the user may use ``perm`` in the trial (and, when given, at that site)."""
    if site_id is None:
        return trial_id in trial_ids_with(user=user, perm=perm)
    sites = site_ids_with(user=user, perm=perm, trial_id=trial_id)
    return sites is None or site_id in sites


def require(*, user, perm: Perm, trial_id: int, site_id: int | None = None) -> None:
    """Raise Http404 unless the user has ``perm``: forbidden looks like missing."""
    if not has_perm(user=user, perm=perm, trial_id=trial_id, site_id=site_id):
        raise Http404("No such object")


def ensure(*, user, perm: Perm, trial_id: int, site_id: int | None = None) -> None:
    """Services' own guard: raise PermissionDenied unless the user (None: the system itself) has ``perm``.

    Views reach objects through selectors first, so a user normally meets the 404 there.
    """
    if user is not None and not has_perm(user=user, perm=perm, trial_id=trial_id, site_id=site_id):
        raise PermissionDenied(f"{user} may not {perm.value.replace('_', ' ')} here")


def primary_role(*, user, trial_id: int) -> str:
    """The role recorded on audit events: the user's roles in the trial, joined in a stable order."""
    roles = roles_for(user=user, trial_id=trial_id)
    return ",".join(role for role in Role.values if role in roles)
