from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from deid.urls import api_urlpatterns as deid_api
from intake.urls import api_urlpatterns as intake_api
from intake.urls import dicomweb_urlpatterns
from trials.urls import api_urlpatterns as trials_api

from .health import healthz

api_urlpatterns = [
    *trials_api,
    *intake_api,
    *deid_api,
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("admin/", admin.site.urls),
    path("api/", include(api_urlpatterns)),
    path("healthz", healthz, name="healthz"),
    path("dicomweb/", include("reads.dicomweb.urls")),  # QIDO/WADO-RS; hands STOW-RS POSTs to intake
    path("dicomweb/", include(dicomweb_urlpatterns)),
    path("", include("intake.urls")),
    path("", include("deid.urls")),
    path("", include("qc.urls")),
    path("", include("reads.urls")),  # /reads/ pages and /api/reads/
    path("", include("reads.urls_oversight")),  # agreement page, SDTM download, /api/reads/oversight/
    path("", include("trials.urls")),
    path("", include("audit.urls")),
]
