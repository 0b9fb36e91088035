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
    path("qc/studies/<int:study_id>/queries/", views.study_query_raise, name="qc-study-query-raise"),
    path("qc/held/<int:record_id>/", views.held_detail, name="qc-held"),
    path("qc/held/<int:record_id>/frames/<int:frame>.png", views.held_frame, name="qc-held-frame"),
    path("qc/held/<int:record_id>/release/", views.held_release, name="qc-held-release"),
    path("qc/held/<int:record_id>/reject/", views.held_reject, name="qc-held-reject"),
    path("qc/queries/", views.query_list, name="qc-queries"),
    path("qc/metrics/", views.site_metrics, name="qc-metrics"),
    path("qc/queries/<int:query_id>/", views.query_detail, name="qc-query"),
    path("qc/queries/<int:query_id>/messages/", views.query_message, name="qc-query-message"),
    path("qc/queries/<int:query_id>/answer/", views.query_answer, name="qc-query-answer"),
    path("qc/queries/<int:query_id>/close/", views.query_close, name="qc-query-close"),
    path("qc/queries/<int:query_id>/reopen/", views.query_reopen, name="qc-query-reopen"),
    path("qc/queries/<int:query_id>/attachments/<int:attachment_id>/", views.query_attachment_download,
         name="qc-query-attachment"),
    path("api/qc/queue/", api.QcQueueApi.as_view(), name="api-qc-queue"),
    path("api/qc/studies/<int:study_id>/", api.QcStudyApi.as_view(), name="api-qc-study"),
    path("api/qc/studies/<int:study_id>/accept/", api.QcStudyAcceptApi.as_view(), name="api-qc-study-accept"),
    path("api/qc/studies/<int:study_id>/reject/", api.QcStudyRejectApi.as_view(), name="api-qc-study-reject"),
]
urlpatterns += [
    path("api/qc/queries/", api.QcQueryListApi.as_view(), name="api-qc-queries"),
    path("api/qc/metrics/", api.QcSiteMetricsApi.as_view(), name="api-qc-metrics"),
    path("api/qc/queries/<int:query_id>/", api.QcQueryApi.as_view(), name="api-qc-query"),
    path("api/qc/queries/<int:query_id>/messages/", api.QcQueryMessageApi.as_view(), name="api-qc-query-message"),
    path("api/qc/queries/<int:query_id>/answer/", api.QcQueryAnswerApi.as_view(), name="api-qc-query-answer"),
    path("api/qc/queries/<int:query_id>/close/", api.QcQueryCloseApi.as_view(), name="api-qc-query-close"),
    path("api/qc/queries/<int:query_id>/reopen/", api.QcQueryReopenApi.as_view(), name="api-qc-query-reopen"),
]
