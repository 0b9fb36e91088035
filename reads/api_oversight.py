"""REST API of reader oversight: the agreement and performance report (trial managers and auditors)."""

from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from .metrics import agreement_report_for_user


@extend_schema(tags=["reads"], responses=OpenApiTypes.OBJECT)
class TrialAgreementApi(APIView):
    def get(self, request, trial_id: int):
        """Reader agreement (Cohen's / Fleiss' kappa, percent agreement), adjudication rate, per-reader
        disagreement index, adjudicator agreement and throughput, overall and per month: the same JSON as
        ``manage.py reader_agreement --json``. See reads/metrics.py for the definitions."""
        _, report = agreement_report_for_user(user=request.user, trial_id=trial_id)
        return Response(report)
