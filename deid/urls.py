"""De-identification routes."""

from django.urls import path

from . import views

urlpatterns = [
    path("deid/trials/<int:trial_id>/mapping.csv", views.mapping_csv, name="deid-mapping-csv"),
]

# REST API under /api/ (deid.api)
from . import api  # noqa: E402

api_urlpatterns: list = [
    path("deid/trials/<int:trial_id>/profiles/", api.ProfileListApi.as_view(), name="api-deid-profiles"),
]
