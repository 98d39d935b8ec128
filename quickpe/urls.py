from django.contrib import admin
from django.contrib.auth.views import PasswordResetCompleteView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from quickpe import health
from quickpe.metrics import metrics_view
from wallet.admin import PasswordResetConfirm, StaffSignInForm

admin.site.site_header = admin.site.site_title = "QuickPe admin"
# Limited and audited like every sign-in (README: "Security").
admin.site.login_form = StaffSignInForm

api_v1 = [
    path("", include("wallet.api.urls")),
    path("", include("audit.urls")),
    path("", include("notifications.urls")),
    path("", include("analytics.urls")),
]

urlpatterns = [
    path("", include("quickpe.dashboard_urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # Where the password reset links that support sends lead (wallet.services.support).
    path(
        "account/password-reset/<uidb64>/<token>/",
        PasswordResetConfirm.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "account/password-reset/done/",
        PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]

handler400 = "quickpe.errors.handler400"
handler403 = "quickpe.errors.handler403"
handler404 = "quickpe.errors.handler404"
handler500 = "quickpe.errors.handler500"
