"""ASGI entry point for daphne: WebSockets (and HTTP, though gunicorn serves HTTP faster)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
django_application = get_asgi_application()  # set up Django before importing consumers

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from notifications.consumers import authenticates_by_token  # noqa: E402
from quickpe.daphne_tuning import tune_for_daphne  # noqa: E402
from quickpe.routing import websocket_urlpatterns  # noqa: E402

websocket_by_token = URLRouter(websocket_urlpatterns)
websocket_by_session = AuthMiddlewareStack(websocket_by_token)


def websocket_application(scope, receive, send):
    """Channels' cookie, session and auth middleware only for connections without a token:
    the consumer ignores the session when a token is given, and for as long as a connection
    lives each layer holds a coroutine and a copy of its scope (one daphne process holds
    thousands of connections, and a full garbage collection walks all of them)."""
    by_token = authenticates_by_token(scope)
    return (websocket_by_token if by_token else websocket_by_session)(scope, receive, send)


websocket_application._asgi_single_callable = True  # returns a coroutine: ASGI 3, not 2


application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": websocket_application,
    }
)
tune_for_daphne()
