from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from quickpe import health

api_v1 = [
    path("", include("wallet.api.urls")),
    path("", include("audit.urls")),
    path("", include("notifications.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("admin/", admin.site.urls),
]

handler400 = "quickpe.errors.handler400"
handler403 = "quickpe.errors.handler403"
handler404 = "quickpe.errors.handler404"
handler500 = "quickpe.errors.handler500"
