from django.urls import path

from . import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("trials/<int:trial_id>/", views.trial_detail, name="trial-detail"),
    path("trials/<int:trial_id>/sites/<int:site_id>/", views.site_detail, name="site-detail"),
]

api_urlpatterns = [
    path("trials/", api.TrialListApi.as_view(), name="api-trial-list"),
    path("trials/<int:trial_id>/", api.TrialDetailApi.as_view(), name="api-trial-detail"),
    path("trials/<int:trial_id>/sites/", api.SiteListApi.as_view(), name="api-site-list"),
    path("trials/<int:trial_id>/sites/<int:site_id>/", api.SiteDetailApi.as_view(), name="api-site-detail"),
]
