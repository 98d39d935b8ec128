"""Template context of the dashboard's signed-in pages (``TEMPLATES`` in settings)."""

from django.conf import settings

from notifications.models import Notification
from notifications.selectors import stream_position


def dashboard_context(request) -> dict:
    """The bell's count and the event stream's URL."""
    if not request.path.startswith("/app/") or not request.user.is_authenticated:
        return {}
    unread = Notification.objects.filter(user=request.user, read_at__isnull=True).count()
    return {
        "unread": unread,
        "websocket_url": settings.QUICKPE_WEBSOCKET_URL,
        # The page shows the state as of this event: the socket replays anything after it.
        "last_event_id": stream_position(user_id=request.user.pk),
    }
