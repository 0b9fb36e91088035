"""De-identification REST API: a trial's profile versions (trial managers)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from deid.engine import OPTIONS

from .selectors import profile_list_for_user, trial_get_for_mapping
from .services import profile_create_version, profile_current


class ProfileOutput(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    options = serializers.ListField(child=serializers.CharField())
    safe_private = serializers.ListField()
    pixel_regions = serializers.ListField()
    purge_raw_after_days = serializers.IntegerField(allow_null=True)
    ocr_text_review = serializers.BooleanField()
    ocr_min_confidence = serializers.IntegerField()
    note = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", default=None)
    created_at = serializers.DateTimeField()


class ProfileInput(serializers.Serializer):
    options = serializers.ListField(child=serializers.ChoiceField(choices=sorted(OPTIONS)), required=False)
    safe_private = serializers.ListField(child=serializers.ListField(min_length=2, max_length=2),
                                         required=False, help_text='[["CREATOR", "0x10"], ...]')
    pixel_regions = serializers.ListField(child=serializers.DictField(), required=False,
                                          help_text='[{"manufacturer", "model", "rows", "columns", '
                                                    '"boxes": [[x, y, width, height], ...]}]')
    purge_raw_after_days = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    ocr_text_review = serializers.BooleanField(required=False, help_text="left out: as the current version")
    ocr_min_confidence = serializers.IntegerField(min_value=0, max_value=100, required=False,
                                                  help_text="left out: as the current version")
    note = serializers.CharField(allow_blank=True, required=False)


class ProfileListApi(APIView):
    @extend_schema(tags=["deid"], responses=ProfileOutput(many=True))
    def get(self, request, trial_id: int):
        """Every version, newest first (version 1, the Basic Profile, is created when first needed)."""
        trial = trial_get_for_mapping(user=request.user, trial_id=trial_id)
        profile_current(trial=trial)
        return Response(ProfileOutput(profile_list_for_user(user=request.user, trial=trial), many=True).data)

    @extend_schema(tags=["deid"], request=ProfileInput, responses={201: ProfileOutput})
    def post(self, request, trial_id: int):
        """Create the next version; it applies to every instance de-identified from now on."""
        trial = trial_get_for_mapping(user=request.user, trial_id=trial_id)
        data = ProfileInput(data=request.data)
        data.is_valid(raise_exception=True)
        profile = profile_create_version(actor=request.user, trial=trial, **data.validated_data)
        return Response(ProfileOutput(profile).data, status=status.HTTP_201_CREATED)
