"""REST API of trials: set-up, protocol versions, sites, scanners, qualification, training, subjects, roles.

Every object is reached through a selector that takes the user (404 when not
visible); every write goes through a service (audited, permission-checked).
"""

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .models import (
    Membership,
    ProtocolVersion,
    Role,
    Scanner,
    Site,
    SiteQualification,
    Subject,
    TrainingRecord,
    Trial,
)

User = get_user_model()


# -- outputs ------------------------------------------------------------------------------------------------

class TrialOutput(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = ["id", "protocol_number", "title", "sponsor", "phase", "status", "sponsor_blinded",
                  "readers_blinded_to_site"]


class SiteOutput(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "number", "name", "country", "time_zone", "status"]


class ProtocolVersionOutput(serializers.ModelSerializer):
    class Meta:
        model = ProtocolVersion
        fields = ["id", "label", "effective_date", "approved_on", "approved_by", "change_summary", "is_current",
                  "charter", "created_at"]


class ScannerOutput(serializers.ModelSerializer):
    class Meta:
        model = Scanner
        fields = ["id", "site", "manufacturer", "model", "serial", "software_version", "station_name", "modality",
                  "active"]


class QualificationOutput(serializers.ModelSerializer):
    protocol_version = serializers.CharField(source="protocol_version.label")
    scanner = ScannerOutput()
    site = SiteOutput()
    submitted_by = serializers.CharField(source="submitted_by.username", default=None)
    reviewer = serializers.CharField(source="reviewer.username", default=None)

    class Meta:
        model = SiteQualification
        fields = ["id", "site", "scanner", "protocol_version", "procedure", "status", "study_reference",
                  "submitted_by", "submitted_at", "reviewer", "decided_at", "decision_reason", "invalidated_at",
                  "invalidated_reason"]


class TrainingOutput(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    protocol_version = serializers.CharField(source="protocol_version.label")

    class Meta:
        model = TrainingRecord
        fields = ["id", "user", "protocol_version", "topic", "trained_on", "trainer", "evidence_sha256"]


class SubjectOutput(serializers.ModelSerializer):
    site = serializers.CharField(source="site.number")

    class Meta:
        model = Subject
        fields = ["id", "code", "site", "enrollment_date", "status"]


class MembershipOutput(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    site = serializers.CharField(source="site.number", default=None)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "site", "granted_at"]


class ProcedureStatusOutput(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    modalities = serializers.ListField(child=serializers.CharField())
    qualified = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.CharField())


class ChangeOutput(serializers.Serializer):
    kind = serializers.CharField()
    path = serializers.CharField()
    before = serializers.JSONField()
    after = serializers.JSONField()


# -- trials and versions ------------------------------------------------------------------------------------

@extend_schema(tags=["trials"])
class TrialListApi(generics.ListAPIView):
    serializer_class = TrialOutput
    filterset_fields = ["status", "phase"]
    ordering_fields = ["protocol_number", "created_at"]

    def get_queryset(self):
        return selectors.trial_list_for_user(user=self.request.user)


class TrialUpdateInput(serializers.Serializer):
    reason = serializers.CharField(help_text="why the trial record is corrected (kept in its history)")
    title = serializers.CharField(max_length=300, required=False)
    sponsor = serializers.CharField(max_length=200, required=False)
    phase = serializers.ChoiceField(choices=Trial.Phase.choices, required=False)
    status = serializers.ChoiceField(choices=Trial.Status.choices, required=False)
    sponsor_blinded = serializers.BooleanField(required=False)


@extend_schema(tags=["trials"])
class TrialDetailApi(APIView):
    @extend_schema(responses=TrialOutput)
    def get(self, request, trial_id: int):
        return Response(TrialOutput(selectors.trial_get_for_user(user=request.user, trial_id=trial_id)).data)

    @extend_schema(request=TrialUpdateInput, responses=TrialOutput)
    def patch(self, request, trial_id: int):
        """Correct the trial record (trial managers); the reason is required."""
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        data = TrialUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        reason = changes.pop("reason")
        trial = services.trial_update(actor=request.user, trial=trial, reason=reason, **changes)
        return Response(TrialOutput(trial).data)


class ProtocolVersionInput(serializers.Serializer):
    label = serializers.CharField(max_length=30)
    effective_date = serializers.DateField()
    approved_on = serializers.DateField()
    approved_by = serializers.CharField(allow_blank=True, required=False, default="")
    change_summary = serializers.CharField(allow_blank=True, required=False, default="")
    charter = serializers.JSONField()


@extend_schema(tags=["protocol versions"])
class ProtocolVersionListApi(APIView):
    @extend_schema(responses=ProtocolVersionOutput(many=True))
    def get(self, request, trial_id: int):
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        versions = selectors.protocol_version_list_for_user(user=request.user, trial=trial)
        return Response(ProtocolVersionOutput(versions, many=True).data)

    @extend_schema(request=ProtocolVersionInput, responses={201: ProtocolVersionOutput})
    def post(self, request, trial_id: int):
        """Release a new version (amendment); it becomes current. A bad charter answers 400 per field."""
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        data = ProtocolVersionInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.protocol_version_release(actor=request.user, trial=trial, **data.validated_data)
        return Response(ProtocolVersionOutput(version).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["protocol versions"])
class ProtocolVersionDetailApi(generics.RetrieveAPIView):
    serializer_class = ProtocolVersionOutput

    def get_object(self):
        return selectors.protocol_version_get_for_user(user=self.request.user, trial_id=self.kwargs["trial_id"],
                                                       version_id=self.kwargs["version_id"])


@extend_schema(tags=["protocol versions"], responses=ChangeOutput(many=True),
               parameters=[OpenApiParameter("against", int, description="id of the earlier version")])
class ProtocolVersionDiffApi(APIView):
    def get(self, request, trial_id: int, version_id: int):
        new = selectors.protocol_version_get_for_user(user=request.user, trial_id=trial_id, version_id=version_id)
        against = request.query_params.get("against")
        if not (against or "").isdigit():
            return Response({"against": ["give the id of the version to compare with"]},
                            status=status.HTTP_400_BAD_REQUEST)
        old = selectors.protocol_version_get_for_user(user=request.user, trial_id=trial_id,
                                                      version_id=int(against))
        return Response(ChangeOutput(selectors.protocol_version_diff(old=old, new=new), many=True).data)


# -- sites and scanners -------------------------------------------------------------------------------------

class SiteInput(serializers.Serializer):
    number = serializers.CharField(max_length=20)
    name = serializers.CharField(max_length=200)
    country = serializers.CharField(max_length=2)
    time_zone = serializers.CharField(max_length=64, default="UTC")


@extend_schema(tags=["sites"])
class SiteListApi(APIView):
    @extend_schema(responses=SiteOutput(many=True))
    def get(self, request, trial_id: int):
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        return Response(SiteOutput(selectors.site_list_for_user(user=request.user, trial=trial), many=True).data)

    @extend_schema(request=SiteInput, responses={201: SiteOutput})
    def post(self, request, trial_id: int):
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        data = SiteInput(data=request.data)
        data.is_valid(raise_exception=True)
        site = services.site_create(actor=request.user, trial=trial, **data.validated_data)
        return Response(SiteOutput(site).data, status=status.HTTP_201_CREATED)


class SiteUpdateInput(serializers.Serializer):
    reason = serializers.CharField(help_text="why the site record is corrected (kept in its history)")
    name = serializers.CharField(max_length=200, required=False)
    country = serializers.CharField(max_length=2, required=False)
    time_zone = serializers.CharField(max_length=64, required=False)
    status = serializers.ChoiceField(choices=Site.Status.choices, required=False)


@extend_schema(tags=["sites"])
class SiteDetailApi(APIView):
    @extend_schema(responses=SiteOutput)
    def get(self, request, trial_id: int, site_id: int):
        return Response(SiteOutput(selectors.site_get_for_user(user=request.user, trial_id=trial_id,
                                                               site_id=site_id)).data)

    @extend_schema(request=SiteUpdateInput, responses=SiteOutput)
    def patch(self, request, trial_id: int, site_id: int):
        """Correct a site record (trial managers), with a reason."""
        site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
        data = SiteUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        reason = changes.pop("reason")
        return Response(SiteOutput(services.site_update(actor=request.user, site=site, reason=reason,
                                                        **changes)).data)


class ScannerUpdateInput(serializers.Serializer):
    reason = serializers.CharField(help_text="e.g. 'vendor software upgrade'; kept in the scanner's history")
    software_version = serializers.CharField(max_length=64, required=False, allow_blank=True)
    station_name = serializers.CharField(max_length=16, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)


@extend_schema(tags=["sites"], request=ScannerUpdateInput, responses=ScannerOutput)
class ScannerUpdateApi(APIView):
    def patch(self, request, scanner_id: int):
        """Record a scanner change; a changed identity (software) invalidates its qualifications."""
        scanner = selectors.scanner_get_for_user(user=request.user, scanner_id=scanner_id)
        data = ScannerUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        reason = changes.pop("reason")
        return Response(ScannerOutput(services.scanner_update(actor=request.user, scanner=scanner, reason=reason,
                                                              **changes)).data)


class ScannerInput(serializers.Serializer):
    manufacturer = serializers.CharField(max_length=64)
    model = serializers.CharField(max_length=64)
    serial = serializers.CharField(max_length=64)
    modality = serializers.CharField(max_length=16)
    software_version = serializers.CharField(max_length=64, allow_blank=True, default="")
    station_name = serializers.CharField(max_length=16, allow_blank=True, default="")


@extend_schema(tags=["sites"])
class ScannerListApi(APIView):
    @extend_schema(responses=ScannerOutput(many=True))
    def get(self, request, trial_id: int, site_id: int):
        site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
        return Response(ScannerOutput(selectors.scanner_list_for_user(user=request.user, site=site), many=True).data)

    @extend_schema(request=ScannerInput, responses={201: ScannerOutput})
    def post(self, request, trial_id: int, site_id: int):
        site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
        data = ScannerInput(data=request.data)
        data.is_valid(raise_exception=True)
        scanner = services.scanner_register(actor=request.user, site=site, **data.validated_data)
        return Response(ScannerOutput(scanner).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["qualification"], responses=ProcedureStatusOutput(many=True))
class SiteQualificationOverviewApi(APIView):
    def get(self, request, trial_id: int, site_id: int):
        """Per charter procedure: qualified or not, and what is missing."""
        site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
        overview = selectors.site_qualification_overview(user=request.user, site=site)
        return Response(ProcedureStatusOutput(overview, many=True).data)


# -- qualification ------------------------------------------------------------------------------------------

class QualificationRequestInput(serializers.Serializer):
    scanner = serializers.IntegerField()
    procedure = serializers.CharField(max_length=32)


@extend_schema(tags=["qualification"])
class QualificationListApi(APIView):
    @extend_schema(responses=QualificationOutput(many=True))
    def get(self, request):
        """The review queue: submitted qualifications awaiting a decision, oldest first."""
        queue = selectors.qualification_review_queue_for_user(user=request.user)
        return Response(QualificationOutput(queue, many=True).data)

    @extend_schema(request=QualificationRequestInput, responses={201: QualificationOutput})
    def post(self, request):
        """Open a qualification for a procedure on one of the site's scanners."""
        data = QualificationRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        scanner = selectors.scanner_get_for_user(user=request.user, scanner_id=data.validated_data["scanner"])
        qualification = services.qualification_request(actor=request.user, site=scanner.site, scanner=scanner,
                                                       procedure=data.validated_data["procedure"])
        return Response(QualificationOutput(qualification).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["qualification"])
class QualificationDetailApi(generics.RetrieveAPIView):
    serializer_class = QualificationOutput

    def get_object(self):
        return selectors.qualification_get_for_user(user=self.request.user,
                                                    qualification_id=self.kwargs["qualification_id"])


class QualificationSubmitInput(serializers.Serializer):
    study_reference = serializers.CharField(max_length=128)


@extend_schema(tags=["qualification"], request=QualificationSubmitInput, responses=QualificationOutput)
class QualificationSubmitApi(APIView):
    def post(self, request, qualification_id: int):
        qualification = selectors.qualification_get_for_user(user=request.user, qualification_id=qualification_id)
        data = QualificationSubmitInput(data=request.data)
        data.is_valid(raise_exception=True)
        qualification = services.qualification_submit(actor=request.user, qualification=qualification,
                                                      **data.validated_data)
        return Response(QualificationOutput(qualification).data)


class QualificationDecideInput(serializers.Serializer):
    approve = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True, required=False, default="")


@extend_schema(tags=["qualification"], request=QualificationDecideInput, responses=QualificationOutput)
class QualificationDecideApi(APIView):
    def post(self, request, qualification_id: int):
        qualification = selectors.qualification_get_for_user(user=request.user, qualification_id=qualification_id)
        data = QualificationDecideInput(data=request.data)
        data.is_valid(raise_exception=True)
        qualification = services.qualification_decide(actor=request.user, qualification=qualification,
                                                      **data.validated_data)
        return Response(QualificationOutput(qualification).data)


# -- training -----------------------------------------------------------------------------------------------

class TrainingInput(serializers.Serializer):
    user = serializers.CharField(help_text="username of the trained site user")
    topic = serializers.CharField(max_length=200)
    trained_on = serializers.DateField()
    trainer = serializers.CharField(max_length=200)
    evidence = serializers.FileField(required=False)


@extend_schema(tags=["training"])
class TrainingListApi(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(responses=TrainingOutput(many=True))
    def get(self, request, trial_id: int, site_id: int):
        site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
        records = selectors.training_record_list_for_user(user=request.user, site=site)
        return Response(TrainingOutput(records, many=True).data)

    @extend_schema(request={"multipart/form-data": TrainingInput}, responses={201: TrainingOutput})
    def post(self, request, trial_id: int, site_id: int):
        """Record training on the current protocol version, with an optional evidence file."""
        site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
        data = TrainingInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        user = get_object_or_404(User, username=values.pop("user"), memberships__site=site)
        version = get_object_or_404(ProtocolVersion, trial_id=site.trial_id, is_current=True)
        record = services.training_record_add(actor=request.user, user=user, site=site, protocol_version=version,
                                              **values)
        return Response(TrainingOutput(record).data, status=status.HTTP_201_CREATED)


# -- subjects and roles -------------------------------------------------------------------------------------

class EnrollInput(serializers.Serializer):
    site = serializers.IntegerField()
    code = serializers.CharField(max_length=32)
    patient_id = serializers.CharField(max_length=64, write_only=True,
                                       help_text="the site's local patient ID; stored only as a keyed hash")
    enrollment_date = serializers.DateField()


@extend_schema(tags=["subjects"])
class SubjectListApi(APIView):
    @extend_schema(responses=SubjectOutput(many=True))
    def get(self, request, trial_id: int):
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        return Response(SubjectOutput(selectors.subject_list_for_user(user=request.user, trial=trial),
                                      many=True).data)

    @extend_schema(request=EnrollInput, responses={201: SubjectOutput})
    def post(self, request, trial_id: int):
        data = EnrollInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        site = selectors.site_get_for_user(user=request.user, trial_id=trial_id, site_id=values.pop("site"))
        subject = services.subject_enroll(actor=request.user, site=site, **values)
        return Response(SubjectOutput(subject).data, status=status.HTTP_201_CREATED)


class MembershipInput(serializers.Serializer):
    user = serializers.CharField(help_text="username")
    role = serializers.ChoiceField(choices=Role.choices)
    site = serializers.IntegerField(required=False, allow_null=True, default=None)


@extend_schema(tags=["roles"])
class MembershipListApi(APIView):
    @extend_schema(responses=MembershipOutput(many=True))
    def get(self, request, trial_id: int):
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        return Response(MembershipOutput(selectors.membership_list_for_user(user=request.user, trial=trial),
                                         many=True).data)

    @extend_schema(request=MembershipInput, responses={201: MembershipOutput})
    def post(self, request, trial_id: int):
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        data = MembershipInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = get_object_or_404(User, username=data.validated_data["user"], is_active=True)
        site_id = data.validated_data["site"]
        site = get_object_or_404(Site, pk=site_id, trial=trial) if site_id else None
        membership = services.membership_grant(actor=request.user, user=user, trial=trial,
                                               role=data.validated_data["role"], site=site)
        return Response(MembershipOutput(membership).data, status=status.HTTP_201_CREATED)


class RevokeInput(serializers.Serializer):
    reason = serializers.CharField()


@extend_schema(tags=["roles"], request=RevokeInput, responses={204: None})
class MembershipRevokeApi(APIView):
    def post(self, request, trial_id: int, membership_id: int):
        trial = selectors.trial_get_for_user(user=request.user, trial_id=trial_id)
        membership = get_object_or_404(selectors.membership_list_for_user(user=request.user, trial=trial),
                                       pk=membership_id)
        data = RevokeInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.membership_revoke(actor=request.user, membership=membership, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)
