"""``/ws/events/``: each user's durable event stream over a WebSocket.

The database is the truth: on every doorbell (and on resume, and when the once-a-second look
of ``notifications.stream_watch`` finds the socket behind) the consumer sends the rows after
the last one it sent, under a lock, so delivery is in order, complete and without duplicates
whatever the channel layer drops or repeats.
"""

import asyncio
import json
import re
import time
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from notifications import selectors, stream_watch
from notifications.services import event_frame
from quickpe import metrics
from quickpe.authentication import DEVICE_SESSION, SESSION_CLAIM, user_for_access_token
from quickpe.formats import timestamp
from quickpe.logs import get_logger, request_id, valid_request_id
from quickpe.realtime import group_for

# autobahn (under daphne) lets an application close only with 1000 or 3000-4999, so RFC 6455's
# 1003, 1008 and 1009 cannot be sent: the codes are 4000 + the HTTP status of the same meaning.
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_BIG = 4413
CLOSE_UNSUPPORTED = 4415
CLOSE_RATE_LIMITED = 4429
logger = get_logger("quickpe.websocket")
MAX_CLIENT_FRAME = 4096  # bytes of UTF-8
# Client messages are flat ({"type": "resume", "last_event_id": 7} has depth 1): anything deeper
# is refused before json.loads, whose C decoder recurses once per level.
MAX_CLIENT_DEPTH = 4
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')  # its brackets are text, not nesting
BATCH = 500
# Client messages per connection, a token bucket: an honest client pings every half minute and
# resumes after a reconnect, so a burst of 10 and one more a second never refuse it, while one
# connection's flood costs the server a reply a second. A replay may send the whole retained
# stream, so a resume that replays takes 4 tokens more: two in a row, then one every 5 s.
MESSAGE_BURST = 10
MESSAGES_PER_SECOND = 1.0
REPLAY_COST = 4
# Over the rate, the first refused message gets an error frame (rate_limited) and the rest
# nothing, which costs a flood nothing; the 10th refused in a row closes the connection.
REFUSED_BEFORE_CLOSE = 10


def _query(scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {key: values[-1] for key, values in parsed.items()}


def authenticates_by_token(scope) -> bool:
    """Whether the connection names a token; without one the session cookie is tried."""
    return bool(_query(scope).get("token"))


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` as browsers send it in ``Origin`` (default port left out)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 443 if parts.scheme.lower() == "https" else 80
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port not in (None, default) else "")


def _own_origin(scope) -> str | None:
    """The origin of the handshake itself, as Django's CSRF check sees a request's: its Host
    (``X-Forwarded-Host`` with ``USE_X_FORWARDED_HOST``) if ALLOWED_HOSTS names it, with https
    for ``wss`` or, behind a proxy, the ``SECURE_PROXY_SSL_HEADER`` it sets."""
    headers = dict(scope.get("headers", []))
    host = headers.get(b"host", b"").decode("latin-1")
    if settings.USE_X_FORWARDED_HOST and b"x-forwarded-host" in headers:
        host = headers[b"x-forwarded-host"].decode("latin-1").split(",")[0].strip()
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    if settings.SECURE_PROXY_SSL_HEADER:
        name, value = settings.SECURE_PROXY_SSL_HEADER
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        if header in headers:
            forwarded = headers[header].decode("latin-1").split(",")[0].strip()
            scheme = "https" if forwarded == value else "http"
    return _origin(f"{scheme}://{host}")


def _origin_allowed(scope) -> bool:
    """Cookie authentication only from our own pages (no cross-site WebSocket hijacking): the
    ``Origin`` must be the socket's own origin or one of ``CSRF_TRUSTED_ORIGINS`` (the
    dashboard's, where its pages are served from another port or host), scheme, host and port
    alike."""
    origin = _origin(dict(scope.get("headers", [])).get(b"origin", b"").decode("latin-1"))
    trusted = {_origin(entry) for entry in settings.CSRF_TRUSTED_ORIGINS}
    return origin is not None and (origin == _own_origin(scope) or origin in trusted)


def _parse(text: str) -> dict | None:
    """A client message: a JSON object nested at most MAX_CLIENT_DEPTH deep, else None."""
    if _nesting_depth(text) > MAX_CLIENT_DEPTH:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _nesting_depth(text: str) -> int:
    """How deeply JSON arrays and objects nest in ``text``, brackets inside strings aside;
    a scan, so any depth is measured without recursion."""
    depth = deepest = 0
    for char in _JSON_STRING.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@database_sync_to_async
def _token_holder(raw: str) -> tuple[AbstractBaseUser | None, AccessToken | None]:
    """The user of a valid access token whose device session is active (as over HTTP)."""
    try:
        token = AccessToken(raw)
    except TokenError:
        return None, None
    return user_for_access_token(token), token


class EventStreamConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        # The handshake's X-Request-ID (nginx sets one), or a new one, on this socket's log
        # lines: the consumer's handlers all run in this connection's task, in its context.
        handshake = dict(self.scope.get("headers", [])).get(b"x-request-id", b"")
        request_id.set(valid_request_id(handshake.decode("latin-1")))
        self.user = None
        self.sent = 0
        self.send_lock = asyncio.Lock()
        self.expiry = None
        self.session_id = None
        self.is_closing = False
        self.tokens, self.tokens_at, self.refused = float(MESSAGE_BURST), time.monotonic(), 0
        await self.accept()
        query = _query(self.scope)
        user, token = await self._authenticate(query.get("token"))
        if user is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.user = user
        self.opened_at = time.monotonic()
        metrics.WEBSOCKETS.inc()
        logger.info("websocket.connect", user=user.pk, by="token" if token else "session")
        # Join before reading the position: an event committed after the read rings us.
        await self.channel_layer.group_add(group_for(user.pk), self.channel_name)
        async with self.send_lock:
            self.sent = await database_sync_to_async(selectors.stream_position)(user_id=user.pk)
            await self.send_json(
                {"type": "hello", "user": user.quickpe_id, "last_event_id": self.sent}
            )
        # A doorbell lost while Redis is away would leave this socket behind: look once a second.
        stream_watch.follow(self)
        if token is not None:
            self.session_id = token[SESSION_CLAIM]
            # A timer, not a sleeping task: one daphne process holds thousands of connections,
            # and a sleeping task keeps several more objects per connection for the cycle collector.
            delay = max(float(token["exp"]) - time.time(), 0)
            self.expiry = asyncio.get_running_loop().call_later(delay, self._expired)
        if "last_event_id" in query:
            await self._resume(query["last_event_id"])

    async def _authenticate(self, token: str | None):
        if token:
            return await _token_holder(token)
        session_user = self.scope.get("user")
        if (
            session_user is not None
            and session_user.is_authenticated
            and _origin_allowed(self.scope)
        ):
            # A dashboard page: its browser's device session must be active, as for its pages,
            # and revoking it closes this socket too (sessions_revoked).
            device = self.scope["session"].get(DEVICE_SESSION)
            if await database_sync_to_async(session_user.has_active_session)(device):
                self.session_id = device
                return session_user, None
        return None, None

    async def sessions_revoked(self, message):
        """The device session this socket signed in with was revoked: close it at once."""
        if self.session_id is not None and self.session_id in message["sessions"]:
            await self._close(CLOSE_UNAUTHORIZED)

    def _expired(self) -> None:
        # Kept in self.expiry: the loop holds only a weak reference to a task.
        self.expiry = asyncio.ensure_future(self._close(CLOSE_UNAUTHORIZED))

    async def disconnect(self, code):
        self.is_closing = True
        if self.expiry is not None:
            self.expiry.cancel()
        if self.user is not None:
            stream_watch.unfollow(self)
            metrics.WEBSOCKETS.dec()
            logger.info(
                "websocket.disconnect",
                user=self.user.pk,
                code=code,
                duration_ms=round((time.monotonic() - self.opened_at) * 1000, 1),
            )
            await self.channel_layer.group_discard(group_for(self.user.pk), self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if self.user is None or self.is_closing:
            return  # frames that were on their way when we closed
        if text_data is None:  # binary frames are not part of the protocol
            await self._close(CLOSE_UNSUPPORTED)
            return
        if len(text_data.encode()) > MAX_CLIENT_FRAME:
            await self._close(CLOSE_TOO_BIG)
            return
        if not await self._within_rate(1):
            return
        message = _parse(text_data)
        if message is None:
            await self._error("invalid_message", "Send a JSON object with a type.")
        elif message.get("type") == "ping":
            await self.send_json({"type": "pong", "ts": timestamp(timezone.now())})
        elif message.get("type") == "resume":
            await self._resume(message.get("last_event_id"), cost=REPLAY_COST)
        else:
            await self._error("unknown_type", "Known types: ping, resume.")

    async def _within_rate(self, cost: int) -> bool:
        """Take ``cost`` tokens from this connection's bucket; refuse the message (an error
        frame the first time, a close at REFUSED_BEFORE_CLOSE in a row) when it has too few."""
        now = time.monotonic()
        self.tokens = min(MESSAGE_BURST, self.tokens + (now - self.tokens_at) * MESSAGES_PER_SECOND)
        self.tokens_at = now
        if self.tokens >= cost:
            self.tokens -= cost
            self.refused = 0
            return True
        self.refused += 1
        if self.refused == 1:
            await self._error("rate_limited", "Too many messages: slow down.")
        elif self.refused >= REFUSED_BEFORE_CLOSE:
            logger.warning("websocket.rate_limited", user=self.user.pk)
            await self._close(CLOSE_RATE_LIMITED)
        return False

    async def _close(self, code: int) -> None:
        self.is_closing = True
        await self.close(code=code)

    async def _error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})

    async def _resume(self, raw, *, cost: int = 0) -> None:
        """Replay after ``raw``; ``cost``: the rate tokens a replay takes (none on the URL)."""
        try:
            seq = int(raw)
        except (TypeError, ValueError):
            await self._error("invalid_last_event_id", "last_event_id must be an integer.")
            return
        async with self.send_lock:
            resumable = await database_sync_to_async(selectors.can_resume_after)(
                user_id=self.user.pk, seq=seq
            )
            if not resumable:
                await self.send_json({"type": "resync_required"})
                return
            if cost and not await self._within_rate(cost):
                return
            self.sent = seq
            await self._send_pending(metrics.EVENTS_REPLAYED)
            await self.send_json({"type": "resumed", "last_event_id": self.sent})

    async def events_ready(self, message):
        """The doorbell (a channel-layer group message): send what was committed since."""
        if self.user is None or message.get("seq", 0) <= self.sent:
            return
        await self.catch_up()

    async def catch_up(self) -> None:
        """Send what was committed since the last frame: on a doorbell, or when the once-a-second
        look (``notifications.stream_watch``) finds this socket behind its stream."""
        if self.is_closing:
            return
        async with self.send_lock:
            await self._send_pending(metrics.EVENTS_PUSHED)

    async def _send_pending(self, counter) -> None:
        """Caller holds send_lock; ``counter`` counts the frames (pushed live or replayed)."""
        while True:
            events = await database_sync_to_async(selectors.events_after)(
                user_id=self.user.pk, seq=self.sent, limit=BATCH
            )
            for event in events:
                await self.send_json(event_frame(event))
                self.sent = event.seq
            counter.inc(len(events))
            if len(events) < BATCH:
                return
