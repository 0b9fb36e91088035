"""QC reads, scoped by user: QC analysts of a trial see its studies; everyone else gets 404."""

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from intake.models import ImagingStudy
from trials.models import Site
from trials.permissions import Perm, trial_ids_with

from .models import CheckResult, QcDecision, QcRun


def qc_visible_to(*, user) -> bool:
    """Whether the user reviews QC in any trial (the queue and its navigation entry)."""
    return bool(trial_ids_with(user=user, perm=Perm.QC_REVIEW))


def _latest_run(field: str = "pk"):
    return Subquery(QcRun.objects.filter(study=OuterRef("pk")).order_by("-started_at", "-pk").values(field)[:1])


def qc_queue_list_for_user(*, user, site_id: int | None = None, procedure: str = "",
                           failed_only: bool = False) -> QuerySet[ImagingStudy]:
    """Studies awaiting QC in the user's trials, oldest first (longest waiting at the top). Each carries
    ``run_id``, ``failed`` and ``warned`` of its latest automated run."""
    studies = (ImagingStudy.objects.filter(trial_id__in=trial_ids_with(user=user, perm=Perm.QC_REVIEW),
                                           status=ImagingStudy.Status.QC_PENDING)
               .select_related("trial", "site", "subject", "visit")
               .annotate(run_id=_latest_run(), failed=_latest_run("failed"), warned=_latest_run("warned"),
                         instance_count=Count("instances"))
               .order_by("status_changed_at", "pk"))
    if site_id is not None:
        studies = studies.filter(site_id=site_id)
    if procedure:
        studies = studies.filter(procedure=procedure)
    if failed_only:
        studies = studies.filter(failed__gt=0)
    return studies


def qc_queue_filters_for_user(*, user) -> dict:
    """The sites and procedures the queue can be filtered by."""
    trials = trial_ids_with(user=user, perm=Perm.QC_REVIEW)
    pending = ImagingStudy.objects.filter(trial_id__in=trials, status=ImagingStudy.Status.QC_PENDING)
    return {"sites": list(Site.objects.filter(trial_id__in=trials).select_related("trial")
                          .order_by("trial__protocol_number", "number")),
            "procedures": sorted(set(pending.exclude(procedure="").values_list("procedure", flat=True)))}


def study_get_for_qc(*, user, study_id: int) -> ImagingStudy:
    """404 for missing and for forbidden alike: existence does not leak."""
    return get_object_or_404(
        ImagingStudy.objects.select_related("trial", "site", "subject", "visit"),
        pk=study_id, trial_id__in=trial_ids_with(user=user, perm=Perm.QC_REVIEW))


def latest_run(*, study: ImagingStudy) -> QcRun | None:
    """The run the study page shows: the most recent one."""
    return QcRun.objects.filter(study=study).order_by("-started_at", "-pk").first()


def run_results(*, run: QcRun) -> QuerySet[CheckResult]:
    """Failures first, then warnings, then passes; within each by rule and series."""
    order = {"fail": 0, "warn": 1, "pass": 2}
    results = list(run.results.select_related("series"))
    results.sort(key=lambda r: (order.get(r.outcome, 3), r.rule, r.series.series_number if r.series else -1))
    return results


def run_summary(*, run: QcRun) -> dict:
    return dict(run.results.aggregate(
        passed=Count("pk", filter=Q(outcome="pass")), failed=Count("pk", filter=Q(outcome="fail")),
        warned=Count("pk", filter=Q(outcome="warn"))))


def decision_for(*, study: ImagingStudy) -> QcDecision | None:
    return QcDecision.objects.filter(study=study).select_related("analyst").first()
