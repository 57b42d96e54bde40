"""URL routing: the Web API, admin and the web client."""

from django.contrib import admin
from django.urls import path

from messaging.api.dispatch import api_view
from messaging.api.openapi import openapi_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/openapi.json", openapi_view, name="openapi"),
    path("api/<str:method_name>", api_view, name="api"),
]
