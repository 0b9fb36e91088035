"""QC reads, scoped by user: QC analysts of a trial see its studies and queries; site coordinators see their
own site's queries; everyone else gets 404."""

import statistics

from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from intake.models import ImagingStudy
from trials.models import Site, Subject, Visit
from trials.permissions import Perm, has_perm, site_ids_with, trial_ids_with

from .models import CheckResult, QcDecision, QcRun, Query, QueryAttachment, QueryMessage


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


# -- queries --------------------------------------------------------------------------------------------

def _query_scope(*, user) -> Q:
    """QC analysts: every query of their trials; coordinators: their own site's queries; others: none."""
    scope = Q(trial_id__in=trial_ids_with(user=user, perm=Perm.QC_REVIEW))
    for trial_id in trial_ids_with(user=user, perm=Perm.SUBMIT_IMAGES):
        sites = site_ids_with(user=user, perm=Perm.SUBMIT_IMAGES, trial_id=trial_id)
        scope |= Q(trial_id=trial_id) if sites is None else Q(trial_id=trial_id, site_id__in=sites)
    return scope


def queries_visible_to(*, user) -> bool:
    """Whether the user works queries anywhere (QC analysts, site coordinators): the Queries page and entry."""
    return bool(trial_ids_with(user=user, perm=Perm.QC_REVIEW) or trial_ids_with(user=user, perm=Perm.SUBMIT_IMAGES))


def query_list_for_user(*, user, status: str = "", site_id: int | None = None, category: str = "",
                        overdue_only: bool = False, study_id: int | None = None) -> QuerySet[Query]:
    """Queries the user may see, those waiting longest first within open, answered, closed. ``status`` "active"
    means not closed."""
    queries = (Query.objects.filter(_query_scope(user=user))
               .select_related("trial", "site", "subject", "visit", "study", "raised_by")
               .annotate(message_count=Count("messages"))
               .order_by("raised_at", "pk"))
    if status == "active":
        queries = queries.exclude(status=Query.Status.CLOSED)
    elif status:
        queries = queries.filter(status=status)
    if site_id is not None:
        queries = queries.filter(site_id=site_id)
    if category:
        queries = queries.filter(category=category)
    if overdue_only:
        queries = queries.filter(overdue=True)
    if study_id is not None:
        queries = queries.filter(study_id=study_id)
    return queries


def query_filters_for_user(*, user) -> dict:
    """The sites the query list can be filtered by (only those the user may see)."""
    site_ids = Query.objects.filter(_query_scope(user=user)).values("site_id")
    return {"sites": list(Site.objects.filter(pk__in=site_ids).select_related("trial")
                          .order_by("trial__protocol_number", "number")),
            "categories": Query.Category.choices, "statuses": Query.Status.choices}


def query_get_for_user(*, user, query_id: int) -> Query:
    """404 for missing and for forbidden alike: a coordinator of another site cannot tell a query exists."""
    return get_object_or_404(
        Query.objects.filter(_query_scope(user=user)).select_related("trial", "site", "subject", "visit", "study",
                                                                     "raised_by", "closed_by", "rescan"),
        pk=query_id)


def query_thread(*, query: Query) -> list[QueryMessage]:
    """The conversation, oldest first, each message with its attachments."""
    return list(query.messages.select_related("author", "rescan").prefetch_related("attachments"))


def query_attachments(*, query: Query) -> QuerySet[QueryAttachment]:
    return query.attachments.select_related("uploaded_by", "message")


def query_attachment_get_for_user(*, user, query_id: int, attachment_id: int) -> QueryAttachment:
    query = query_get_for_user(user=user, query_id=query_id)
    return get_object_or_404(QueryAttachment.objects.select_related("query"), pk=attachment_id, query=query)


def subject_visit_get_for_qc(*, user, subject_id: int, visit_id: int | None) -> tuple[Subject, Visit | None]:
    """A subject (and one of its visits) of the user's QC trials, to raise a query about a missing study; 404
    otherwise."""
    subject = get_object_or_404(Subject.objects.select_related("site"), pk=subject_id,
                                trial_id__in=trial_ids_with(user=user, perm=Perm.QC_REVIEW))
    visit = get_object_or_404(Visit, pk=visit_id, subject=subject) if visit_id is not None else None
    return subject, visit


def query_is_qc(*, user, query: Query) -> bool:
    """Whether the user acts for QC on this query (close, reopen) rather than for the site (answer)."""
    return has_perm(user=user, perm=Perm.QC_REVIEW, trial_id=query.trial_id)


def query_rescan_candidates(*, query: Query) -> QuerySet[ImagingStudy]:
    """Studies the site may link as a rescan: same subject, visit and procedure, uploaded after the query."""
    if query.subject_id is None or query.visit_id is None:
        return ImagingStudy.objects.none()
    studies = ImagingStudy.objects.filter(trial_id=query.trial_id, site_id=query.site_id,
                                          subject_id=query.subject_id, visit_id=query.visit_id,
                                          created_at__gte=query.raised_at).order_by("-version")
    if query.procedure:
        studies = studies.filter(procedure=query.procedure)
    if query.study_id:
        studies = studies.exclude(pk=query.study_id)
    return studies


# -- site QC metrics ------------------------------------------------------------------------------------

def metrics_trial_ids(*, user) -> set[int]:
    """Trials whose site QC metrics the user sees: QC analysts' and dashboard viewers' (managers, sponsors)."""
    return trial_ids_with(user=user, perm=Perm.QC_REVIEW) | trial_ids_with(user=user, perm=Perm.VIEW_DASHBOARDS)


def site_qc_metrics_for_user(*, user, site_id: int | None = None) -> list[dict]:
    """Per site and calendar month (UTC): first-pass acceptance (decisions on first versions that were accepts),
    queries raised per study checked, and the median days from raising a query to closing it (by close month).
    Rows ordered by trial, site, month."""
    trials = metrics_trial_ids(user=user)
    rows: dict[tuple, dict] = {}
    sites = {s.pk: s for s in Site.objects.filter(trial_id__in=trials).select_related("trial")}
    if site_id is not None:
        sites = {k: v for k, v in sites.items() if k == site_id}

    def row(site_pk: int, when) -> dict:
        month = when.strftime("%Y-%m")
        return rows.setdefault((site_pk, month), {
            "site": sites[site_pk], "month": month, "first_versions_decided": 0, "first_pass_accepted": 0,
            "studies_checked": 0, "queries_raised": 0, "resolution_days": []})

    for site_pk, version, decision, decided_at in QcDecision.objects.filter(study__site_id__in=sites).values_list(
            "study__site_id", "study__version", "decision", "decided_at"):
        if version == 1:
            r = row(site_pk, decided_at)
            r["first_versions_decided"] += 1
            r["first_pass_accepted"] += decision == QcDecision.Decision.ACCEPT
    checked = (QcRun.objects.filter(study__site_id__in=sites).values("study_id", "study__site_id")
               .annotate(first=Min("started_at")))
    for item in checked:
        row(item["study__site_id"], item["first"])["studies_checked"] += 1
    for site_pk, raised_at, closed_at in Query.objects.filter(site_id__in=sites).values_list(
            "site_id", "raised_at", "closed_at"):
        row(site_pk, raised_at)["queries_raised"] += 1
        if closed_at is not None:
            row(site_pk, closed_at)["resolution_days"].append((closed_at - raised_at).total_seconds() / 86400)
    result = []
    for (_, _month), r in sorted(rows.items(), key=lambda kv: (kv[1]["site"].trial.protocol_number,
                                                               kv[1]["site"].number, kv[1]["month"])):
        decided, days = r.pop("first_versions_decided"), r.pop("resolution_days")
        result.append({**r, "first_versions_decided": decided,
                       "first_pass_rate": round(r["first_pass_accepted"] / decided, 3) if decided else None,
                       "queries_per_study": round(r["queries_raised"] / r["studies_checked"], 2)
                       if r["studies_checked"] else None,
                       "queries_closed": len(days),
                       "median_resolution_days": round(statistics.median(days), 1) if days else None})
    return result
