"""PostgreSQL failing under real gunicorn processes: killed and restarted, or one web worker
frozen in the middle of a transaction. Clients get retryable 503s, never 500s and never a
hang; the rest of the API keeps serving; a retry with the same Idempotency-Key moves money
exactly once."""

import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from tests.processes import BASE_DIR, Postgres, running_stack


@pytest.fixture
def postgres(tmp_path):
    """A private, migrated PostgreSQL this test may kill (the suite's server is shared)."""
    server = Postgres(tmp_path).init().start()
    try:
        url = server.create_database("quickpe")
        subprocess.run(  # noqa: S603 - our own interpreter and manage.py
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=BASE_DIR,
            env={**os.environ, "DATABASE_URL": url},
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield server
    finally:
        server.stop()


def signed_up(stack, first_name: str) -> str:
    """A new user's access token, through the API (this database is not the test database)."""
    status, body = stack.request(
        "POST",
        "/api/v1/auth/signup",
        {
            "email": f"{first_name.lower()}-{uuid.uuid4().hex[:8]}@example.com",
            "password": "a-long-test-passphrase",
            "first_name": first_name,
            "last_name": "Tester",
        },
    )
    assert status == 201, body
    return body["access"]


def quickpe_id(stack, token: str) -> str:
    status, body = stack.get("/api/v1/me", token=token)
    assert status == 200, body
    return body["quickpe_id"]


def assert_retryable(status: int, body, headers, code: str) -> None:
    assert status == 503, body
    assert body["code"] == code and body["status"] == 503
    assert headers["Content-Type"] == "application/problem+json"
    assert int(headers["Retry-After"]) >= 1


def test_postgres_killed_and_restarted_answers_503_unavailable_then_the_retry_moves_money_once(
    postgres, tmp_path
):
    with running_stack(
        tmp_path,
        web_only=True,
        DATABASE_URL=postgres.url("quickpe"),
        # Persistent connections, as in production: each worker's connection dies with the
        # server and must be noticed and replaced, not reused.
        DATABASE_CONN_MAX_AGE="60",
        QUICKPE_SIGNUP_BONUS="0",
    ) as stack:
        alice, bob = signed_up(stack, "Alice"), signed_up(stack, "Bob")
        bob_id = quickpe_id(stack, bob)
        status, body = stack.request(
            "POST", "/api/v1/wallet/deposits", {"amount": "1000.00"}, token=alice, key="top-up"
        )
        assert status == 201, body
        transfer = {"recipient": bob_id, "amount": "25.00"}

        postgres.kill()
        answer = stack.exchange("POST", "/api/v1/transfers", transfer, token=alice, key="t-1")
        assert_retryable(*answer, "unavailable")
        assert_retryable(*stack.exchange("GET", "/api/v1/wallet", token=alice), "unavailable")
        status, body = stack.get("/health/ready")
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["checks"]["database"].startswith("error: ")
        assert stack.get("/health/live") == (200, {"status": "ok"})

        postgres.start()
        status, body, headers = stack.exchange(
            "POST", "/api/v1/transfers", transfer, token=alice, key="t-1"
        )
        assert status == 201, body
        assert "Idempotent-Replayed" not in headers
        status, replayed, headers = stack.exchange(
            "POST", "/api/v1/transfers", transfer, token=alice, key="t-1"
        )
        assert (status, replayed, headers["Idempotent-Replayed"]) == (201, body, "true")
        assert stack.get("/api/v1/wallet", token=alice)[1]["balance"] == "975.00"
        assert stack.get("/api/v1/wallet", token=bob)[1]["balance"] == "25.00"
        assert stack.get("/health/ready")[1]["checks"]["database"] == "ok"
        assert not [line for line in stack.access_log() if line[1] == 500]

    with psycopg.connect(postgres.url("quickpe")) as database:
        transfers = database.execute("SELECT amount FROM wallet_transfer").fetchall()
        balances, deposits = database.execute(
            "SELECT (SELECT SUM(balance) FROM wallet_wallet),"
            " (SELECT SUM(amount) FROM wallet_ledgerentry WHERE kind = 'deposit')"
        ).fetchone()
    assert transfers == [(2500,)]
    assert balances == deposits == 1000_00
