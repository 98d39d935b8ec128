from django.urls import path

from notifications import api

urlpatterns = [
    path("notifications", api.NotificationListView.as_view(), name="notification-list"),
    path("notifications/unread-count", api.UnreadCountView.as_view(), name="notification-unread"),
    path(
        "notifications/read-all",
        api.NotificationReadAllView.as_view(),
        name="notification-read-all",
    ),
    path(
        "notifications/<int:pk>", api.NotificationDetailView.as_view(), name="notification-detail"
    ),
    path(
        "notifications/<int:pk>/read", api.NotificationReadView.as_view(), name="notification-read"
    ),
    path("realtime", api.RealtimeView.as_view(), name="realtime"),
]
