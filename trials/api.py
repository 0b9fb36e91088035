from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers

from .models import Site, Trial
from .selectors import site_get_for_user, site_list_for_user, trial_get_for_user, trial_list_for_user


class TrialOutput(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = ["id", "protocol_number", "title", "sponsor", "phase", "status", "sponsor_blinded"]


class SiteOutput(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "number", "name", "country", "time_zone", "status"]


@extend_schema(tags=["trials"])
class TrialListApi(generics.ListAPIView):
    serializer_class = TrialOutput
    filterset_fields = ["status", "phase"]
    ordering_fields = ["protocol_number", "created_at"]

    def get_queryset(self):
        return trial_list_for_user(user=self.request.user)


@extend_schema(tags=["trials"])
class TrialDetailApi(generics.RetrieveAPIView):
    serializer_class = TrialOutput

    def get_object(self):
        return trial_get_for_user(user=self.request.user, trial_id=self.kwargs["trial_id"])


@extend_schema(tags=["trials"])
class SiteListApi(generics.ListAPIView):
    serializer_class = SiteOutput
    queryset = Site.objects.none()  # for the schema only; get_queryset scopes by user
    filterset_fields = ["status", "country"]

    def get_queryset(self):
        trial = trial_get_for_user(user=self.request.user, trial_id=self.kwargs["trial_id"])
        return site_list_for_user(user=self.request.user, trial=trial)


@extend_schema(tags=["trials"])
class SiteDetailApi(generics.RetrieveAPIView):
    serializer_class = SiteOutput

    def get_object(self):
        return site_get_for_user(user=self.request.user, trial_id=self.kwargs["trial_id"],
                                 site_id=self.kwargs["site_id"])
