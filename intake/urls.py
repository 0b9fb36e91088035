"""Intake routes. Two lists kept apart so each part of intake owns its own lines."""

from django.urls import path  # noqa: F401  (used by the lists below)

# web upload portal (intake.views.upload)
upload_patterns: list = []

# unassigned inbox, expected vs. received (intake.views.tracking)
tracking_patterns: list = []

urlpatterns = upload_patterns + tracking_patterns

# REST API under /api/ (intake.api)
api_urlpatterns: list = []

# DICOMweb under /dicomweb/ (intake.stow)
dicomweb_urlpatterns: list = []
