"""Device sessions: every sign-in is one; listing, revoking, the cap, new-device notices, and
what a password change does to them."""

import json
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEntry
from notifications.models import Event, Notification
from quickpe.asgi import application
from tests.conftest import PASSWORD, assert_problem, make_user
from tests.test_concurrency import run_threads
from wallet.models import DeviceSession
from wallet.services.sessions import describe_device

LAPTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
TABLET = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36"
)


def sign_in(user, agent: str, ip: str = "203.0.113.7") -> dict:
    response = APIClient().post(
        "/api/v1/auth/signin",
        {"email": user.email, "password": PASSWORD},
        format="json",
        HTTP_USER_AGENT=agent,
        REMOTE_ADDR=ip,
    )
    assert response.status_code == 200, response.content
    return response.json()


def as_bearer(tokens: dict) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    return client


def refresh(tokens: dict):
    return APIClient().post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json")


def security_notices(user) -> list[str]:
    return list(
        Notification.objects.filter(user=user, kind="security")
        .order_by("pk")
        .values_list("title", flat=True)
    )


def test_two_devices_are_listed_with_current_on_the_caller(db):
    user = make_user("Devi")
    laptop, phone = sign_in(user, LAPTOP, "203.0.113.7"), sign_in(user, PHONE, "198.51.100.9")

    listed = as_bearer(phone).get("/api/v1/me/sessions")

    assert listed.status_code == 200
    body = listed.json()
    assert [(s["device"], s["ip"], s["current"]) for s in body] == [
        ("Mobile Safari on iOS (iPhone)", "198.51.100.9", True),
        ("Chrome on Windows", "203.0.113.7", False),
    ]
    assert set(body[0]) == {
        "id",
        "device",
        "ip",
        "user_agent",
        "created_at",
        "last_used_at",
        "current",
    }
    assert body[0]["user_agent"] == PHONE
    from_laptop = as_bearer(laptop).get("/api/v1/me/sessions").json()
    assert [s["current"] for s in from_laptop] == [False, True]


def test_revoking_the_other_device_stops_its_tokens_at_once(db):
    user = make_user("Ravi")
    laptop, phone = sign_in(user, LAPTOP), sign_in(user, PHONE)
    laptop_id = next(
        s["id"] for s in as_bearer(phone).get("/api/v1/me/sessions").json() if not s["current"]
    )

    response = as_bearer(phone).delete(f"/api/v1/me/sessions/{laptop_id}")

    assert response.status_code == 204
    assert_problem(refresh(laptop), 401, "invalid_token")
    assert_problem(as_bearer(laptop).get("/api/v1/me"), 401, "invalid_token")
    assert as_bearer(phone).get("/api/v1/me").status_code == 200
    assert refresh(phone).status_code == 200
    assert [s["device"] for s in as_bearer(phone).get("/api/v1/me/sessions").json()] == [
        "Mobile Safari on iOS (iPhone)"
    ]
    entry = AuditEntry.objects.get(action="session.revoke")
    assert (entry.actor_id, entry.entity_id) == (user.pk, str(laptop_id))


def test_a_revoked_an_unknown_or_another_users_session_is_404_and_changes_nothing(db):
    user, other = make_user("Owner"), make_user("Other")
    mine = sign_in(user, LAPTOP)
    theirs = sign_in(other, PHONE)
    their_id = as_bearer(theirs).get("/api/v1/me/sessions").json()[0]["id"]
    audit_before = AuditEntry.objects.count()

    assert_problem(as_bearer(mine).delete(f"/api/v1/me/sessions/{their_id}"), 404, "not_found")
    assert_problem(as_bearer(mine).delete("/api/v1/me/sessions/999999999"), 404, "not_found")

    assert AuditEntry.objects.count() == audit_before
    assert as_bearer(theirs).get("/api/v1/me").status_code == 200
    assert refresh(theirs).status_code == 200


def test_sessions_need_authentication(db):
    assert_problem(APIClient().get("/api/v1/me/sessions"), 401, "not_authenticated")
    assert_problem(APIClient().delete("/api/v1/me/sessions/1"), 401, "not_authenticated")


def test_a_refresh_keeps_the_session_and_updates_last_used(db):
    user = make_user("Rota")
    tokens = sign_in(user, LAPTOP)
    session = DeviceSession.objects.get(user=user)

    rotated = refresh(tokens).json()

    listed = as_bearer(rotated).get("/api/v1/me/sessions").json()
    assert [(s["id"], s["current"]) for s in listed] == [(session.pk, True)]
    session.refresh_from_db()
    assert session.last_used_at > session.created_at
    assert refresh(rotated).status_code == 200
    # The old one is spent (used again, it signs the device out: the test below).
    assert_problem(refresh(tokens), 401, "invalid_token")


@pytest.mark.django_db(transaction=True)
def test_a_reused_refresh_token_revokes_its_whole_session_and_is_audited():
    """Reuse detection: a spent refresh token presented again means two holders (a stolen
    token): the session ends, so the newer token dies too, whoever holds it. The refusal is
    a 401 as before, and the revocation commits with it (committed transactions here)."""
    user = make_user("Theo")
    phone = sign_in(user, PHONE)
    stolen = sign_in(user, LAPTOP)
    session = DeviceSession.objects.get(user=user, device="Chrome on Windows")
    rotated = refresh(stolen).json()

    assert_problem(refresh(stolen), 401, "invalid_token")

    session.refresh_from_db()
    assert session.revoked_at is not None
    assert_problem(refresh(rotated), 401, "invalid_token")
    assert_problem(as_bearer(rotated).get("/api/v1/me"), 401, "invalid_token")
    entry = AuditEntry.objects.get(action="session.refresh_reused")
    assert (entry.actor_id, entry.entity_type, entry.entity_id, entry.data) == (
        user.pk,
        "session",
        str(session.pk),
        {"device": "Chrome on Windows"},
    )
    assert security_notices(user)[-1] == "Chrome on Windows was signed out"
    # The other device carries on; the revoked session's tokens stay dead, nothing more audited.
    assert refresh(phone).status_code == 200
    assert_problem(refresh(stolen), 401, "invalid_token")
    assert AuditEntry.objects.filter(action="session.refresh_reused").count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_refresh_token_used_by_ten_requests_at_once_rotates_once():
    user = make_user("Racer")
    tokens = sign_in(user, LAPTOP)
    statuses = []

    run_threads(10, lambda _index: statuses.append(refresh(tokens).status_code))

    assert sorted(statuses) == [200] + [401] * 9


def test_a_new_device_gets_a_security_notification_and_a_known_one_does_not(db):
    user = make_user("Nina")
    sign_in(user, LAPTOP)
    sign_in(user, LAPTOP.replace("130.0.0.0", "131.0.0.0"))  # a browser update: same device
    sign_in(user, PHONE)

    assert security_notices(user) == [
        "New sign-in on Chrome on Windows",
        "New sign-in on Mobile Safari on iOS (iPhone)",
    ]
    notice = Notification.objects.filter(user=user, kind="security").last()
    assert notice.data["device"] == "Mobile Safari on iOS (iPhone)"
    event = Event.objects.filter(user=user, type="notification:new").order_by("seq").last()
    assert event.data["notification"]["id"] == notice.pk


@pytest.mark.django_db(transaction=True)
def test_the_new_device_notice_arrives_over_the_websocket(settings):
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers
    user = make_user("Live")
    laptop = sign_in(user, LAPTOP)

    async def scenario():
        stream = WebsocketCommunicator(application, f"/ws/events/?token={laptop['access']}")
        connected, _ = await stream.connect()
        assert connected
        hello = await stream.receive_json_from(timeout=5)
        assert hello["type"] == "hello"
        await sync_to_async(sign_in)(user, PHONE, "198.51.100.20")
        frames = [await stream.receive_json_from(timeout=5) for _ in range(2)]
        await stream.disconnect()
        return frames

    notice, audit = async_to_sync(scenario)()

    assert notice["type"] == "notification:new"
    assert notice["data"]["notification"]["kind"] == "security"
    assert notice["data"]["notification"]["title"] == "New sign-in on Mobile Safari on iOS (iPhone)"
    assert notice["data"]["notification"]["data"]["ip"] == "198.51.100.20"
    assert audit["type"] == "audit:new"
    assert audit["data"]["entry"]["action"] == "user.signin"


@pytest.mark.django_db(transaction=True)
def test_a_revoked_device_loses_its_open_socket_and_cannot_reconnect(settings):
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers
    user = make_user("Lost")
    laptop, phone = sign_in(user, LAPTOP), sign_in(user, PHONE)

    async def connect(tokens):
        stream = WebsocketCommunicator(application, f"/ws/events/?token={tokens['access']}")
        assert (await stream.connect())[0]
        return stream

    async def scenario():
        kept, lost = await connect(laptop), await connect(phone)
        for stream in (kept, lost):
            assert (await stream.receive_json_from(timeout=5))["type"] == "hello"
        session = await sync_to_async(DeviceSession.objects.get)(user=user, device__contains="iOS")
        revoked = await sync_to_async(as_bearer(laptop).delete)(f"/api/v1/me/sessions/{session.pk}")
        assert revoked.status_code == 204
        closed = await lost.receive_output(timeout=5)
        # The laptop stays connected and hears about the revocation (its audit entry).
        heard = await kept.receive_json_from(timeout=5)
        again = await connect(phone)
        refused = await again.receive_output(timeout=5)
        await kept.disconnect()
        return closed, heard, refused

    closed, heard, refused = async_to_sync(scenario)()

    assert closed == {"type": "websocket.close", "code": 4401}
    assert heard["type"] == "audit:new"
    assert heard["data"]["entry"]["action"] == "session.revoke"
    assert refused == {"type": "websocket.close", "code": 4401}


def test_signup_is_the_first_device_and_sends_no_notice(db):
    response = APIClient().post(
        "/api/v1/auth/signup",
        {
            "email": "first@example.com",
            "password": PASSWORD,
            "first_name": "First",
            "last_name": "Device",
        },
        format="json",
        HTTP_USER_AGENT=LAPTOP,
    )
    assert response.status_code == 201
    user = DeviceSession.objects.get().user
    assert security_notices(user) == []
    sign_in(user, LAPTOP)
    assert security_notices(user) == []


def test_the_oldest_sessions_are_revoked_beyond_the_cap(db, settings):
    settings.QUICKPE_MAX_SESSIONS = 3
    user = make_user("Many")
    signed_in = [sign_in(user, agent) for agent in (LAPTOP, PHONE, TABLET, LAPTOP)]

    listed = as_bearer(signed_in[-1]).get("/api/v1/me/sessions").json()

    assert len(listed) == 3
    assert_problem(refresh(signed_in[0]), 401, "invalid_token")
    assert_problem(as_bearer(signed_in[0]).get("/api/v1/me"), 401, "invalid_token")
    for tokens in signed_in[1:]:
        assert as_bearer(tokens).get("/api/v1/me").status_code == 200


def test_a_password_change_signs_the_other_devices_out(db):
    user = make_user("Pass")
    laptop, phone = sign_in(user, LAPTOP), sign_in(user, PHONE)

    response = as_bearer(phone).post(
        "/api/v1/me/password",
        {"old_password": PASSWORD, "new_password": "another-long-passphrase"},
        format="json",
    )

    assert response.status_code == 204
    assert_problem(as_bearer(laptop).get("/api/v1/me"), 401, "invalid_token")
    assert_problem(refresh(laptop), 401, "invalid_token")
    # Every refresh token is revoked (the contract); this device keeps its access token.
    assert_problem(refresh(phone), 401, "invalid_token")
    assert as_bearer(phone).get("/api/v1/me").status_code == 200
    listed = as_bearer(phone).get("/api/v1/me/sessions").json()
    assert [s["current"] for s in listed] == [True]


def test_sign_out_ends_the_session(db):
    user = make_user("Bye")
    laptop, phone = sign_in(user, LAPTOP), sign_in(user, PHONE)

    response = APIClient().post(
        "/api/v1/auth/signout", {"refresh": laptop["refresh"]}, format="json"
    )

    assert response.status_code == 204
    assert_problem(as_bearer(laptop).get("/api/v1/me"), 401, "invalid_token")
    assert len(as_bearer(phone).get("/api/v1/me/sessions").json()) == 1


def test_a_deactivated_users_tokens_stop_working(db):
    user = make_user("Gone")
    tokens = sign_in(user, LAPTOP)
    user.is_active = False
    user.save(update_fields=["is_active"])

    assert_problem(as_bearer(tokens).get("/api/v1/me"), 401, "invalid_token")
    assert_problem(refresh(tokens), 401, "invalid_token")


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (LAPTOP, "Chrome on Windows"),
        (PHONE, "Mobile Safari on iOS (iPhone)"),
        (TABLET, "Chrome Mobile on Android (Pixel 8)"),
        ("curl/8.5.0", "curl"),
        ("", "Unknown device"),
        ("\u0000\u202e☃" * 200, "Unknown device"),
    ],
)
def test_device_names_come_from_the_user_agent(agent, name):
    assert describe_device(agent)[0] == name


def test_the_device_key_ignores_versions_but_not_the_device():
    laptop_key = describe_device(LAPTOP)[1]
    assert describe_device(LAPTOP.replace("130.0.0.0", "131.0.0.0"))[1] == laptop_key
    assert describe_device(PHONE)[1] != laptop_key


@pytest.mark.django_db(transaction=True)
def test_a_dashboard_socket_lives_and_dies_with_its_browsers_device_session(settings):
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers
    # The dashboard's pages (gunicorn, :8000) and daphne (:8001) are two origins in development.
    settings.CSRF_TRUSTED_ORIGINS = ["http://127.0.0.1:8000"]
    user = make_user("Browser")
    browser = Client()
    assert browser.post("/signin", {"email": user.email, "password": PASSWORD}).status_code == 302
    name = django_settings.SESSION_COOKIE_NAME
    cookie = f"{name}={browser.cookies[name].value}"
    browser_session = DeviceSession.objects.get(user=user)
    phone = as_bearer(sign_in(user, PHONE))

    def socket(origin: str):
        headers = [(b"cookie", cookie.encode()), (b"origin", origin.encode())]
        return WebsocketCommunicator(application, "/ws/events/", headers=headers)

    async def scenario():
        elsewhere = socket("https://evil.example")
        await elsewhere.connect()
        foreign = await elsewhere.receive_output(timeout=5)
        page = socket("http://127.0.0.1:8000")
        assert (await page.connect())[0]
        hello = await page.receive_json_from(timeout=5)
        await sync_to_async(phone.delete)(f"/api/v1/me/sessions/{browser_session.pk}")
        frames = []
        while True:  # an audit event may come first; then the close
            output = await page.receive_output(timeout=5)
            frames.append(output)
            if output["type"] == "websocket.close":
                break
        again = socket("http://127.0.0.1:8000")
        await again.connect()
        refused = await again.receive_output(timeout=5)
        return foreign, hello, frames[-1], refused

    foreign, hello, closed, refused = async_to_sync(scenario)()

    assert foreign == {"type": "websocket.close", "code": 4401}
    assert hello["type"] == "hello" and hello["user"] == user.quickpe_id
    assert closed == {"type": "websocket.close", "code": 4401}
    assert refused == {"type": "websocket.close", "code": 4401}


def first_output_of_a_session_socket(settings, *headers: tuple[bytes, bytes]) -> dict:
    """Sign a browser in, open a socket with its session cookie and ``headers``: what the
    server says first (a hello, or a close)."""
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers
    user = make_user("Origin")
    browser = Client()
    assert browser.post("/signin", {"email": user.email, "password": PASSWORD}).status_code == 302
    name = django_settings.SESSION_COOKIE_NAME
    cookie = f"{name}={browser.cookies[name].value}"

    async def scenario():
        socket = WebsocketCommunicator(
            application, "/ws/events/", headers=[(b"cookie", cookie.encode()), *headers]
        )
        await socket.connect()
        first = await socket.receive_output(timeout=5)
        await socket.disconnect()
        return first

    first = async_to_sync(scenario)()
    if first["type"] == "websocket.send":
        return json.loads(first["text"])
    return first


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("host", "origin", "accepted"),
    [
        ("127.0.0.1:8001", "http://127.0.0.1:8001", True),  # the socket's own origin
        ("127.0.0.1:8001", "http://127.0.0.1:8000", True),  # in CSRF_TRUSTED_ORIGINS
        ("127.0.0.1:8001", "HTTP://127.0.0.1:8000/", True),  # the same, spelled otherwise
        ("127.0.0.1:8001", "http://evil:8001", False),
        ("127.0.0.1:8001", "http://evil:8000", False),
        ("127.0.0.1:8001", "http://127.0.0.1:9999", False),  # an allowed host, another port
        ("127.0.0.1:8001", "http://127.0.0.1", False),
        ("127.0.0.1:8001", "http://localhost:8000", False),
        ("127.0.0.1:8001", "https://127.0.0.1:8001", False),  # another scheme
        ("127.0.0.1:8001", "https://127.0.0.1:8000", False),
        ("127.0.0.1:8001", "null", False),
        ("127.0.0.1:8001", "", False),
        ("evil:8001", "http://evil:8001", False),  # a host Django does not answer to
    ],
)
def test_a_session_socket_needs_the_sites_own_origin_scheme_host_and_port(
    settings, host, origin, accepted
):
    settings.CSRF_TRUSTED_ORIGINS = ["http://127.0.0.1:8000"]  # the pages, on gunicorn's port
    first = first_output_of_a_session_socket(
        settings, (b"host", host.encode()), (b"origin", origin.encode())
    )
    if accepted:
        assert first["type"] == "hello"
    else:
        assert first == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "accepted"), [("https://pay.example.test", True), ("http://pay.example.test", False)]
)
def test_behind_the_proxy_the_sockets_own_origin_is_https(settings, origin, accepted):
    """nginx talks plain HTTP to daphne and says X-Forwarded-Proto: https (BEHIND_PROXY)."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "pay.example.test", "testserver"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.CSRF_TRUSTED_ORIGINS = []
    first = first_output_of_a_session_socket(
        settings,
        (b"host", b"pay.example.test"),
        (b"x-forwarded-proto", b"https"),
        (b"origin", origin.encode()),
    )
    if accepted:
        assert first["type"] == "hello"
    else:
        assert first == {"type": "websocket.close", "code": 4401}
