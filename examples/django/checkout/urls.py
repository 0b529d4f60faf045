from __future__ import annotations

from django.urls import include, path

from checkout import views

urlpatterns = [
    path("checkout", views.checkout),
    # Operator endpoints: GET /-/canaryconf/, POST /-/canaryconf/reload. Protect them.
    path("-/canaryconf/", include("canaryconf.django.urls")),
]
