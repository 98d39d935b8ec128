"""End to end with real processes: the HTTP server (gunicorn), two daphne processes and a Celery
worker on the real PostgreSQL and a real Redis. Slow-ish (processes start), so one stack serves
the whole module."""

import json
import uuid

import pytest
from websockets.sync.client import connect

from tests.conftest import make_user
from tests.processes import running_stack
from wallet.services.money import deposit_create
from wallet.services.users import tokens_issue

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 10


@pytest.fixture
def stack(tmp_path):
    with running_stack(tmp_path) as running:
        yield running


def frames(socket, count: int) -> list[dict]:
    return [json.loads(socket.recv(timeout=WAIT)) for _ in range(count)]


def pay(stack, sender_token, recipient, amount="1.00"):
    status, body = stack.request(
        "POST",
        "/api/v1/transfers",
        {"recipient": recipient.quickpe_id, "amount": amount},
        token=sender_token,
        key=uuid.uuid4().hex,
    )
    assert status == 201, body
    return body


def test_events_of_http_transfers_reach_a_client_on_the_second_daphne(stack):
    alice, bob = make_user("Alice"), make_user("Bob")
    deposit_create(user=alice, amount=10_000_00)
    alice_token, bob_token = tokens_issue(alice)["access"], tokens_issue(bob)["access"]

    with connect(f"{stack.ws_url(1)}?token={bob_token}") as socket:
        hello = json.loads(socket.recv(timeout=WAIT))
        bodies = [pay(stack, alice_token, bob, f"{n}.00") for n in range(1, 6)]
        received = frames(socket, 15)

    ids = [frame["id"] for frame in received]
    assert ids == list(range(hello["last_event_id"] + 1, hello["last_event_id"] + 16))
    lines = [
        frame["data"]["transaction"] for frame in received if frame["type"] == "transaction:new"
    ]
    assert [line["transfer_id"] for line in lines] == [body["transfer"]["id"] for body in bodies]
    assert [line["amount"] for line in lines] == ["1.00", "2.00", "3.00", "4.00", "5.00"]


def test_a_client_that_missed_50_transfers_gets_exactly_those_on_reconnect(stack):
    alice, bob = make_user("Alice"), make_user("Bob")
    deposit_create(user=alice, amount=10_000_00)
    alice_token, bob_token = tokens_issue(alice)["access"], tokens_issue(bob)["access"]

    with connect(f"{stack.ws_url(0)}?token={bob_token}") as socket:
        last_seen = json.loads(socket.recv(timeout=WAIT))["last_event_id"]
    transfers = [pay(stack, alice_token, bob)["transfer"]["id"] for _ in range(50)]

    with connect(f"{stack.ws_url(1)}?token={bob_token}&last_event_id={last_seen}") as socket:
        hello = json.loads(socket.recv(timeout=WAIT))
        replayed = frames(socket, 150)
        resumed = json.loads(socket.recv(timeout=WAIT))
        with pytest.raises(TimeoutError):  # nothing else is pending: no duplicates
            socket.recv(timeout=0.5)
    assert hello["last_event_id"] == last_seen + 150
    assert [frame["id"] for frame in replayed] == list(range(last_seen + 1, last_seen + 151))
    lines = [frame for frame in replayed if frame["type"] == "transaction:new"]
    assert [frame["data"]["transaction"]["transfer_id"] for frame in lines] == transfers
    assert resumed == {"type": "resumed", "last_event_id": last_seen + 150}


def test_transfers_survive_a_redis_outage_and_clients_replay_after_it(stack):
    alice, bob = make_user("Alice"), make_user("Bob")
    deposit_create(user=alice, amount=10_000_00)
    alice_token, bob_token = tokens_issue(alice)["access"], tokens_issue(bob)["access"]
    with connect(f"{stack.ws_url(0)}?token={bob_token}") as socket:
        last_seen = json.loads(socket.recv(timeout=WAIT))["last_event_id"]

    stack.redis.stop()
    during = [pay(stack, alice_token, bob)["transfer"]["id"] for _ in range(10)]
    status, health = stack.get("/health/ready")
    assert status == 503
    assert health["checks"]["redis"].startswith("error")
    assert health["checks"]["database"] == "ok"

    stack.redis.start()
    with connect(f"{stack.ws_url(1)}?token={bob_token}&last_event_id={last_seen}") as socket:
        json.loads(socket.recv(timeout=WAIT))
        replayed = frames(socket, 30)
        resumed = json.loads(socket.recv(timeout=WAIT))
    lines = [frame for frame in replayed if frame["type"] == "transaction:new"]
    assert [frame["data"]["transaction"]["transfer_id"] for frame in lines] == during
    assert resumed == {"type": "resumed", "last_event_id": last_seen + 30}


def test_events_made_by_the_celery_worker_reach_a_client(stack):
    """Signing up through the HTTP server queues the signup bonus; the worker process credits
    it, and its events reach the new user's connection on daphne."""
    status, signup = stack.request(
        "POST",
        "/api/v1/auth/signup",
        {
            "email": f"{uuid.uuid4().hex[:8]}@example.com",
            "password": "a-long-test-passphrase",
            "first_name": "Newcomer",
        },
    )
    assert status == 201, signup
    token = signup["access"]
    with connect(f"{stack.ws_url(1)}?token={token}&last_event_id=0") as socket:
        json.loads(socket.recv(timeout=WAIT))  # hello
        received = []
        while not any(frame.get("type") == "notification:new" for frame in received):
            received.append(json.loads(socket.recv(timeout=WAIT)))
    by_type = {frame["type"]: frame for frame in received if "type" in frame}
    assert by_type["balance:update"]["data"]["balance"] == "50.00"
    assert by_type["notification:new"]["data"]["notification"]["kind"] == "deposit"
    assert stack.get("/api/v1/wallet", token=token)[1]["balance"] == "50.00"
