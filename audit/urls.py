from django.urls import path, re_path

from . import api, views

urlpatterns = [
    path("audit/subjects/<int:subject_id>/timeline", views.timeline, name="audit-timeline"),
    re_path(r"^audit/subjects/(?P<subject_id>[0-9]+)/timeline\.(?P<export_format>csv|json|pdf)$", views.timeline_export,
         name="audit-timeline-export"),
    path("audit/search", views.search, name="audit-search"),
    path("audit/search.csv", views.search_export, name="audit-search-export"),
    path("audit/exports/<int:export_id>", views.pdf_export_detail, name="audit-pdf-export"),
    path("audit/exports/<int:export_id>/download", views.pdf_export_download, name="audit-pdf-export-download"),
    path("audit/history/<slug:app_label>/<slug:model_name>/<str:pk>", views.object_history, name="audit-history"),
    # the API, under /api/ like every app's
    path("api/audit/events/", api.AuditSearchApi.as_view(), name="api-audit-search"),
    path("api/audit/subjects/<int:subject_id>/timeline/", api.SubjectTimelineApi.as_view(),
         name="api-audit-timeline"),
]
