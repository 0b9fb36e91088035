"""DICOMweb routes under /dicomweb/ (no trailing slashes: DICOMweb clients build the URLs).

``/studies`` and ``/studies/{study}`` also take intake's STOW-RS POSTs: one URL, two apps, split by method.
"""

from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from intake.stow import StowApi, StowStudyApi

from . import views

_qido_studies = views.QidoStudiesApi.as_view()
_wado = views.WadoInstancesApi.as_view()
_stow = StowApi.as_view()
_stow_study = StowStudyApi.as_view()


@csrf_exempt  # both views are DRF views: session authentication enforces CSRF on the POST
def studies(request, *args, **kwargs):
    return (_stow if request.method == "POST" else _qido_studies)(request, *args, **kwargs)


@csrf_exempt
def study(request, study_uid: str):
    if request.method == "POST":
        return _stow_study(request, study_uid=study_uid)
    return _wado(request, study=study_uid)


# The OpenAPI generator lists DRF views only: it documents these two URLs' GET from the views that answer it
# (their POST is documented from intake's own routes to the same URLs).
for _route, _view in ((studies, views.QidoStudiesApi), (study, views.WadoInstancesApi)):
    _route.cls, _route.initkwargs = _view, {}


_series = "studies/<str:study>/series/<str:series>"
_instance = f"{_series}/instances/<str:sop>"

urlpatterns = [
    path("studies", studies, name="dicomweb-studies"),
    path("series", views.QidoSeriesApi.as_view(), name="dicomweb-all-series"),
    path("instances", views.QidoInstancesApi.as_view(), name="dicomweb-all-instances"),
    path("studies/<str:study_uid>", study, name="dicomweb-study"),
    path("studies/<str:study>/metadata", views.WadoMetadataApi.as_view(), name="dicomweb-study-metadata"),
    path("studies/<str:study>/series", views.QidoSeriesApi.as_view(), name="dicomweb-series"),
    path("studies/<str:study>/instances", views.QidoInstancesApi.as_view(), name="dicomweb-study-instances"),
    path(_series, views.WadoInstancesApi.as_view(), name="dicomweb-series-retrieve"),
    path(f"{_series}/metadata", views.WadoMetadataApi.as_view(), name="dicomweb-series-metadata"),
    path(f"{_series}/instances", views.QidoInstancesApi.as_view(), name="dicomweb-instances"),
    path(_instance, views.WadoInstancesApi.as_view(), name="dicomweb-instance"),
    path(f"{_instance}/metadata", views.WadoMetadataApi.as_view(), name="dicomweb-instance-metadata"),
    path(f"{_instance}/rendered", views.WadoRenderedApi.as_view(), name="dicomweb-instance-rendered"),
    path(f"{_instance}/frames/<str:frames>", views.WadoFramesApi.as_view(), name="dicomweb-frames"),
    path(f"{_instance}/frames/<str:frames>/rendered", views.WadoRenderedApi.as_view(), name="dicomweb-frame-rendered"),
    path("corelab/studies/<int:study_id>", views.ViewerStudyApi.as_view(), name="dicomweb-viewer-study"),
]
