"""Reader oversight routes: the pages under /reads/oversight/ and the API under /api/reads/oversight/
(kept together so config/urls.py needs one line)."""

from django.urls import path

from . import api_oversight, views_oversight

urlpatterns = [
    path("reads/oversight/", views_oversight.oversight_index, name="reads-oversight"),
    path("reads/oversight/trials/<int:trial_id>/agreement", views_oversight.agreement, name="reads-agreement"),
    path("reads/oversight/trials/<int:trial_id>/rules", views_oversight.reading_rules, name="reads-rules"),
    path("reads/oversight/trials/<int:trial_id>/measurement-reports", views_oversight.measurement_reports,
         name="reads-measurement-reports"),
    path("reads/oversight/trials/<int:trial_id>/sdtm.zip", views_oversight.sdtm_download, name="reads-sdtm-zip"),
    path("api/reads/oversight/trials/<int:trial_id>/agreement/", api_oversight.TrialAgreementApi.as_view(),
         name="api-reads-agreement"),
]
