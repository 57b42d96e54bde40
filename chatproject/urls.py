"""URL routing: the Web API, admin and the web client."""

from django.contrib import admin
from django.urls import path

from jobs.views import download_export
from messaging.api.dispatch import api_view
from messaging.api.openapi import openapi_view
from ops import views as ops_views
from teams import admin_pages
from teams import views as team_views

urlpatterns = [
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/openapi.json", openapi_view, name="openapi"),
    path("api/<str:method_name>", api_view, name="api"),
    path("transfers/<int:job_id>/download", download_export, name="transfer_download"),
    path("signin/", team_views.SignInView.as_view(), name="sign_in"),
    path("signout/", team_views.SignOutView.as_view(), name="sign_out"),
    path("teams/", team_views.choose_team, name="choose_team"),
    path("team-admin/", admin_pages.team_admin, name="team_admin"),
    path("invite/<str:token>/", admin_pages.accept_invite_view, name="accept_invite"),
    path("client/<str:team>/", team_views.client, name="client"),
    path("", team_views.home, name="home"),
]
