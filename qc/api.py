"""REST API of QC: the queue, a study's automated results, accept and reject (QC analysts); queries (QC analysts
and the query's site coordinators)."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from intake.models import ImagingStudy

from . import selectors, services
from .models import CheckResult, QcDecision, QcRun, Query, QueryAttachment, QueryMessage


class QcStudyOutput(serializers.ModelSerializer):
    trial = serializers.CharField(source="trial.protocol_number")
    site = serializers.CharField(source="site.number")
    site_id = serializers.IntegerField()
    subject = serializers.CharField(source="subject.code", default=None)
    visit = serializers.CharField(source="visit.timepoint", default=None)
    status = serializers.CharField()
    waiting_since = serializers.DateTimeField(source="status_changed_at")

    class Meta:
        model = ImagingStudy
        fields = ["id", "trial", "site", "site_id", "subject", "visit", "procedure", "version", "status",
                  "modality", "acquisition_date", "waiting_since"]


class QcQueueOutput(QcStudyOutput):
    run_id = serializers.IntegerField(allow_null=True, help_text="latest automated run")
    failed = serializers.IntegerField(allow_null=True, help_text="failed checks in the latest run")
    warned = serializers.IntegerField(allow_null=True, help_text="warnings in the latest run")

    class Meta(QcStudyOutput.Meta):
        fields = [*QcStudyOutput.Meta.fields, "run_id", "failed", "warned"]


class CheckResultOutput(serializers.ModelSerializer):
    series_number = serializers.IntegerField(source="series.series_number", default=None, allow_null=True)
    outcome = serializers.CharField(help_text="pass, warn or fail")

    class Meta:
        model = CheckResult
        fields = ["rule", "series_id", "series_number", "expected", "measured", "outcome", "message",
                  "charter_version"]


class QcRunOutput(serializers.ModelSerializer):
    trigger = serializers.CharField()

    class Meta:
        model = QcRun
        fields = ["id", "charter_version", "trigger", "instance_count", "passed", "failed", "warned", "started_at",
                  "finished_at"]


class QcDecisionOutput(serializers.ModelSerializer):
    analyst = serializers.CharField(source="analyst.username")
    decision = serializers.CharField(help_text="accept or reject")
    superseded = serializers.ListField(child=serializers.IntegerField())

    class Meta:
        model = QcDecision
        fields = ["decision", "analyst", "reason", "superseded", "decided_at"]


class QcStudyResultsOutput(serializers.Serializer):
    study = QcStudyOutput()
    run = QcRunOutput(allow_null=True)
    results = CheckResultOutput(many=True)
    decision = QcDecisionOutput(allow_null=True)


def _results(study: ImagingStudy) -> dict:
    run = selectors.latest_run(study=study)
    return QcStudyResultsOutput({"study": study, "run": run,
                                 "results": selectors.run_results(run=run) if run else [],
                                 "decision": selectors.decision_for(study=study)}).data


@extend_schema(tags=["qc"], responses=QcQueueOutput(many=True), parameters=[
    OpenApiParameter("site", int, description="only this site"),
    OpenApiParameter("procedure", str, description="only this charter procedure code"),
    OpenApiParameter("failed", bool, description="only studies whose latest run has a failed check")])
class QcQueueApi(APIView):
    def get(self, request):
        """Studies awaiting QC in the caller's trials, longest waiting first (QC analysts)."""
        if not selectors.qc_visible_to(user=request.user):
            raise Http404("No such page")
        site = request.query_params.get("site")
        if site is not None and not site.isdigit():
            raise serializers.ValidationError({"site": ["give an id"]})
        studies = selectors.qc_queue_list_for_user(
            user=request.user, site_id=int(site) if site else None,
            procedure=request.query_params.get("procedure", "").strip(),
            failed_only=request.query_params.get("failed", "").lower() in ("1", "true", "yes"))
        return Response(QcQueueOutput(studies, many=True).data)


@extend_schema(tags=["qc"], responses=QcStudyResultsOutput)
class QcStudyApi(APIView):
    def get(self, request, study_id: int):
        """A study with its latest automated run's results and the QC decision, if any (QC analysts)."""
        study = selectors.study_get_for_qc(user=request.user, study_id=study_id)
        return Response(_results(study))


class QcStudyAcceptInput(serializers.Serializer):
    note = serializers.CharField(allow_blank=True, required=False, max_length=500)


@extend_schema(tags=["qc"], request=QcStudyAcceptInput, responses=QcStudyResultsOutput)
class QcStudyAcceptApi(APIView):
    def post(self, request, study_id: int):
        """Accept the study: it becomes the authoritative version, earlier ones superseded. 409 when another
        analyst decided it first."""
        study = selectors.study_get_for_qc(user=request.user, study_id=study_id)
        data = QcStudyAcceptInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.study_accept(analyst=request.user, study=study, **data.validated_data)
        return Response(_results(selectors.study_get_for_qc(user=request.user, study_id=study_id)))


class QcStudyRejectInput(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="why; the site's coordinators read it")


@extend_schema(tags=["qc"], request=QcStudyRejectInput, responses=QcStudyResultsOutput)
class QcStudyRejectApi(APIView):
    def post(self, request, study_id: int):
        """Reject the study with a reason; the site is notified. 409 when another analyst decided it first."""
        study = selectors.study_get_for_qc(user=request.user, study_id=study_id)
        data = QcStudyRejectInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.study_reject(analyst=request.user, study=study, reason=data.validated_data["reason"])
        return Response(_results(selectors.study_get_for_qc(user=request.user, study_id=study_id)))


# -- queries --------------------------------------------------------------------------------------------

class QcQueryOutput(serializers.ModelSerializer):
    trial = serializers.CharField(source="trial.protocol_number")
    site = serializers.CharField(source="site.number")
    site_id = serializers.IntegerField()
    study_id = serializers.IntegerField(allow_null=True)
    subject = serializers.CharField(source="subject.code", default=None, allow_null=True)
    visit = serializers.CharField(source="visit.timepoint", default=None, allow_null=True)
    category = serializers.CharField(help_text="missing_series, protocol_deviation, wrong_subject_visit, phi_found, "
                                               "image_quality, missing_timepoint or other")
    status = serializers.CharField(help_text="open, answered, closed or reopened")
    raised_by = serializers.CharField(source="raised_by.username", default=None, allow_null=True)
    rescan_id = serializers.IntegerField(allow_null=True)
    age_days = serializers.SerializerMethodField()

    class Meta:
        model = Query
        fields = ["id", "trial", "site", "site_id", "study_id", "subject", "visit", "procedure", "category", "text",
                  "due_date", "status", "raised_by", "raised_at", "answered_at", "closed_at", "overdue",
                  "escalated_at", "automatic", "rescan_id", "age_days"]

    def get_age_days(self, query: Query) -> int:
        return (timezone.localdate() - timezone.localtime(query.raised_at).date()).days


class QcQueryAttachmentOutput(serializers.ModelSerializer):
    class Meta:
        model = QueryAttachment
        fields = ["id", "name", "size", "sha256", "uploaded_at"]


class QcQueryMessageOutput(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", default=None, allow_null=True)
    side = serializers.CharField(help_text="qc, site or system")
    kind = serializers.CharField(help_text="message, answer, close or reopen")
    rescan_id = serializers.IntegerField(allow_null=True)
    attachments = QcQueryAttachmentOutput(many=True, read_only=True)

    class Meta:
        model = QueryMessage
        fields = ["id", "author", "side", "kind", "text", "rescan_id", "created_at", "attachments"]


class QcQueryDetailOutput(serializers.Serializer):
    query = QcQueryOutput()
    messages = QcQueryMessageOutput(many=True)


def _query_detail(query: Query) -> dict:
    return QcQueryDetailOutput({"query": query, "messages": selectors.query_thread(query=query)}).data


def _reload(request, query_id: int) -> dict:
    return _query_detail(selectors.query_get_for_user(user=request.user, query_id=query_id))


class QcQueryRaiseInput(serializers.Serializer):
    study_id = serializers.IntegerField(required=False, help_text="the study the query is about")
    subject_id = serializers.IntegerField(required=False, help_text="when no study arrived: the subject")
    visit_id = serializers.IntegerField(required=False, help_text="when no study arrived: the visit")
    procedure = serializers.CharField(required=False, allow_blank=True, max_length=32)
    category = serializers.ChoiceField(choices=Query.Category.choices)
    text = serializers.CharField(max_length=5000)
    due_date = serializers.DateField(required=False, help_text="default: a week from today")


@extend_schema(tags=["qc"])
class QcQueryListApi(APIView):
    @extend_schema(responses=QcQueryOutput(many=True), parameters=[
        OpenApiParameter("status", str, description="open, answered, closed, reopened, or active (not closed)"),
        OpenApiParameter("site", int, description="only this site"),
        OpenApiParameter("category", str, description="only this category"),
        OpenApiParameter("overdue", bool, description="only overdue queries")])
    def get(self, request):
        """Queries the caller may see (QC: their trials'; coordinators: their site's), longest open first."""
        if not selectors.queries_visible_to(user=request.user):
            raise Http404("No such page")
        site = request.query_params.get("site")
        if site is not None and not site.isdigit():
            raise serializers.ValidationError({"site": ["give an id"]})
        queries = selectors.query_list_for_user(
            user=request.user, status=request.query_params.get("status", ""), site_id=int(site) if site else None,
            category=request.query_params.get("category", ""),
            overdue_only=request.query_params.get("overdue", "").lower() in ("1", "true", "yes"))
        return Response(QcQueryOutput(queries, many=True).data)

    @extend_schema(request=QcQueryRaiseInput, responses={201: QcQueryDetailOutput})
    def post(self, request):
        """Raise a query about a study (study_id) or, when the study is missing, a subject's visit (subject_id,
        visit_id, procedure). QC analysts; the site is notified."""
        data = QcQueryRaiseInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        study = subject = visit = None
        if "study_id" in values:
            study = selectors.study_get_for_qc(user=request.user, study_id=values.pop("study_id"))
        elif "subject_id" in values:
            subject, visit = selectors.subject_visit_get_for_qc(user=request.user, subject_id=values["subject_id"],
                                                                visit_id=values.get("visit_id"))
        else:
            raise serializers.ValidationError({"study_id": ["give a study, or a subject (and visit)"]})
        values.pop("subject_id", None)
        values.pop("visit_id", None)
        query = services.query_raise(analyst=request.user, study=study, subject=subject, visit=visit, **values)
        return Response(_reload(request, query.pk), status=201)


@extend_schema(tags=["qc"], responses=QcQueryDetailOutput)
class QcQueryApi(APIView):
    def get(self, request, query_id: int):
        """A query with its conversation (QC analysts of the trial, coordinators of its site)."""
        return Response(_reload(request, query_id))


def _act(request, query_id: int, act) -> Response:
    query = selectors.query_get_for_user(user=request.user, query_id=query_id)
    try:
        act(query)
    except PermissionDenied as exc:
        raise Http404("No such query") from exc
    return Response(_reload(request, query_id))


class QcQueryMessageInput(serializers.Serializer):
    text = serializers.CharField(max_length=5000)


@extend_schema(tags=["qc"], request=QcQueryMessageInput, responses=QcQueryDetailOutput)
class QcQueryMessageApi(APIView):
    def post(self, request, query_id: int):
        """Add a message to the conversation (either side; not on a closed query)."""
        data = QcQueryMessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        return _act(request, query_id, lambda q: services.query_message_add(
            author=request.user, query=q, text=data.validated_data["text"]))


class QcQueryAnswerInput(serializers.Serializer):
    text = serializers.CharField(max_length=5000)
    rescan_id = serializers.IntegerField(required=False, allow_null=True,
                                         help_text="a study of the same subject/visit/procedure uploaded since")


@extend_schema(tags=["qc"], request=QcQueryAnswerInput, responses=QcQueryDetailOutput)
class QcQueryAnswerApi(APIView):
    def post(self, request, query_id: int):
        """Answer an open query, optionally linking a rescan (coordinators of the query's site)."""
        data = QcQueryAnswerInput(data=request.data)
        data.is_valid(raise_exception=True)

        def act(query):
            rescan = None
            rescan_id = data.validated_data.get("rescan_id")
            if rescan_id is not None:
                rescan = selectors.query_rescan_candidates(query=query).filter(pk=rescan_id).first()
                if rescan is None:
                    raise services.QcError("that study cannot be linked as a rescan of this query")
            services.query_answer(coordinator=request.user, query=query, text=data.validated_data["text"],
                                  rescan=rescan)
        return _act(request, query_id, act)


class QcQueryCloseInput(serializers.Serializer):
    note = serializers.CharField(allow_blank=True, required=False, max_length=500)


@extend_schema(tags=["qc"], request=QcQueryCloseInput, responses=QcQueryDetailOutput)
class QcQueryCloseApi(APIView):
    def post(self, request, query_id: int):
        """Close the query (QC analysts)."""
        data = QcQueryCloseInput(data=request.data)
        data.is_valid(raise_exception=True)
        return _act(request, query_id, lambda q: services.query_close(analyst=request.user, query=q,
                                                                      **data.validated_data))


class QcQueryReopenInput(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)
    due_date = serializers.DateField(required=False)


@extend_schema(tags=["qc"], request=QcQueryReopenInput, responses=QcQueryDetailOutput)
class QcQueryReopenApi(APIView):
    def post(self, request, query_id: int):
        """Reopen an answered or closed query with a reason (QC analysts); the site is notified."""
        data = QcQueryReopenInput(data=request.data)
        data.is_valid(raise_exception=True)
        return _act(request, query_id, lambda q: services.query_reopen(analyst=request.user, query=q,
                                                                       **data.validated_data))


class QcSiteMetricsOutput(serializers.Serializer):
    trial = serializers.CharField(source="site.trial.protocol_number")
    site = serializers.CharField(source="site.number")
    site_id = serializers.IntegerField(source="site.pk")
    month = serializers.CharField(help_text="YYYY-MM (UTC)")
    first_versions_decided = serializers.IntegerField()
    first_pass_accepted = serializers.IntegerField()
    first_pass_rate = serializers.FloatField(allow_null=True, help_text="accepted / decided, first versions")
    studies_checked = serializers.IntegerField(help_text="studies first checked that month")
    queries_raised = serializers.IntegerField()
    queries_per_study = serializers.FloatField(allow_null=True)
    queries_closed = serializers.IntegerField()
    median_resolution_days = serializers.FloatField(allow_null=True, help_text="raised to closed, closed that month")


@extend_schema(tags=["qc"], responses=QcSiteMetricsOutput(many=True), parameters=[
    OpenApiParameter("site", int, description="only this site")])
class QcSiteMetricsApi(APIView):
    def get(self, request):
        """Site QC metrics per site and month (QC analysts, trial managers, sponsor viewers)."""
        if not selectors.metrics_trial_ids(user=request.user):
            raise Http404("No such page")
        site = request.query_params.get("site")
        if site is not None and not site.isdigit():
            raise serializers.ValidationError({"site": ["give an id"]})
        rows = selectors.site_qc_metrics_for_user(user=request.user, site_id=int(site) if site else None)
        return Response(QcSiteMetricsOutput(rows, many=True).data)
