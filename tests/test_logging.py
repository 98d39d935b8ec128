"""Logs are JSON lines that say what happened (the request, the money movement) with the
request's id, and never hold a password, a token, a full email or an idempotency key.
Read from a real gunicorn's and Celery worker's output, as production writes it, or (WebSockets,
Django's own records) rendered in-process by the same JSON formatter."""

import json
import logging
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from quickpe.asgi import application
from quickpe.logs import logging_config
from tests.conftest import PASSWORD, make_user
from tests.processes import Stack, wait_until
from wallet.models import User
from wallet.services.emails import verification_token
from wallet.services.users import tokens_issue

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_transfer_logs_json_lines_with_its_request_id_and_no_secrets(tmp_path):
    stack = Stack(tmp_path).start(web_only=True)
    try:
        tokens = {}
        for name in ("alice", "bob"):
            status, body = stack.request(
                "POST",
                "/api/v1/auth/signup",
                {"email": f"{name}@example.com", "password": PASSWORD, "first_name": name},
            )
            assert status == 201, body
            tokens[name] = body
        # Bob follows his verification link, so he is paid by email below.
        link = verification_token(User.objects.get(email="bob@example.com"))
        status, body = stack.request("POST", "/api/v1/auth/verify-email", {"token": link})
        assert status == 200, body
        access = tokens["alice"]["access"]
        status, _ = stack.request(
            "POST", "/api/v1/auth/signin", {"email": "alice@example.com", "password": PASSWORD}
        )
        assert status == 200
        status, _ = stack.request(
            "POST",
            "/api/v1/wallet/deposits",
            {"amount": "100.00"},
            token=access,
            key="secret-key-1",
        )
        assert status == 201
        status, body, headers = stack.exchange(
            "POST",
            "/api/v1/transfers",
            {"recipient": "bob@example.com", "amount": "12.50"},
            headers={
                "Authorization": f"Bearer {access}",
                "Idempotency-Key": "secret-key-2",
                "X-Request-ID": "trace-me-42",
            },
        )
        assert status == 201, body
        assert headers["X-Request-ID"] == "trace-me-42"
        status, _, _ = stack.exchange(
            "POST",
            "/api/v1/transfers",
            {"recipient": "bob@example.com", "amount": "5000.00"},
            headers={
                "Authorization": f"Bearer {access}",
                "Idempotency-Key": "secret-key-3",
                "X-Request-ID": "refused-43",
            },
        )
        assert status == 409
        too_long = "x" * 200  # like one with spaces or non-ASCII: replaced by a new one
        _, _, generated = stack.exchange("GET", "/health/live", headers={"X-Request-ID": too_long})
        assert len(generated["X-Request-ID"]) == 32
    finally:
        stack.stop()
    raw = (tmp_path / "web.log").read_text()
    records = [json.loads(line) for line in raw.splitlines() if line.startswith("{")]
    traced = [record for record in records if record.get("request_id") == "trace-me-42"]
    request = next(record for record in traced if record["event"] == "request")
    assert request | {"duration_ms": 0, "timestamp": "", "user": 0} == {
        "event": "request",
        "method": "POST",
        "route": "transfer-create",
        "status": 201,
        "duration_ms": 0,
        "user": 0,
        "request_id": "trace-me-42",
        "level": "info",
        "logger": "quickpe.requests",
        "timestamp": "",
    }
    assert isinstance(request["user"], int) and request["duration_ms"] > 0
    movement = next(record for record in traced if record["event"] == "money.movement")
    assert movement["kind"] == "transfer" and movement["outcome"] == "ok"
    assert movement["amount"] == "12.50" and movement["reference"].startswith("TRF")
    assert len(movement["wallets"]) == 2
    refusal = next(
        record
        for record in records
        if record.get("request_id") == "refused-43" and record["event"] == "money.movement"
    )
    assert (refusal["kind"], refusal["outcome"]) == ("transfer", "insufficient_funds")
    assert refusal["user"] == request["user"]
    events = next(record for record in traced if record["event"] == "events")
    assert len(events["streams"]) == 2  # both parties' new events, under the same request id
    for secret in (
        PASSWORD,
        tokens["alice"]["access"],
        tokens["alice"]["refresh"],
        tokens["bob"]["refresh"],
        "alice@example.com",
        "bob@example.com",
        link,
        "secret-key-1",
        "secret-key-2",
        "secret-key-3",
    ):
        assert secret not in raw, secret


def as_written(records) -> list[dict]:
    """Captured records rendered as production writes them: the JSON formatter, scrubbing
    included."""
    options = logging_config(log_format="json", level="INFO")["formatters"]["structured"]
    formatter = options.pop("()")(**options)
    return [json.loads(formatter.format(record)) for record in records]


def test_a_websocket_logs_connect_and_disconnect_under_its_request_id(caplog, settings):
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers
    user = make_user("Socket", email="socket.person@example.com")
    token = tokens_issue(user)["access"]

    async def scenario():
        stream = WebsocketCommunicator(
            application,
            f"/ws/events/?token={token}",
            headers=[(b"x-request-id", b"socket-trace-9")],
        )
        assert (await stream.connect())[0]
        await stream.receive_json_from(timeout=5)
        await stream.disconnect(code=1001)

    with caplog.at_level(logging.INFO):
        async_to_sync(scenario)()
    lines = as_written(record for record in caplog.records if record.name == "quickpe.websocket")
    connect, disconnect = lines
    assert {key: connect[key] for key in ("event", "user", "by", "request_id")} == {
        "event": "websocket.connect",
        "user": user.pk,
        "by": "token",
        "request_id": "socket-trace-9",
    }
    assert {key: disconnect[key] for key in ("event", "user", "code", "request_id")} == {
        "event": "websocket.disconnect",
        "user": user.pk,
        "code": 1001,
        "request_id": "socket-trace-9",
    }
    assert isinstance(disconnect["duration_ms"], float)
    assert token not in json.dumps(lines) and "socket.person@example.com" not in json.dumps(lines)


def test_what_django_logs_about_a_request_is_scrubbed_too(rf):
    # A server error record carries the request, whose repr has the full path: query strings
    # with an email (URL-encoded, as clients send it) or a token must not reach the log.
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo3fQ.c2lnbmF0dXJlLWJ5dGVz"
    request = rf.get("/api/v1/users", {"search": "priya.k@example.com", "token": jwt})
    error = logging.getLogger("django.request").makeRecord(
        "django.request",
        logging.ERROR,
        __file__,
        1,
        "Internal Server Error: %s",
        (request.path,),
        None,
        extra={
            "request": request,
            "status_code": 500,
            "headers": {"Authorization": f"Bearer {jwt}", "Idempotency-Key": "pay-rent-1"},
            "password": PASSWORD,
        },
    )
    [line] = as_written([error])
    raw = json.dumps(line)
    assert line["request"].startswith("<WSGIRequest: GET '/api/v1/users?")
    assert "pr***@example.com" in line["request"]
    for secret in (jwt, "priya.k", "priya.k%40example.com", "pay-rent-1", PASSWORD):
        assert secret not in raw, secret


def test_a_task_logs_under_the_request_id_that_queued_it(tmp_path):
    stack = Stack(tmp_path).start(web_only=True)
    try:
        # It credits the sign-up bonus (QUICKPE_SIGNUP_BONUS); INFO, as production runs it.
        stack.start_worker("worker", loglevel="INFO")
        status, body, _ = stack.exchange(
            "POST",
            "/api/v1/auth/signup",
            {"email": "carol@example.com", "password": PASSWORD, "first_name": "Carol"},
            headers={"X-Request-ID": "signup-trace-7"},
        )
        assert status == 201, body
        log = tmp_path / "worker.log"

        def task_records() -> list[dict]:
            lines = log.read_text().splitlines()
            records = [json.loads(line) for line in lines if line.startswith("{")]
            return [record for record in records if record.get("event") == "task"]

        wait_until(task_records, timeout=60, what="the sign-up bonus task's log line")
    finally:
        stack.stop()
    task = task_records()[0]
    assert task["task"] == "wallet.signup_bonus_credit"
    assert (task["outcome"], task["request_id"]) == ("success", "signup-trace-7")
    raw = log.read_text()
    assert PASSWORD not in raw and "carol@example.com" not in raw
