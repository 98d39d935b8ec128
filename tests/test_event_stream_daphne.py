"""The event stream's closes as a real daphne process sends them: autobahn, under daphne,
refuses close codes an application may not use (anything but 1000 and 3000-4999), which Channels'
WebsocketCommunicator does not check."""

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import make_user
from tests.processes import Stack, _listening, wait_until
from wallet.services.users import tokens_issue

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 10


@pytest.fixture
def daphne(tmp_path):
    """One daphne process (and its private Redis), without the rest of the stack."""
    stack = Stack(tmp_path)
    (tmp_path / "metrics").mkdir()
    try:
        stack.redis.start()
        stack.start_daphne(1)
        wait_until(lambda: _listening(stack.ws_ports[0]), what="daphne")
        yield stack
    finally:
        stack.stop()


@pytest.mark.parametrize(
    ("frame", "code"),
    [("x" * 4097, 4413), ("é" * 2100, 4413), (b"\x00\x01", 4415)],
    ids=["oversized", "oversized-in-bytes", "binary"],
)
def test_daphne_closes_a_bad_client_frame_with_its_code_and_no_traceback(daphne, frame, code):
    user = make_user("Framer")
    with connect(f"{daphne.ws_url(0)}?token={tokens_issue(user)['access']}") as socket:
        assert json.loads(socket.recv(timeout=WAIT))["type"] == "hello"
        socket.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=WAIT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code
    daphne.stop()  # flushes its log
    assert "Traceback" not in (daphne.directory / "ws1.log").read_text()
