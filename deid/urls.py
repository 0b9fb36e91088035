"""De-identification routes."""

from django.urls import path

from . import views

urlpatterns = [
    path("deid/trials/<int:trial_id>/mapping.csv", views.mapping_csv, name="deid-mapping-csv"),
    path("deid/profile/", views.profile_home, name="deid-profile"),
    path("deid/trials/<int:trial_id>/profile/", views.profile_page, name="deid-profile-trial"),
    path("deid/trials/<int:trial_id>/profile/versions/", views.profile_version_create, name="deid-profile-create"),
    path("deid/trials/<int:trial_id>/profile/preview/", views.profile_preview_view, name="deid-profile-preview"),
]

# REST API under /api/ (deid.api)
from . import api  # noqa: E402

api_urlpatterns: list = [
    path("deid/trials/<int:trial_id>/profiles/", api.ProfileListApi.as_view(), name="api-deid-profiles"),
]
