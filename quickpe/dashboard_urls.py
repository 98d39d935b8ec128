"""The dashboard's pages (API.md: "Server-rendered dashboard and admin")."""

from django.urls import path

from analytics import views as analytics
from audit import views as audit
from notifications import views as notifications
from wallet import views as wallet

urlpatterns = [
    path("", wallet.landing, name="landing"),
    path("signup", wallet.signup, name="signup"),
    path("signin", wallet.signin, name="signin"),
    path("signout", wallet.signout, name="signout"),
    # Where the links that verify an email address lead (wallet.services.emails).
    path("verify-email", wallet.email_verify_page, name="email-verify-page"),
    path("app/", wallet.home, name="home"),
    path("app/transactions", wallet.transactions, name="transactions"),
    path("app/people", wallet.people, name="people"),
    path("app/requests", wallet.money_requests, name="requests"),
    path(
        "app/requests/<int:pk>/<str:action>",
        wallet.money_request_act,
        name="request-act",
    ),
    path("app/settings", wallet.settings_page, name="settings"),
    path(
        "app/email/verification",
        wallet.email_verification_resend,
        name="email-verification-resend",
    ),
    path("app/settings/sessions/<int:pk>/revoke", wallet.session_revoke, name="session-revoke"),
    path("app/analytics", analytics.analytics_page, name="analytics"),
    path("app/exports", analytics.exports_page, name="exports"),
    path("app/exports/<int:pk>/download", analytics.export_download, name="dashboard-download"),
    path("app/notifications", notifications.notifications_page, name="notifications"),
    path("app/notifications/read-all", notifications.notifications_read_all, name="read-all"),
    path("app/audit", audit.audit_page, name="audit"),
]
