"""QC routes: the pages, and the REST API under /api/qc/ (kept here so config/urls.py needs one line)."""

from django.urls import path

from . import api, views

urlpatterns = [
    path("qc/", views.queue, name="qc-queue"),
    path("qc/studies/<int:study_id>/", views.study_detail, name="qc-study"),
    path("qc/studies/<int:study_id>/accept/", views.study_accept, name="qc-study-accept"),
    path("qc/studies/<int:study_id>/reject/", views.study_reject, name="qc-study-reject"),
    path("qc/studies/<int:study_id>/series/<int:series_id>/thumbnail.png", views.series_thumbnail_png,
         name="qc-series-thumbnail"),
    path("api/qc/queue/", api.QcQueueApi.as_view(), name="api-qc-queue"),
    path("api/qc/studies/<int:study_id>/", api.QcStudyApi.as_view(), name="api-qc-study"),
    path("api/qc/studies/<int:study_id>/accept/", api.QcStudyAcceptApi.as_view(), name="api-qc-study-accept"),
    path("api/qc/studies/<int:study_id>/reject/", api.QcStudyRejectApi.as_view(), name="api-qc-study-reject"),
]
