"""Reading routes: the pages under /reads/, and the REST API under /api/reads/ (kept here so config/urls.py
needs one line). Oversight pages (agreement, SDTM export) add their routes below their own heading."""

from django.urls import path

from . import api, views

urlpatterns = [
    # readers
    path("reads/", views.home, name="reads-home"),
    path("reads/trials/<int:trial_id>/worklist", views.worklist, name="reads-worklist"),
    path("reads/tasks/<int:task_id>", views.task_detail, name="reads-task"),
    path("reads/tasks/<int:task_id>/open", views.task_open, name="reads-task-open"),
    path("reads/tasks/<int:task_id>/assess", views.task_assess, name="reads-task-assess"),
    path("reads/tasks/<int:task_id>/draft", views.task_draft, name="reads-task-draft"),
    path("reads/tasks/<int:task_id>/sign", views.task_sign, name="reads-task-sign"),
    path("reads/tasks/<int:task_id>/correct", views.task_correct, name="reads-task-correct"),
    path("reads/measurement-reports/<int:report_id>.dcm", views.measurement_report_download,
         name="reads-measurement-report"),
    # adjudicators
    path("reads/trials/<int:trial_id>/adjudications", views.adjudication_list, name="reads-adjudications"),
    path("reads/adjudications/<int:adj_id>", views.adjudication_detail, name="reads-adjudication"),
    path("reads/adjudications/<int:adj_id>/resolve", views.adjudication_resolve, name="reads-adjudication-resolve"),
    # trial managers: the reader pool
    path("reads/trials/<int:trial_id>/pool", views.pool, name="reads-pool"),
    path("reads/trials/<int:trial_id>/pool/add", views.pool_add, name="reads-pool-add"),
    path("reads/trials/<int:trial_id>/pool/readers/<int:reader_id>/training", views.pool_training,
         name="reads-pool-training"),
    path("reads/trials/<int:trial_id>/pool/readers/<int:reader_id>/deactivate", views.pool_deactivate,
         name="reads-pool-deactivate"),
    path("reads/trials/<int:trial_id>/pool/tasks/<int:task_id>/reassign", views.pool_reassign,
         name="reads-pool-reassign"),
    path("reads/trials/<int:trial_id>/pool/tasks/<int:task_id>/reread", views.pool_reread, name="reads-pool-reread"),
]

api_urlpatterns = [
    path("api/reads/trials/<int:trial_id>/worklist/", api.ReadsWorklistApi.as_view(), name="api-reads-worklist"),
    path("api/reads/tasks/<int:task_id>/", api.ReadTaskApi.as_view(), name="api-reads-task"),
    path("api/reads/tasks/<int:task_id>/draft/", api.ReadDraftSaveApi.as_view(), name="api-reads-task-draft"),
    path("api/reads/tasks/<int:task_id>/sign/", api.ReadSignApi.as_view(), name="api-reads-task-sign"),
    path("api/reads/trials/<int:trial_id>/adjudications/", api.AdjudicationListApi.as_view(),
         name="api-reads-adjudications"),
    path("api/reads/adjudications/<int:adj_id>/", api.AdjudicationApi.as_view(), name="api-reads-adjudication"),
    path("api/reads/adjudications/<int:adj_id>/resolve/", api.AdjudicationResolveApi.as_view(),
         name="api-reads-adjudication-resolve"),
]

urlpatterns += api_urlpatterns
