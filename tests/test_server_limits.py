"""gunicorn's own refusals (a request line or headers over its limits, a request it cannot
parse) answer problem+json like the app, not gunicorn's HTML page. Real gunicorn processes."""

import json
import socket

import pytest

from tests.conftest import LEAKS, PROBLEM_KEYS
from tests.processes import running_stack

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def web(tmp_path_factory, django_db_setup, django_db_blocker):
    with (
        django_db_blocker.unblock(),
        running_stack(tmp_path_factory.mktemp("limits"), web_only=True) as running,
    ):
        yield running


def raw(port: int, head: bytes) -> tuple[int, dict, bytes]:
    """Send ``head`` as it is on a new connection: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as connection:
        connection.sendall(head)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    top, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def assert_problem_bytes(answer, status: int, code: str) -> None:
    got_status, headers, body = answer
    assert got_status == status, body
    assert headers["Content-Type"] == "application/problem+json"
    assert int(headers["Content-Length"]) == len(body)
    problem = json.loads(body)
    assert set(problem) == PROBLEM_KEYS
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["type"] == f"urn:quickpe:problem:{code}" and problem["detail"]
    assert not LEAKS.search(body.decode()) and b"<html" not in body


@pytest.mark.parametrize(
    "head,status,code",
    [
        (
            b"GET /api/v1/users?search=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            414,
            "uri_too_long",
        ),
        (
            b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "header_fields_too_large",
        ),
        (
            b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: 1\r\n" * 120 + b"\r\n",
            431,
            "header_fields_too_large",
        ),
        (b"GET /health/live HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 400, "bad_request"),
        (
            b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: 1\r\n\r\n",
            400,
            "bad_request",
        ),
    ],
)
def test_gunicorns_own_refusals_are_problem_json(web, head, status, code):
    assert_problem_bytes(raw(web.http_port, head), status, code)


def test_a_request_within_the_limits_still_reaches_django(web):
    status, headers, body = raw(
        web.http_port, b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert status == 200, body
