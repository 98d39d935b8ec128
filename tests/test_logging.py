"""Logs are JSON lines that say what happened (the request, the money movement) with the
request's id, and never hold a password, a token, a full email or an idempotency key.
Read from a real gunicorn's output, as production writes it."""

import json

import pytest

from tests.conftest import PASSWORD
from tests.processes import Stack

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
    events = next(record for record in traced if record["event"] == "events")
    assert len(events["streams"]) == 2  # both parties' new events, under the same request id
    for secret in (
        PASSWORD,
        tokens["alice"]["access"],
        tokens["alice"]["refresh"],
        tokens["bob"]["refresh"],
        "alice@example.com",
        "bob@example.com",
        "secret-key-1",
        "secret-key-2",
    ):
        assert secret not in raw, secret
