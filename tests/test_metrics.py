"""/metrics: counters that move with what QuickPe does, added up across processes, and only
for the networks (or the token) allowed to read them."""

import json
import re
import urllib.request
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from quickpe.asgi import application
from tests.conftest import assert_problem, client_for, fund, make_user
from tests.processes import Stack
from wallet.services.users import tokens_issue

pytestmark = pytest.mark.django_db(transaction=True)


def sample(text: str, name: str, **labels) -> float:
    """The value of one series in Prometheus text (0 when it is not there yet)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric == name and found == wanted:
            return float(value)
    return 0.0


def scrape(**extra) -> str:
    response = APIClient().get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def test_a_transfer_and_a_websocket_move_the_counters(settings):
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 100_00)
    before = scrape()

    response = client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "5.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="metrics-1",
    )
    assert response.status_code == 201
    refused = client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "500.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="metrics-2",
    )
    assert refused.status_code == 409
    token = tokens_issue(bob)["access"]

    async def connected() -> str:
        stream = WebsocketCommunicator(application, f"/ws/events/?token={token}")
        assert (await stream.connect())[0]
        await stream.receive_json_from(timeout=5)
        from asgiref.sync import sync_to_async

        during = await sync_to_async(scrape)()
        await stream.disconnect()
        return during

    during = async_to_sync(connected)()
    after = scrape()

    def moved(name, text=after, **labels):
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert moved("quickpe_money_movements_total", kind="transfer", outcome="ok") == 1
    assert (
        moved("quickpe_money_movements_total", kind="transfer", outcome="insufficient_funds") == 1
    )
    assert (
        moved("quickpe_http_requests_total", method="POST", route="transfer-create", status="201")
        == 1
    )
    assert moved("quickpe_http_request_duration_seconds_count", route="transfer-create") == 2
    assert moved("quickpe_websocket_connections", text=during) == 1
    assert moved("quickpe_websocket_connections") == 0


def test_metrics_are_for_allowed_networks_or_the_token(db, settings):
    settings.QUICKPE_METRICS_TOKEN = "a-long-random-metrics-token"
    outsider = {"REMOTE_ADDR": "203.0.113.9"}
    assert_problem(APIClient().get("/metrics", **outsider), 404, "not_found")
    wrong = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer nope", **outsider)
    assert_problem(wrong, 404, "not_found")
    assert "quickpe_http_requests_total" in scrape(
        HTTP_AUTHORIZATION="Bearer a-long-random-metrics-token", **outsider
    )


def test_counts_from_two_gunicorn_workers_add_up(tmp_path):
    stack = Stack(tmp_path).start(web_only=True)
    try:
        alice, bob = make_user("Alice"), make_user("Bob")
        fund(alice, 1_000_00)
        token = tokens_issue(alice)["access"]
        transfers = 24
        for number in range(transfers):
            status, body = stack.request(
                "POST",
                "/api/v1/transfers",
                {"recipient": bob.quickpe_id, "amount": "1.00"},
                token=token,
                key=f"two-workers-{number}",
            )
            assert status == 201, body
        served_by = {pid for pid, status, path in stack.access_log() if path == "/api/v1/transfers"}
        assert len(served_by) == 2, "both workers must have served transfers"
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.http_port}/metrics") as response:  # noqa: S310
            text = response.read().decode()
    finally:
        stack.stop()
    assert sample(text, "quickpe_money_movements_total", kind="transfer", outcome="ok") == transfers
    assert (
        sample(
            text,
            "quickpe_http_requests_total",
            method="POST",
            route="transfer-create",
            status="201",
        )
        == transfers
    )
    assert re.search(r"^quickpe_db_connections_open ", text, re.MULTILINE)
