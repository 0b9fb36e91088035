"""REST API of intake: the unassigned inbox, expected vs. received and the DICOM senders.

Every object is reached through a selector that takes the user (404 when not visible); every write goes
through a service (audited, permission-checked). STOW-RS lives in intake.stow.
"""

from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from trials.models import Visit
from trials.selectors import site_get_for_user, site_list_for_user, subject_get_for_user, trial_get_for_user

from . import selectors, services
from .models import GatewayPeer, ImagingStudy
from .selectors import Expectation

# -- outputs ------------------------------------------------------------------------------------------------


class StudyOutput(serializers.ModelSerializer):
    trial = serializers.CharField(source="trial.protocol_number")
    site = serializers.CharField(source="site.number")
    site_id = serializers.IntegerField()
    subject = serializers.CharField(source="subject.code", default=None)
    visit = serializers.CharField(source="visit.timepoint", default=None)
    # a plain string: the status names are ImagingStudy's own, documented on the model
    status = serializers.CharField()
    instance_count = serializers.IntegerField(default=None)
    received_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = ImagingStudy
        fields = ["id", "trial", "site", "site_id", "subject", "visit", "procedure", "version", "status",
                  "modality", "acquisition_date", "unassigned_reason", "instance_count", "received_at"]


class ExpectedOutput(serializers.Serializer):
    subject_id = serializers.IntegerField()
    subject_code = serializers.CharField()
    subject_status = serializers.CharField()
    site_id = serializers.IntegerField()
    site_number = serializers.CharField()
    visit_id = serializers.IntegerField()
    timepoint = serializers.CharField()
    visit_label = serializers.CharField()
    day = serializers.IntegerField(help_text="nominal day from enrollment")
    nominal_date = serializers.DateField()
    window_start = serializers.DateField()
    window_end = serializers.DateField()
    procedure = serializers.CharField()
    status = serializers.CharField(help_text="received, due (window open), overdue (window closed, nothing "
                                             "received) or not_due (window not open yet)")
    expected = serializers.BooleanField(help_text="its window has opened")
    study_id = serializers.IntegerField(allow_null=True, help_text="the latest version that counts")
    study_status = serializers.CharField()
    versions = serializers.IntegerField(help_text="versions that count as received")
    rejected_versions = serializers.IntegerField()


# -- the unassigned inbox -----------------------------------------------------------------------------------

@extend_schema(tags=["intake"], responses=StudyOutput(many=True), parameters=[
    OpenApiParameter("trial", int, description="only this trial"),
    OpenApiParameter("site", int, description="only this site")])
class InboxListApi(APIView):
    def get(self, request):
        """Studies awaiting assignment, oldest first: coordinators their sites, trial managers every site."""
        if not selectors.inbox_visible_to(user=request.user):
            raise Http404("No such page")
        filters = {}
        for name in ("trial", "site"):
            value = request.query_params.get(name)
            if value is not None:
                if not value.isdigit():
                    raise serializers.ValidationError({name: ["give an id"]})
                filters[f"{name}_id"] = int(value)
        studies = selectors.unassigned_study_list_for_user(user=request.user, **filters)
        return Response(StudyOutput(studies, many=True).data)


class StudyAssignInput(serializers.Serializer):
    subject = serializers.IntegerField()
    visit = serializers.IntegerField()
    procedure = serializers.CharField(max_length=32)


@extend_schema(tags=["intake"], request=StudyAssignInput, responses=StudyOutput)
class StudyAssignApi(APIView):
    def post(self, request, study_id: int):
        """Attach an unassigned study to its subject, visit and procedure (the site's coordinators)."""
        study = selectors.inbox_study_get_for_user(user=request.user, study_id=study_id)
        data = StudyAssignInput(data=request.data)
        data.is_valid(raise_exception=True)
        subject = subject_get_for_user(user=request.user, subject_id=data.validated_data["subject"])
        visit = Visit.objects.filter(pk=data.validated_data["visit"], subject=subject).first()
        if visit is None:
            raise serializers.ValidationError({"visit": [f"choose one of {subject.code}'s visits"]})
        services.study_assign(actor=request.user, study=study, subject=subject, visit=visit,
                              procedure=data.validated_data["procedure"])
        return Response(StudyOutput(selectors.inbox_study_get_for_user(user=request.user, study_id=study_id)).data)


class StudyRejectInput(serializers.Serializer):
    reason = serializers.CharField(max_length=300, help_text="why the study is not a trial scan of this site")


@extend_schema(tags=["intake"], request=StudyRejectInput, responses=StudyOutput)
class StudyRejectApi(APIView):
    def post(self, request, study_id: int):
        """Refuse an unassigned study with a reason (the site's coordinators); it stays on record."""
        study = selectors.inbox_study_get_for_user(user=request.user, study_id=study_id)
        data = StudyRejectInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.study_reject_unassigned(actor=request.user, study=study, reason=data.validated_data["reason"])
        return Response(StudyOutput(selectors.inbox_study_get_for_user(user=request.user, study_id=study_id)).data)


# -- expected vs. received ----------------------------------------------------------------------------------

class ExpectedPagination(PageNumberPagination):
    # a row is one procedure of one visit: a large trial has tens of thousands
    page_size = 1000
    page_size_query_param = "page_size"
    max_page_size = 10000


@extend_schema(tags=["intake"], responses=ExpectedOutput(many=True), parameters=[
    OpenApiParameter("site", int, description="only this site (for roles that see every site)"),
    OpenApiParameter("status", str, enum=[e.value for e in Expectation], description="only rows in this status")])
class ExpectedListApi(APIView):
    pagination_class = ExpectedPagination

    def get(self, request, trial_id: int):
        """Per subject, visit and procedure of the schedule: received, due, overdue or not yet due today."""
        trial = trial_get_for_user(user=request.user, trial_id=trial_id)
        if not site_list_for_user(user=request.user, trial=trial).exists():
            raise Http404("No such page")  # readers see the trial but no site, so no subject either
        site = request.query_params.get("site")
        if site is not None:
            if not site.isdigit():
                raise serializers.ValidationError({"site": ["give a site id"]})
            site = site_get_for_user(user=request.user, trial_id=trial.pk, site_id=int(site)).pk
        wanted = request.query_params.get("status")
        if wanted is not None and wanted not in Expectation._value2member_map_:
            raise serializers.ValidationError({"status": [f"one of {', '.join(e.value for e in Expectation)}"]})
        rows = selectors.expected_procedure_list_for_user(user=request.user, trial=trial, site_id=site)
        if wanted is not None:
            rows = [row for row in rows if row.status == wanted]
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(ExpectedOutput(page, many=True).data)


# -- DICOM senders ------------------------------------------------------------------------------------------

class GatewayPeerOutput(serializers.ModelSerializer):
    trial = serializers.CharField(source="site.trial.protocol_number")
    site = serializers.CharField(source="site.number")
    site_id = serializers.IntegerField()
    source_address = serializers.CharField(allow_null=True, help_text="null: any address")

    class Meta:
        model = GatewayPeer
        fields = ["id", "trial", "site", "site_id", "ae_title", "source_address", "active"]


class GatewayPeerCreateInput(serializers.Serializer):
    site = serializers.IntegerField(help_text="id of the site the sender belongs to")
    ae_title = serializers.CharField(max_length=16, help_text="the calling AE title the sender uses")
    source_address = serializers.CharField(max_length=45, required=False, allow_null=True, allow_blank=True,
                                           help_text="IPv4 or IPv6; when set, other addresses are refused")


class GatewayPeerUpdateInput(serializers.Serializer):
    reason = serializers.CharField(max_length=500, help_text="why the sender changes (kept in its history)")
    ae_title = serializers.CharField(max_length=16, required=False)
    source_address = serializers.CharField(max_length=45, required=False, allow_null=True, allow_blank=True,
                                           help_text="null or empty: accept any address")
    active = serializers.BooleanField(required=False, help_text="false: the gateway refuses the sender")


@extend_schema(tags=["intake"])
class GatewayPeerListApi(APIView):
    def _trial(self, request, trial_id: int):
        trial = selectors.gateway_peer_trial_list_for_user(user=request.user).filter(pk=trial_id).first()
        if trial is None:
            raise Http404("No such trial")
        return trial

    @extend_schema(responses=GatewayPeerOutput(many=True), parameters=[
        OpenApiParameter("site", int, description="only this site")])
    def get(self, request, trial_id: int):
        """The trial's DICOM senders: trial managers every site, site coordinators their own (read-only)."""
        trial = self._trial(request, trial_id)
        site = request.query_params.get("site")
        if site is not None and not site.isdigit():
            raise serializers.ValidationError({"site": ["give a site id"]})
        peers = selectors.gateway_peer_list_for_user(user=request.user, trial=trial,
                                                     site_id=int(site) if site is not None else None)
        return Response(GatewayPeerOutput(peers, many=True).data)

    @extend_schema(request=GatewayPeerCreateInput, responses={201: GatewayPeerOutput})
    def post(self, request, trial_id: int):
        """Register a sender for one of the trial's sites (trial managers)."""
        trial = self._trial(request, trial_id)
        data = GatewayPeerCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        site = selectors.gateway_peer_site_list_for_user(user=request.user, trial=trial).filter(
            pk=values.pop("site")).first()
        if site is None:
            raise serializers.ValidationError({"site": ["not a site of this trial"]})
        peer = services.gateway_peer_register(actor=request.user, site=site, **values)
        return Response(GatewayPeerOutput(peer).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["intake"])
class GatewayPeerDetailApi(APIView):
    @extend_schema(responses=GatewayPeerOutput)
    def get(self, request, peer_id: int):
        return Response(GatewayPeerOutput(selectors.gateway_peer_get_for_user(user=request.user,
                                                                             peer_id=peer_id)).data)

    @extend_schema(request=GatewayPeerUpdateInput, responses=GatewayPeerOutput)
    def patch(self, request, peer_id: int):
        """Correct the AE title or source address, or (de)activate the sender (trial managers), with a reason.
        All asked changes apply together or none does."""
        peer = selectors.gateway_peer_get_for_user(user=request.user, peer_id=peer_id)
        data = GatewayPeerUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        reason, active = values.pop("reason"), values.pop("active", None)
        if not values and active is None:
            raise serializers.ValidationError({"detail": ["give ae_title, source_address or active"]})
        with transaction.atomic():  # two services, one answer
            if values:
                peer = services.gateway_peer_update(actor=request.user, peer=peer, reason=reason, **values)
            if active is not None and (active != peer.active or not values):  # alone, a no-op answers 409
                peer = services.gateway_peer_set_active(actor=request.user, peer=peer, active=active, reason=reason)
        return Response(GatewayPeerOutput(selectors.gateway_peer_get_for_user(user=request.user,
                                                                             peer_id=peer_id)).data)


# -- what arrived through every door ------------------------------------------------------------------------

from .models import Submission  # noqa: E402  (kept beside the part of this module that serves it)


class SubmissionOutput(serializers.ModelSerializer):
    trial = serializers.CharField(source="trial.protocol_number")
    trial_id = serializers.IntegerField()
    site = serializers.CharField(source="site.number")
    site_id = serializers.IntegerField()
    calling_ae = serializers.CharField(help_text="the sender's AE title (DICOM C-STORE); empty for the other "
                                                 "channels")
    submitted_by = serializers.CharField(source="submitted_by.username", default=None, allow_null=True,
                                         help_text="the signed-in user (web, STOW-RS); null for C-STORE")
    finished_at = serializers.DateTimeField(allow_null=True, help_text="null: still open")

    class Meta:
        model = Submission
        fields = ["id", "trial", "trial_id", "site", "site_id", "channel", "calling_ae", "submitted_by",
                  "started_at", "finished_at", "accepted", "duplicates", "rejected"]


class SubmissionResultOutput(serializers.Serializer):
    file = serializers.CharField(help_text="the file's base name as sent")
    outcome = serializers.ChoiceField(choices=list(selectors.RESULT_ORDER))
    reason = serializers.CharField(allow_blank=True, help_text="why it was refused (or a note on a duplicate)")


class SubmissionStudyOutput(serializers.ModelSerializer):
    subject = serializers.CharField(source="subject.code", default=None, allow_null=True)
    visit = serializers.CharField(source="visit.timepoint", default=None, allow_null=True)
    status = serializers.CharField()
    received = serializers.IntegerField(help_text="instances of this study from this submission")

    class Meta:
        model = ImagingStudy
        fields = ["id", "subject", "visit", "procedure", "version", "status", "modality", "unassigned_reason",
                  "received"]


class SubmissionDetailOutput(SubmissionOutput):
    results = SubmissionResultOutput(many=True, source="ordered_results",
                                     help_text="per file: refused first, then duplicates, then accepted")
    studies = SubmissionStudyOutput(many=True, source="filed_studies",
                                    help_text="the studies this submission's instances were filed into")

    class Meta(SubmissionOutput.Meta):
        fields = [*SubmissionOutput.Meta.fields, "results", "studies"]


class SubmissionFilterInput(serializers.Serializer):
    trial = serializers.IntegerField(required=False, min_value=1, help_text="only this trial")
    site = serializers.IntegerField(required=False, min_value=1, help_text="only this site")
    channel = serializers.ChoiceField(choices=Submission.Channel.choices, required=False)
    refused = serializers.BooleanField(required=False, default=False,
                                       help_text="only submissions with at least one refused file")
    started_from = serializers.DateField(required=False, help_text="opened on or after this day (UTC)")
    started_to = serializers.DateField(required=False, help_text="opened on or before this day (UTC)")


class SubmissionPagination(PageNumberPagination):
    page_size = 50


@extend_schema(tags=["intake"], responses=SubmissionOutput(many=True), parameters=[SubmissionFilterInput])
class SubmissionListApi(APIView):
    pagination_class = SubmissionPagination

    def get(self, request):
        """Submissions of every channel, newest first: coordinators their sites, trial managers and roles
        that see every site all sites of their trials."""
        if not selectors.submissions_visible_to(user=request.user):
            raise Http404("No such page")
        data = SubmissionFilterInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        filters = data.validated_data
        submissions = selectors.submission_list_for_user(
            user=request.user, trial_id=filters.get("trial"), site_id=filters.get("site"),
            channel=filters.get("channel"), refused_only=filters["refused"],
            started_from=filters.get("started_from"), started_to=filters.get("started_to"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(submissions, request, view=self)
        return paginator.get_paginated_response(SubmissionOutput(page, many=True).data)


@extend_schema(tags=["intake"], responses=SubmissionDetailOutput)
class SubmissionDetailApi(APIView):
    def get(self, request, submission_id: int):
        """One submission with its per-file results and the studies its instances went to; 404 when not
        visible."""
        submission = selectors.submission_get_for_user_any_channel(user=request.user, submission_id=submission_id)
        groups = selectors.submission_results_grouped(user=request.user, submission=submission)
        submission.ordered_results = [row for rows in groups.values() for row in rows]
        submission.filed_studies = selectors.submission_study_list_for_user(user=request.user,
                                                                            submission=submission)
        return Response(SubmissionDetailOutput(submission).data)
