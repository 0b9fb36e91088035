"""REST API of QC: the queue, a study's automated results, accept and reject (QC analysts)."""

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from intake.models import ImagingStudy

from . import selectors, services
from .models import CheckResult, QcDecision, QcRun


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
