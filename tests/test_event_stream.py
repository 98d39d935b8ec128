"""The WebSocket event stream, end to end inside one process: real PostgreSQL, the real Redis
channel layer, the consumer driven by Channels' WebsocketCommunicator."""

import json
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from notifications import consumers
from notifications.models import Event, Notification
from quickpe.asgi import application
from tests.conftest import client_for, fund, make_user
from tests.invariants import assert_money_invariants
from wallet.services.users import tokens_issue

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 5  # seconds to wait for a frame that must come


@pytest.fixture(autouse=True)
def _own_channel_layer(settings):
    """A channel-layer namespace per test: test databases of parallel workers reuse user ids."""
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers


def token_for(user, lifetime: timedelta | None = None) -> str:
    """A signed-in device's access token, re-signed with a shorter life when asked."""
    raw = tokens_issue(user)["access"]
    if lifetime is None:
        return raw
    token = AccessToken(raw)
    token.set_exp(lifetime=lifetime)
    return str(token)


async def open_stream(user=None, *, token=None, query=""):
    raw = token if token is not None else await sync(token_for)(user)
    communicator = WebsocketCommunicator(application, f"/ws/events/?token={raw}{query}")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def frames_until(communicator, count: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=WAIT) for _ in range(count)]


def transfer(sender, recipient, amount="10.00", key=None):
    return client_for(sender).post(
        "/api/v1/transfers",
        {"recipient": recipient.quickpe_id, "amount": amount, "note": "rent"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.forged", "expired", "tampered", "refresh"],
)
def test_a_bad_token_is_closed_4401_before_any_event(token):
    user = make_user("Closed")
    if token == "expired":
        token = token_for(user, timedelta(seconds=-5))
    elif token == "tampered":
        good = token_for(user)
        token = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    elif token == "refresh":
        from rest_framework_simplejwt.tokens import RefreshToken

        token = str(RefreshToken.for_user(user))

    async def scenario():
        communicator = WebsocketCommunicator(application, f"/ws/events/?token={token}")
        await communicator.connect()
        output = await communicator.receive_output(timeout=WAIT)
        assert output == {"type": "websocket.close", "code": 4401}

    async_to_sync(scenario)()


def test_no_token_and_no_session_is_4401():
    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/events/")
        await communicator.connect()
        assert await communicator.receive_output(timeout=WAIT) == {
            "type": "websocket.close",
            "code": 4401,
        }

    async_to_sync(scenario)()


def test_hello_names_the_user_and_their_position():
    user = make_user("Hello")
    fund(user, 50_00)  # committed: a deposit gives 4 events (balance, transaction, notice, audit)
    position = Event.objects.filter(user=user).count()

    async def scenario():
        communicator = await open_stream(user)
        hello = await communicator.receive_json_from(timeout=WAIT)
        assert hello == {"type": "hello", "user": user.quickpe_id, "last_event_id": position}
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_transfer_reaches_both_parties_and_nobody_else():
    alice, bob, carol = make_user("Alice"), make_user("Bob"), make_user("Carol")
    fund(alice, 500_00)

    async def scenario():
        streams = {
            name: await open_stream(user)
            for name, user in [("alice", alice), ("alice2", alice), ("bob", bob), ("carol", carol)]
        }
        hellos = {name: await s.receive_json_from(timeout=WAIT) for name, s in streams.items()}
        response = await sync(transfer)(alice, bob, "123.45")
        assert response.status_code == 201
        received = {
            "alice": await frames_until(streams["alice"], 4),
            "alice2": await frames_until(streams["alice2"], 4),
            "bob": await frames_until(streams["bob"], 3),
        }
        assert await streams["carol"].receive_nothing(timeout=0.5)
        for stream in streams.values():
            await stream.disconnect()
        return hellos, received, response.json()

    hellos, received, body = async_to_sync(scenario)()
    assert received["alice"] == received["alice2"]  # every connection of a user gets everything
    alice_types = [frame["type"] for frame in received["alice"]]
    assert alice_types == ["balance:update", "transaction:new", "notification:new", "audit:new"]
    bob_types = [frame["type"] for frame in received["bob"]]
    assert bob_types == ["balance:update", "transaction:new", "notification:new"]
    for name in ("alice", "bob"):
        ids = [frame["id"] for frame in received[name]]
        start = hellos[name]["last_event_id"]
        assert ids == list(range(start + 1, start + 1 + len(ids)))  # strictly increasing, no gaps
        assert all(frame["ts"].endswith("Z") for frame in received[name])

    # The balances and lines are the ones the REST API reports.
    assert received["alice"][0]["data"]["balance"] == body["balance"] == "376.55"
    assert received["alice"][1]["data"]["transaction"] == body["transaction"]
    assert (
        client_for(bob).get("/api/v1/wallet").json()["balance"]
        == (received["bob"][0]["data"]["balance"])
    )
    bob_line = client_for(bob).get("/api/v1/transactions").json()["results"][0]
    assert received["bob"][1]["data"]["transaction"] == bob_line
    notice = received["bob"][2]["data"]
    assert notice["notification"]["kind"] == "transfer_received"
    assert notice["unread_count"] == Notification.objects.filter(user=bob, read_at=None).count()
    assert received["alice"][3]["data"]["entry"]["action"] == "transfer.create"


def test_a_refused_transfer_leaves_no_event_and_no_notification():
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 5_00)
    events, notices = Event.objects.count(), Notification.objects.count()

    async def scenario():
        stream = await open_stream(bob)
        await stream.receive_json_from(timeout=WAIT)
        response = await sync(transfer)(alice, bob, "50.00")
        assert response.status_code == 409
        assert await stream.receive_nothing(timeout=0.5)
        await stream.disconnect()

    async_to_sync(scenario)()
    assert (Event.objects.count(), Notification.objects.count()) == (events, notices)
    assert_money_invariants()


def test_resume_replays_exactly_what_was_missed():
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 1000_00)

    async def scenario():
        stream = await open_stream(bob)
        last_seen = (await stream.receive_json_from(timeout=WAIT))["last_event_id"]
        await stream.disconnect()
        for _ in range(5):  # bob is offline: 5 transfers, 3 events each
            assert (await sync(transfer)(alice, bob)).status_code == 201
        stream = await open_stream(bob, query=f"&last_event_id={last_seen}")
        hello = await stream.receive_json_from(timeout=WAIT)
        replayed = await frames_until(stream, 15)
        resumed = await stream.receive_json_from(timeout=WAIT)
        # The same again, asked for with a message on an open connection.
        await stream.send_json_to({"type": "resume", "last_event_id": last_seen})
        again = await frames_until(stream, 15)
        resumed_again = await stream.receive_json_from(timeout=WAIT)
        await stream.disconnect()
        return last_seen, hello, replayed, resumed, again, resumed_again

    last_seen, hello, replayed, resumed, again, resumed_again = async_to_sync(scenario)()
    assert hello["last_event_id"] == last_seen + 15
    assert [frame["id"] for frame in replayed] == list(range(last_seen + 1, last_seen + 16))
    assert resumed == resumed_again == {"type": "resumed", "last_event_id": last_seen + 15}
    assert again == replayed


def test_resume_from_pruned_or_future_history_asks_for_a_resync():
    user = make_user("Pruned")
    fund(user, 10_00)
    fund(user, 10_00)
    Event.objects.filter(user=user, seq__lte=2).delete()  # as the retention job would

    async def scenario():
        stream = await open_stream(user)
        await stream.receive_json_from(timeout=WAIT)
        answers = []
        for seq in (0, 1, 999, -1):
            await stream.send_json_to({"type": "resume", "last_event_id": seq})
            answers.append(await stream.receive_json_from(timeout=WAIT))
        # Seqs: 1 signup, 2-5 and 6-9 the deposits; 1-2 were pruned, so 2 is the oldest start.
        await stream.send_json_to({"type": "resume", "last_event_id": 2})
        replayed = await frames_until(stream, 8)
        assert [frame.get("id") for frame in replayed[:7]] == list(range(3, 10))
        answers.append(replayed[-1])
        await stream.disconnect()
        return answers

    answers = async_to_sync(scenario)()
    assert answers[:4] == [{"type": "resync_required"}] * 4
    assert answers[4] == {"type": "resumed", "last_event_id": 9}


def test_ping_bad_messages_and_oversized_frames():
    user = make_user("Pinger")

    async def scenario():
        stream = await open_stream(user)
        await stream.receive_json_from(timeout=WAIT)
        await stream.send_json_to({"type": "ping"})
        pong = await stream.receive_json_from(timeout=WAIT)
        await stream.send_to(text_data="not json")
        bad = await stream.receive_json_from(timeout=WAIT)
        await stream.send_json_to({"type": "subscribe", "user": "QP00000001"})
        unknown = await stream.receive_json_from(timeout=WAIT)
        await stream.send_json_to({"type": "resume", "last_event_id": "abc"})
        bad_id = await stream.receive_json_from(timeout=WAIT)
        await stream.send_to(text_data="x" * 5000)
        closed = await stream.receive_output(timeout=WAIT)
        return pong, bad, unknown, bad_id, closed

    pong, bad, unknown, bad_id, closed = async_to_sync(scenario)()
    assert pong["type"] == "pong" and pong["ts"].endswith("Z")
    assert bad["code"] == "invalid_message"
    assert unknown["code"] == "unknown_type"
    assert bad_id["code"] == "invalid_last_event_id"
    assert closed == {"type": "websocket.close", "code": 4413}


def test_the_connection_closes_4401_when_the_token_expires():
    user = make_user("Expiring")
    # exp has whole-second resolution: 3 s leaves at least 2 s to connect on a busy machine.
    short_lived = token_for(user, timedelta(seconds=3))

    async def scenario():
        stream = await open_stream(token=short_lived)
        assert (await stream.receive_json_from(timeout=WAIT))["type"] == "hello"
        assert await stream.receive_output(timeout=WAIT) == {
            "type": "websocket.close",
            "code": 4401,
        }

    async_to_sync(scenario)()


def sync(function):
    """Run blocking test code (the HTTP API, the ORM) from inside the scenario's event loop."""
    from asgiref.sync import sync_to_async

    return sync_to_async(function, thread_sensitive=False)


def test_frame_limit_counts_bytes_and_binary_frames_are_refused():
    user = make_user("Framer")

    async def scenario():
        closes = []
        for frame in ({"text_data": "é" * 2100}, {"bytes_data": b"\x00\x01"}):
            stream = await open_stream(user)
            await stream.receive_json_from(timeout=WAIT)
            await stream.send_to(**frame)
            closes.append(await stream.receive_output(timeout=WAIT))
        return closes

    too_big, binary = async_to_sync(scenario)()
    # autobahn (under daphne) lets an application close only with 1000 or 3000-4999: the
    # codes are 4000 + the HTTP status, as 4401 is.
    assert too_big == {"type": "websocket.close", "code": 4413}  # 2,100 chars, 4,200 bytes
    assert binary == {"type": "websocket.close", "code": 4415}


def test_event_rows_carry_the_payloads_exactly_with_hostile_text():
    """Events reach PostgreSQL as one JSON document: quotes, backslashes, emoji, line
    separators and a NUL-free but odd note must come back as the REST API shows them, numbered
    without gaps per user."""
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 100_00)
    note = "rent \"June\" \\ 50% ☕ \u2028 𝔘 'quoted'"
    before = {user.pk: Event.objects.filter(user=user).count() for user in (alice, bob)}
    response = client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "12.34", "note": note},
        format="json",
        HTTP_IDEMPOTENCY_KEY="hostile-note",
    )
    assert response.status_code == 201
    body = response.json()
    rows = {user.pk: list(Event.objects.filter(user=user).order_by("seq")) for user in (alice, bob)}
    for user in (alice, bob):
        seqs = [event.seq for event in rows[user.pk]]
        assert seqs == list(range(1, len(seqs) + 1))
    sent = rows[alice.pk][before[alice.pk] :]
    received = rows[bob.pk][before[bob.pk] :]
    assert [event.type for event in sent] == [
        "balance:update",
        "transaction:new",
        "notification:new",
        "audit:new",
    ]
    assert sent[1].data["transaction"] == body["transaction"]
    assert sent[1].data["transaction"]["description"] == note
    assert received[1].data["transaction"]["description"] == note
    assert received[2].data["notification"]["body"] == note
    assert received[2].data["unread_count"] == Notification.objects.filter(user=bob).count()


def test_a_deeply_nested_message_is_an_error_frame_and_the_connection_lives_on():
    user = make_user("Nested")
    deep = '{"type": "ping", "x": ' + "[" * 2000 + "]" * 2000 + "}"  # 4,022 chars: under the limit
    quoted = json.dumps({"type": "ping", "note": "[[[[[[{{{{{{"})  # brackets in a string count not

    async def scenario():
        stream = await open_stream(user)
        await stream.receive_json_from(timeout=WAIT)
        answers = []
        for text in (deep, "[" * 4000, quoted):
            await stream.send_to(text_data=text)
            answers.append(await stream.receive_json_from(timeout=WAIT))
        await stream.disconnect()
        return answers

    deep_answer, open_answer, quoted_answer = async_to_sync(scenario)()
    assert (
        deep_answer
        == open_answer
        == {
            "type": "error",
            "code": "invalid_message",
            "detail": "Send a JSON object with a type.",
        }
    )
    assert quoted_answer["type"] == "pong"


def flood_until_closed(user, message: dict, count: int) -> list[dict]:
    """After the hello, ``count`` copies of ``message`` at once; every output the consumer
    gives until it closes the connection (the close is the last)."""

    async def scenario():
        stream = await open_stream(user)
        await stream.receive_json_from(timeout=WAIT)
        for _ in range(count):
            await stream.send_json_to(message)
        outputs = []
        while not outputs or outputs[-1]["type"] != "websocket.close":
            outputs.append(await stream.receive_output(timeout=WAIT))
        return outputs

    return async_to_sync(scenario)()


def test_a_client_over_the_message_rate_gets_rate_limited_then_is_closed():
    user = make_user("Flooder")
    burst, refused = consumers.MESSAGE_BURST, consumers.REFUSED_BEFORE_CLOSE

    # Sent at once, faster than the bucket refills.
    outputs = flood_until_closed(user, {"type": "ping"}, burst + refused + 5)
    frames = [json.loads(output["text"]) for output in outputs[:-1]]
    assert [frame["type"] for frame in frames] == ["pong"] * burst + ["error"]
    assert frames[-1]["code"] == "rate_limited"
    assert outputs[-1] == {"type": "websocket.close", "code": 4429}


def test_300_resumes_do_not_multiply_the_replay():
    """The review's flood: 300 resume messages at once replayed the history 300 times."""
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 1000_00)
    for _ in range(5):
        assert transfer(alice, bob).status_code == 201
    position = Event.objects.filter(user=bob).count()  # signup + 5 transfers x 3 events
    resumes_served = consumers.MESSAGE_BURST // (1 + consumers.REPLAY_COST)  # 2

    outputs = flood_until_closed(bob, {"type": "resume", "last_event_id": 0}, 300)
    frames = [json.loads(output["text"]) for output in outputs[:-1]]
    replay = list(range(1, position + 1))
    assert len(frames) == resumes_served * (position + 1) + 1
    for served in range(resumes_served):
        chunk = frames[served * (position + 1) : (served + 1) * (position + 1)]
        assert [frame["id"] for frame in chunk[:-1]] == replay
        assert chunk[-1] == {"type": "resumed", "last_event_id": position}
    assert frames[-1]["code"] == "rate_limited"
    assert outputs[-1] == {"type": "websocket.close", "code": 4429}
