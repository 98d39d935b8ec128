"""SIGTERM, as a deploy sends it: gunicorn finishes what it accepted (and refuses cleanly what
it did not), daphne tells WebSocket clients to reconnect, and the money stays right."""

import json
import signal
import threading
import uuid

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import fund, make_user
from tests.invariants import assert_money_invariants
from tests.processes import Stack
from wallet.models import Transfer
from wallet.services.users import tokens_issue

pytestmark = pytest.mark.django_db(transaction=True)


def test_sigterm_during_a_burst_of_transfers_loses_nothing_and_half_does_nothing(tmp_path):
    stack = Stack(tmp_path).start(web_only=True)
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 10_000_00)
    token = tokens_issue(alice)["access"]
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()
    started = threading.Barrier(5)

    def burst():
        started.wait(timeout=10)
        for _ in range(40):
            key = uuid.uuid4().hex
            status, body = stack.request(
                "POST",
                "/api/v1/transfers",
                {"recipient": bob.quickpe_id, "amount": "1.00"},
                token=token,
                key=key,
            )
            with lock:
                outcomes.append((status, key))

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait(timeout=10)
    while len(outcomes) < 20:  # some transfers done, more in flight
        threading.Event().wait(0.01)
    stack.processes["web"].send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    stack.processes["web"].wait(timeout=60)
    stack.stop()

    statuses = {status for status, _ in outcomes}
    # 201: done. 0: refused before it was accepted (connection refused or reset).
    assert statuses <= {201, 0}, statuses
    assert 0 in statuses, "the server stopped accepting during the burst"
    done = [key for status, key in outcomes if status == 201]
    assert Transfer.objects.count() == len(done), "every transfer answered 201, and only those"
    assert_money_invariants()


def test_sigterm_tells_websocket_clients_to_reconnect(tmp_path):
    stack = Stack(tmp_path).start()
    try:
        user = make_user("Listener")
        token = tokens_issue(user)["access"]
        with connect(f"{stack.ws_url(0)}?token={token}") as socket:
            assert json.loads(socket.recv(timeout=10))["type"] == "hello"
            stack.processes["ws1"].send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
        assert closed.value.rcvd is not None, "a close frame, not a dropped connection"
        assert closed.value.rcvd.code == 1012  # service restart: reconnect and resume
    finally:
        stack.stop()
