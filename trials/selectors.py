"""Reads of trials and sites, always scoped by the user asking."""

from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from .charter import charter_diff
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
)
from .permissions import Perm, has_perm, require, site_ids_with, trial_ids_with


def trial_list_for_user(*, user) -> QuerySet[Trial]:
    return Trial.objects.filter(pk__in=trial_ids_with(user=user, perm=Perm.VIEW_TRIAL))


def trial_get_for_user(*, user, trial_id: int) -> Trial:
    """404 for missing and forbidden alike."""
    return get_object_or_404(trial_list_for_user(user=user), pk=trial_id)


def site_list_for_user(*, user, trial: Trial) -> QuerySet[Site]:
    """The trial's sites the user may see: all of them, their own, or none (blinded readers)."""
    sites = site_ids_with(user=user, perm=Perm.VIEW_TRIAL, trial_id=trial.pk)
    queryset = Site.objects.filter(trial=trial)
    return queryset if sites is None else queryset.filter(pk__in=sites)


def site_get_for_user(*, user, trial_id: int, site_id: int) -> Site:
    trial = trial_get_for_user(user=user, trial_id=trial_id)
    return get_object_or_404(site_list_for_user(user=user, trial=trial), pk=site_id)


def membership_list_for_user(*, user, trial: Trial) -> QuerySet[Membership]:
    """Who holds which role: visible to those who manage members or audit."""
    if trial.pk not in trial_ids_with(user=user, perm=Perm.MANAGE_MEMBERS) | trial_ids_with(
            user=user, perm=Perm.VIEW_AUDIT):
        return Membership.objects.none()
    return Membership.objects.filter(trial=trial).select_related("user", "site")


def my_roles_by_trial(*, user) -> dict[int, list[str]]:
    roles: dict[int, list[str]] = {}
    for trial_id, role in Membership.objects.filter(user=user).values_list("trial_id", "role"):
        roles.setdefault(trial_id, []).append(role)
    return roles


def trial_require(*, user, perm: Perm, trial: Trial) -> None:
    require(user=user, perm=perm, trial_id=trial.pk)


# -- protocol versions --------------------------------------------------------------------------------------

def protocol_version_list_for_user(*, user, trial: Trial) -> QuerySet[ProtocolVersion]:
    require(user=user, perm=Perm.VIEW_TRIAL, trial_id=trial.pk)
    return ProtocolVersion.objects.filter(trial=trial).order_by("-created_at")


def protocol_version_get_for_user(*, user, trial_id: int, version_id: int) -> ProtocolVersion:
    trial = trial_get_for_user(user=user, trial_id=trial_id)
    return get_object_or_404(ProtocolVersion, trial=trial, pk=version_id)


def protocol_version_diff(*, old: ProtocolVersion, new: ProtocolVersion) -> list:
    """What changed in the charter between two versions of the same trial."""
    return charter_diff(old=old.parsed_charter, new=new.parsed_charter)


# -- sites: scanners, qualification, training, notices ------------------------------------------------------

def sites_coordinated_by(*, user) -> QuerySet[Site]:
    """The sites where the user is a site coordinator."""
    return Site.objects.filter(memberships__user=user, memberships__role=Role.SITE_COORDINATOR).select_related(
        "trial").distinct()


def scanner_list_for_user(*, user, site: Site) -> QuerySet[Scanner]:
    _require_site_visible(user=user, site=site)
    return Scanner.objects.filter(site=site)


def scanner_get_for_user(*, user, scanner_id: int) -> Scanner:
    scanner = get_object_or_404(Scanner.objects.select_related("site"), pk=scanner_id)
    _require_site_visible(user=user, site=scanner.site)
    return scanner


@dataclass
class ProcedureStatus:
    """A site's standing for one charter procedure: what is done, what is missing."""

    code: str
    name: str
    modalities: tuple[str, ...]
    qualified: bool
    qualifications: list[SiteQualification]
    missing: list[str] = field(default_factory=list)


def site_qualification_overview(*, user, site: Site) -> list[ProcedureStatus]:
    """Per procedure of the current charter: qualification state and, in plain words, what is missing."""
    _require_site_visible(user=user, site=site)
    version = ProtocolVersion.objects.filter(trial_id=site.trial_id, is_current=True).first()
    if version is None:
        return []
    scanners = list(Scanner.objects.filter(site=site, active=True))
    qualifications = list(SiteQualification.objects.filter(site=site).select_related("scanner", "protocol_version")
                          .order_by("-created_at"))
    overview = []
    for procedure in version.parsed_charter.procedures:
        mine = [q for q in qualifications if q.procedure == procedure.code]
        approved = [q for q in mine if q.status == SiteQualification.Status.APPROVED]
        status = ProcedureStatus(code=procedure.code, name=procedure.name, modalities=tuple(procedure.modalities),
                                 qualified=bool(approved), qualifications=mine)
        if not approved:
            live = [q for q in mine if q.status in (SiteQualification.Status.PENDING,
                                                    SiteQualification.Status.SUBMITTED)]
            if not any(s.modality in procedure.modalities for s in scanners):
                status.missing.append(f"register a {'/'.join(procedure.modalities)} scanner")
            if not live:
                last = mine[0] if mine else None
                if last is not None and last.status == SiteQualification.Status.REJECTED:
                    status.missing.append(f"last qualification was rejected: {last.decision_reason}")
                elif last is not None and last.status == SiteQualification.Status.INVALIDATED:
                    status.missing.append(f"qualification invalidated: {last.invalidated_reason}")
                status.missing.append("request a qualification and submit a phantom or test-subject scan")
            elif any(q.status == SiteQualification.Status.PENDING for q in live):
                status.missing.append("submit the phantom or test-subject scan")
            else:
                status.missing.append("awaiting review by the core lab")
        overview.append(status)
    return overview


def site_training_overview(*, user, site: Site) -> list[dict]:
    """Each coordinator of the site: trained on the current version or not, with their records."""
    _require_site_visible(user=user, site=site)
    version = ProtocolVersion.objects.filter(trial_id=site.trial_id, is_current=True).first()
    records = TrainingRecord.objects.filter(site=site).select_related("protocol_version", "user")
    rows = []
    for membership in Membership.objects.filter(site=site, role=Role.SITE_COORDINATOR).select_related("user"):
        own = [r for r in records if r.user_id == membership.user_id]
        rows.append({"user": membership.user, "records": own,
                     "trained_on_current": version is not None and any(
                         r.protocol_version_id == version.pk for r in own)})
    return rows


def qualification_review_queue_for_user(*, user) -> QuerySet[SiteQualification]:
    """Submitted qualifications awaiting a decision, oldest first, in the user's trials."""
    trials = trial_ids_with(user=user, perm=Perm.REVIEW_QUALIFICATION)
    return (SiteQualification.objects.filter(site__trial_id__in=trials, status=SiteQualification.Status.SUBMITTED)
            .select_related("site", "site__trial", "scanner", "protocol_version", "submitted_by")
            .order_by("submitted_at"))


def qualification_get_for_user(*, user, qualification_id: int) -> SiteQualification:
    qualification = get_object_or_404(SiteQualification.objects.select_related(
        "site", "site__trial", "scanner", "protocol_version", "submitted_by", "reviewer"), pk=qualification_id)
    if not has_perm(user=user, perm=Perm.REVIEW_QUALIFICATION, trial_id=qualification.site.trial_id):
        _require_site_visible(user=user, site=qualification.site)
    return qualification


def training_record_list_for_user(*, user, site: Site) -> QuerySet[TrainingRecord]:
    _require_site_visible(user=user, site=site)
    return TrainingRecord.objects.filter(site=site).select_related("user", "protocol_version")


def notice_list_for_user(*, user, site: Site) -> QuerySet[SiteNotice]:
    _require_site_visible(user=user, site=site)
    return SiteNotice.objects.filter(site=site)


def notice_get_for_user(*, user, notice_id: int) -> SiteNotice:
    notice = get_object_or_404(SiteNotice.objects.select_related("site"), pk=notice_id)
    _require_site_visible(user=user, site=notice.site)
    return notice


# -- subjects -----------------------------------------------------------------------------------------------

def subject_list_for_user(*, user, trial: Trial) -> QuerySet[Subject]:
    """Subjects at the sites the user may see (none for blinded readers)."""
    sites = site_ids_with(user=user, perm=Perm.VIEW_TRIAL, trial_id=trial.pk)
    queryset = Subject.objects.filter(trial=trial).select_related("site")
    return queryset if sites is None else queryset.filter(site_id__in=sites)


def subject_get_for_user(*, user, subject_id: int) -> Subject:
    subject = get_object_or_404(Subject.objects.select_related("site", "trial"), pk=subject_id)
    return get_object_or_404(subject_list_for_user(user=user, trial=subject.trial), pk=subject_id)


def subject_arm_for_user(*, user, subject: Subject) -> str | None:
    """The treatment arm, only for roles allowed to see it; None otherwise (and when unassigned)."""
    if not has_perm(user=user, perm=Perm.VIEW_ARM, trial_id=subject.trial_id):
        return None
    assignment = SubjectArm.objects.filter(subject=subject).first()
    return assignment.arm if assignment else None


def _require_site_visible(*, user, site: Site) -> None:
    sites = site_ids_with(user=user, perm=Perm.VIEW_TRIAL, trial_id=site.trial_id)
    if not has_perm(user=user, perm=Perm.VIEW_TRIAL, trial_id=site.trial_id) or (
            sites is not None and site.pk not in sites):
        raise Http404("No such site")
