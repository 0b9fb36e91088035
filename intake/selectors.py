"""Reads of intake data, scoped by the user (or, for the gateway, by the calling AE title)."""

import datetime
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from trials.models import Site, Subject, Trial, Visit
from trials.permissions import Perm, has_perm, site_ids_with, trial_ids_with
from trials.selectors import subject_list_for_user

from .models import GatewayPeer, ImagingStudy


def gateway_peer_for(*, ae_title: str, address: str | None) -> GatewayPeer | None:
    """The active peer allowed to send as ``ae_title`` from ``address``; None means refuse the association."""
    peer = GatewayPeer.objects.select_related("site", "site__trial").filter(ae_title=ae_title.strip(),
                                                                            active=True).first()
    if peer is None or (peer.source_address and peer.source_address != address):
        return None
    return peer


# -- the unassigned inbox -----------------------------------------------------------------------------------

def _inbox_scope(*, user) -> Q:
    """Studies of the sites whose inbox the user works (their coordinated sites) or oversees (trials they
    manage)."""
    scope = Q(pk__in=[])
    for trial_id in trial_ids_with(user=user, perm=Perm.MANAGE_TRIAL):
        scope |= Q(trial_id=trial_id)
    for trial_id in trial_ids_with(user=user, perm=Perm.SUBMIT_IMAGES):
        sites = site_ids_with(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=trial_id)
        scope |= Q(trial_id=trial_id) if sites is None else Q(trial_id=trial_id, site_id__in=sites)
    return scope


def inbox_visible_to(*, user) -> bool:
    """Whether the user has an inbox at all (site coordinators and trial managers)."""
    return bool(trial_ids_with(user=user, perm=Perm.SUBMIT_IMAGES) | trial_ids_with(user=user,
                                                                                    perm=Perm.MANAGE_TRIAL))


def unassigned_study_list_for_user(*, user, trial_id: int | None = None, site_id: int | None = None
                                   ) -> QuerySet[ImagingStudy]:
    """The unassigned inbox, oldest first: coordinators see their sites, trial managers every site of their
    trials, everyone else nothing. Each study carries ``instance_count``."""
    studies = (ImagingStudy.objects.filter(_inbox_scope(user=user), status=ImagingStudy.Status.UNASSIGNED)
               .select_related("trial", "site", "subject")
               .annotate(instance_count=Count("instances"))
               .order_by("created_at", "pk"))
    if trial_id is not None:
        studies = studies.filter(trial_id=trial_id)
    if site_id is not None:
        studies = studies.filter(site_id=site_id)
    return studies


def inbox_study_get_for_user(*, user, study_id: int) -> ImagingStudy:
    """A study of the user's inbox scope whatever its status (the services answer 409 once it has left the
    inbox); 404 for missing and forbidden alike."""
    studies = (ImagingStudy.objects.filter(_inbox_scope(user=user)).select_related("trial", "site", "subject")
               .annotate(instance_count=Count("instances")))
    return get_object_or_404(studies, pk=study_id)


def assignable_subjects_by_study(*, user, studies: list[ImagingStudy]) -> dict[int, list[Subject]]:
    """For each study, the subjects it may be assigned to, visits (and their protocol versions) prefetched:
    subjects of its site and, when the study carries a Patient ID, only the one enrolled with that ID
    (study_assign refuses any other). One query per trial plus one for the visits."""
    by_site: dict[int, list[Subject]] = {}
    for trial_id in {study.trial_id for study in studies}:
        trial = next(study.trial for study in studies if study.trial_id == trial_id)
        subjects = (subject_list_for_user(user=user, trial=trial)
                    .filter(site_id__in={study.site_id for study in studies if study.trial_id == trial_id})
                    .prefetch_related(Prefetch("visits", queryset=Visit.objects.select_related("protocol_version")
                                               .order_by("nominal_date")))
                    .order_by("code"))
        for subject in subjects:
            by_site.setdefault(subject.site_id, []).append(subject)
    return {study.pk: [subject for subject in by_site.get(study.site_id, [])
                       if not study.patient_id_hash or subject.patient_id_hash == study.patient_id_hash]
            for study in studies}


# -- expected vs. received ----------------------------------------------------------------------------------

class Expectation(StrEnum):
    RECEIVED = "received"  # a version that is neither rejected nor unassigned exists
    DUE = "due"            # the window is open and nothing has arrived yet
    OVERDUE = "overdue"    # the window has closed and nothing has arrived
    NOT_DUE = "not_due"    # the window has not opened yet

    @property
    def label(self) -> str:
        return _EXPECTATION_TEXT[self][0]

    @property
    def symbol(self) -> str:
        """Says the status without colour."""
        return _EXPECTATION_TEXT[self][1]

    @property
    def description(self) -> str:
        return _EXPECTATION_TEXT[self][2]


_EXPECTATION_TEXT = {
    Expectation.RECEIVED: ("Received", "✓", "a version that is neither rejected nor unassigned has arrived"),
    Expectation.DUE: ("Due", "●", "the visit window is open and nothing has arrived yet"),
    Expectation.OVERDUE: ("Overdue", "✗", "the visit window has closed and nothing has arrived"),
    Expectation.NOT_DUE: ("Not yet due", "○", "the visit window has not opened yet"),
}


# versions that do not count as the procedure having arrived
NOT_RECEIVED = (ImagingStudy.Status.REJECTED, ImagingStudy.Status.UNASSIGNED)


@dataclass(frozen=True)
class ExpectedProcedure:
    """One charter procedure of one subject's visit, and whether it has arrived."""

    subject_id: int
    subject_code: str
    subject_status: str
    site_id: int
    site_number: str
    visit_id: int
    timepoint: str
    visit_label: str
    day: int  # nominal day from enrollment: orders timepoints across protocol versions
    nominal_date: datetime.date
    window_start: datetime.date
    window_end: datetime.date
    procedure: str
    status: Expectation
    study_id: int | None  # the latest version that counts, if any
    study_status: str     # its status ("" when none)
    versions: int         # versions that count
    rejected_versions: int

    @property
    def expected(self) -> bool:
        """Expected by now: its window has opened."""
        return self.status != Expectation.NOT_DUE


def expected_procedure_list_for_user(*, user, trial: Trial, site_id: int | None = None,
                                     today: datetime.date | None = None) -> list[ExpectedProcedure]:
    """Per subject, visit and procedure of the schedule: received, due, overdue or not yet due on ``today``.

    Scoped like the subject list (coordinators their sites; managers, QC, auditors and sponsors every site;
    readers nothing). Two queries whatever the trial's size; ordered by site, subject, visit, procedure.
    """
    today = today or timezone.localdate()
    sites = site_ids_with(user=user, perm=Perm.VIEW_TRIAL, trial_id=trial.pk)
    visits = Visit.objects.filter(subject__trial=trial)
    if sites is not None:
        visits = visits.filter(subject__site_id__in=sites)
    if site_id is not None:
        visits = visits.filter(subject__site_id=site_id)
    arrived = {
        (row["visit_id"], row["procedure"]): row
        for row in ImagingStudy.objects.filter(visit__in=visits.values("pk"), subject__isnull=False)
        .values("visit_id", "procedure")
        .annotate(versions=Count("pk", filter=~Q(status__in=NOT_RECEIVED)),
                  rejected=Count("pk", filter=Q(status=ImagingStudy.Status.REJECTED)),
                  latest=ArrayAgg("pk", filter=~Q(status__in=NOT_RECEIVED), order_by="-version"),
                  latest_status=ArrayAgg("status", filter=~Q(status__in=NOT_RECEIVED), order_by="-version"))
    }
    rows = []
    for visit in visits.values("pk", "subject_id", "subject__code", "subject__status", "subject__site_id",
                               "subject__site__number", "subject__enrollment_date", "timepoint", "label",
                               "nominal_date", "window_start", "window_end", "procedures").order_by(
            "subject__site__number", "subject__code", "nominal_date"):
        for procedure in visit["procedures"]:
            found = arrived.get((visit["pk"], procedure))
            versions = found["versions"] if found else 0
            if versions:
                status = Expectation.RECEIVED
            elif visit["window_end"] < today:
                status = Expectation.OVERDUE
            elif visit["window_start"] <= today:
                status = Expectation.DUE
            else:
                status = Expectation.NOT_DUE
            rows.append(ExpectedProcedure(
                subject_id=visit["subject_id"], subject_code=visit["subject__code"],
                subject_status=visit["subject__status"], site_id=visit["subject__site_id"],
                site_number=visit["subject__site__number"], visit_id=visit["pk"], timepoint=visit["timepoint"],
                visit_label=visit["label"], day=(visit["nominal_date"] - visit["subject__enrollment_date"]).days,
                nominal_date=visit["nominal_date"], window_start=visit["window_start"],
                window_end=visit["window_end"], procedure=procedure, status=status,
                study_id=found["latest"][0] if versions else None,
                study_status=found["latest_status"][0] if versions else "", versions=versions,
                rejected_versions=found["rejected"] if found else 0))
    return rows


def expected_summary(*, rows: list[ExpectedProcedure]) -> dict[str, int]:
    """Counts per status, every status present (zero when none)."""
    counts = Counter(row.status for row in rows)
    return {status.value: counts.get(status, 0) for status in Expectation}


# -- DICOM senders ------------------------------------------------------------------------------------------

def _peer_site_ids(*, user, trial_id: int) -> set[int] | None:
    """Sites whose senders the user sees: every site of a trial they manage (None), the sites they coordinate
    (their PACS team needs the AE title it was registered under), else none."""
    if has_perm(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial_id):
        return None
    return site_ids_with(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=trial_id) or set()


def gateway_peer_trial_list_for_user(*, user) -> QuerySet[Trial]:
    """Trials with a DICOM senders page for the user: those they manage or coordinate a site of."""
    ids = trial_ids_with(user=user, perm=Perm.MANAGE_TRIAL) | trial_ids_with(user=user, perm=Perm.SUBMIT_IMAGES)
    return Trial.objects.filter(pk__in=ids).order_by("protocol_number")


def gateway_peer_site_list_for_user(*, user, trial: Trial) -> QuerySet[Site]:
    """The trial's sites whose senders the user sees, by number."""
    sites = _peer_site_ids(user=user, trial_id=trial.pk)
    queryset = Site.objects.filter(trial=trial).order_by("number")
    return queryset if sites is None else queryset.filter(pk__in=sites)


def gateway_peer_list_for_user(*, user, trial: Trial, site_id: int | None = None) -> QuerySet[GatewayPeer]:
    """The trial's DICOM senders the user sees (managers: every site; coordinators: their sites, read-only;
    everyone else: none), active first, by site and AE title."""
    peers = (GatewayPeer.objects.filter(site__in=gateway_peer_site_list_for_user(user=user, trial=trial))
             .select_related("site", "site__trial").order_by("site__number", "-active", "ae_title"))
    return peers if site_id is None else peers.filter(site_id=site_id)


def gateway_peer_get_for_user(*, user, peer_id: int) -> GatewayPeer:
    """One sender the user sees; 404 for missing and forbidden alike."""
    peer = get_object_or_404(GatewayPeer.objects.select_related("site", "site__trial"), pk=peer_id)
    sites = _peer_site_ids(user=user, trial_id=peer.site.trial_id)
    if sites is not None and peer.site_id not in sites:
        raise Http404("No such sender")
    return peer


# -- what arrived through every door (web, C-STORE, STOW-RS) ------------------------------------------------

from .models import Instance, Submission  # noqa: E402  (kept beside the part of this module that reads them)


def _submission_scope(*, user, site_field: str = "site_id", trial_field: str = "trial_id") -> Q:
    """Rows of the sites whose arrivals the user sees: every site of the trials they manage or see whole
    (``VIEW_ALL_SITES``: QC, sponsors, auditors), the sites they coordinate; nothing for anyone else
    (readers are blinded to sites)."""
    scope = Q(pk__in=[])
    whole = trial_ids_with(user=user, perm=Perm.MANAGE_TRIAL) | trial_ids_with(user=user, perm=Perm.VIEW_ALL_SITES)
    if whole:
        scope |= Q(**{f"{trial_field}__in": whole})
    for trial_id in trial_ids_with(user=user, perm=Perm.SUBMIT_IMAGES) - whole:
        sites = site_ids_with(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=trial_id)
        scope |= Q(**{trial_field: trial_id}) if sites is None else Q(**{trial_field: trial_id,
                                                                         f"{site_field}__in": sites})
    return scope


def submissions_visible_to(*, user) -> bool:
    """Whether the user has a Received page at all (coordinators, managers, roles that see every site)."""
    return any(trial_ids_with(user=user, perm=perm)
               for perm in (Perm.SUBMIT_IMAGES, Perm.MANAGE_TRIAL, Perm.VIEW_ALL_SITES))


def submission_site_list_for_user(*, user) -> QuerySet[Site]:
    """The sites whose submissions the user sees (the page's site filter), by trial and number."""
    return (Site.objects.filter(_submission_scope(user=user, site_field="pk")).select_related("trial")
            .order_by("trial__protocol_number", "number"))


def submission_list_for_user(*, user, trial_id: int | None = None, site_id: int | None = None,
                             channel: str | None = None, refused_only: bool = False,
                             started_from: datetime.date | None = None, started_to: datetime.date | None = None
                             ) -> QuerySet[Submission]:
    """Submissions of every channel at the sites the user sees, newest first, narrowed by the filters
    (dates inclusive, by the day the submission opened)."""
    submissions = (Submission.objects.filter(_submission_scope(user=user))
                   .select_related("trial", "site", "submitted_by").defer("results")
                   .order_by("-started_at", "-pk"))
    if trial_id is not None:
        submissions = submissions.filter(trial_id=trial_id)
    if site_id is not None:
        submissions = submissions.filter(site_id=site_id)
    if channel:
        submissions = submissions.filter(channel=channel)
    if refused_only:
        submissions = submissions.filter(rejected__gt=0)
    if started_from is not None:
        submissions = submissions.filter(started_at__date__gte=started_from)
    if started_to is not None:
        submissions = submissions.filter(started_at__date__lte=started_to)
    return submissions


def submission_get_for_user_any_channel(*, user, submission_id: int) -> Submission:
    """One submission of any channel at a site the user sees; 404 for missing and forbidden alike.
    (The web upload's own ``submission_get_for_user`` in intake.views.upload serves only its channel.)"""
    submissions = Submission.objects.filter(_submission_scope(user=user)).select_related(
        "trial", "site", "submitted_by", "subject", "visit", "qualification")
    return get_object_or_404(submissions, pk=submission_id)


def submission_study_list_for_user(*, user, submission: Submission) -> QuerySet[ImagingStudy]:
    """The studies the submission's instances were filed into, each with ``received`` (its instances from
    this submission), by id."""
    return (ImagingStudy.objects.filter(_submission_scope(user=user),
                                        pk__in=Instance.objects.filter(submission=submission).values("study_id"))
            .select_related("subject", "visit", "qualification")
            .annotate(received=Count("instances", filter=Q(instances__submission=submission)))
            .order_by("pk"))


# the order the result list is read in: what needs the site's attention first
RESULT_ORDER = ("rejected", "duplicate", "accepted")


def submission_results_grouped(*, user, submission: Submission) -> dict[str, list[dict]]:
    """The per-file results by outcome (``rejected``, ``duplicate``, ``accepted``), each in arrival order.

    A file's name is as the site's computer wrote it and may carry a patient's name: only the site's
    coordinators and the trial's managers see it; anyone else (QC, sponsor, auditor) sees its position.
    """
    names = has_perm(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=submission.trial_id,
                     site_id=submission.site_id) or has_perm(user=user, perm=Perm.MANAGE_TRIAL,
                                                             trial_id=submission.trial_id)
    groups: dict[str, list[dict]] = {outcome: [] for outcome in RESULT_ORDER}
    for position, row in enumerate(submission.results or [], start=1):
        shown = row if names else {**row, "file": f"file {position}"}
        groups.setdefault(row.get("outcome", "rejected"), []).append(shown)
    return groups
