"""PostgreSQL failing under real gunicorn processes: killed and restarted, or one web worker
frozen in the middle of a transaction. Clients get retryable 503s, never 500s and never a
hang; the rest of the API keeps serving; a retry with the same Idempotency-Key moves money
exactly once."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.conftest import fund, make_user
from tests.invariants import assert_money_invariants
from tests.processes import BASE_DIR, Postgres, running_stack, wait_until
from wallet.models import Transfer
from wallet.services.users import tokens_issue


@pytest.fixture
def postgres():
    """A private, migrated PostgreSQL this test may kill (the suite's server is shared). Its
    folder is not under pytest's tmp_path: a pytest session starting meanwhile (another run on
    the same machine) makes pytest's own root folder private again, and the server, which runs
    as a user of its own, could then no longer reach its data to restart."""
    folder = Path(tempfile.mkdtemp(prefix="quickpe-postgres-"))
    folder.chmod(0o755)
    server = Postgres(folder).init().start()
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
        shutil.rmtree(folder, ignore_errors=True)


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


# --- a web worker frozen in the middle of a transaction --------------------------------------

WEB_WORKERS = 4
LOAD_SECONDS = 6


def transfer(stack, token: str, recipient, *, key: str | None = None, timeout: float = 15):
    """(status, body, headers, seconds) of one transfer of 1.00."""
    started = time.monotonic()
    status, body, headers = stack.exchange(
        "POST",
        "/api/v1/transfers",
        {"recipient": recipient.quickpe_id, "amount": "1.00"},
        token=token,
        key=key or uuid.uuid4().hex,
        timeout=timeout,
    )
    return status, body, headers, time.monotonic() - started


def backend_state(observer, pid: int) -> str | None:
    row = observer.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return row[0] if row else None


def freeze_a_worker_holding(stack, observer, wallet_user, request) -> tuple[psutil.Process, int]:
    """Freeze one gunicorn worker (SIGSTOP) while its request holds ``wallet_user``'s wallet
    lock in an open transaction, as a worker stuck in a GC pause, a swap storm or a debugger
    would; returns it and its PostgreSQL backend's pid.

    The test holds the wallet first and stops the other workers, so ``request`` reaches this
    worker and waits for the lock; this worker is stopped while it waits, the others go on,
    and the test lets go: PostgreSQL hands the lock to the frozen worker's transaction."""
    chosen, *others = stack.children("web")
    with psycopg.connect(stack.environment()["DATABASE_URL"]) as holder:
        holder.execute(
            "SELECT 1 FROM wallet_wallet WHERE user_id = %s FOR UPDATE", [wallet_user.pk]
        )
        for worker in others:
            worker.suspend()
        try:
            request.start()
            [(backend,)] = wait_until(
                lambda: observer.execute(
                    "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    [holder.info.backend_pid],
                ).fetchall(),
                timeout=1,  # well inside the request's own 2 s lock wait
                what="the request to wait for the wallet",
            )
            chosen.suspend()
        finally:
            for worker in others:
                worker.resume()
        holder.rollback()
    wait_until(
        lambda: backend_state(observer, backend) == "idle in transaction",
        what="the frozen worker's transaction to hold the wallet",
    )
    return chosen, backend


@pytest.mark.django_db(transaction=True)
def test_a_worker_frozen_holding_a_hot_wallet_stalls_nobody_else(tmp_path):
    hot = make_user("Hot", "Wallet")
    # As many clients paying the hot wallet as there are workers left: with a long lock wait
    # they would all be waiting at once and unrelated transfers would queue behind them.
    payers = [make_user("Payer", str(index)) for index in range(WEB_WORKERS - 1)]
    senders = [make_user("Sender", str(index)) for index in range(3)]
    recipients = [make_user("Recipient", str(index)) for index in range(3)]
    # The frozen request locks both of its wallets: its recipient is nobody else's.
    bystander = make_user("Bystander")
    for user in [hot, *payers, *senders]:
        fund(user, 10_000_00)
    token = {user.pk: tokens_issue(user)["access"] for user in [hot, *payers, *senders]}
    answers = {}

    with (
        running_stack(tmp_path, web_only=True, web_workers=WEB_WORKERS) as stack,
        psycopg.connect(stack.environment()["DATABASE_URL"], autocommit=True) as observer,
    ):
        stuck = threading.Thread(
            target=lambda: answers.update(
                stuck=transfer(stack, token[hot.pk], bystander, key="stuck", timeout=60)
            )
        )
        frozen, backend = freeze_a_worker_holding(stack, observer, hot, stuck)
        try:
            deadline = time.monotonic() + LOAD_SECONDS

            def keep_sending(sender, recipient) -> list[tuple]:
                sent = []
                while time.monotonic() < deadline:
                    sent.append(transfer(stack, token[sender.pk], recipient))
                return sent

            pairs = [(payer, hot) for payer in payers] + list(zip(senders, recipients, strict=True))
            with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
                results = list(pool.map(lambda pair: keep_sending(*pair), pairs))
            to_hot = [answer for sent in results[: len(payers)] for answer in sent]
            unrelated = [answer for sent in results[len(payers) :] for answer in sent]

            # Requests for the held wallet are refused, retryable, after their own 2 s lock wait
            # and, at worst, another one's: the wait for a worker that is free again.
            assert to_hot
            for status, body, headers, seconds in to_hot:
                assert (status, body["code"], headers["Retry-After"]) == (503, "busy", "1")
                assert seconds < 5
            # Everything else goes on: an unrelated transfer waits at most about one lock timeout
            # for a free worker (2.0-2.1 s on an idle machine; with a 10 s lock wait they queued
            # behind the hot requests for 10 s and more). The bound leaves room for a busy host.
            assert {answer[0] for answer in unrelated} == {201}
            assert max(answer[3] for answer in unrelated) < 5

            # PostgreSQL ends the frozen transaction (the idle-transaction limit) long before
            # gunicorn would kill the worker, and the hot wallet is free again.
            wait_until(lambda: backend_state(observer, backend) is None, timeout=15)
            assert frozen.status() == psutil.STATUS_STOPPED
            assert transfer(stack, token[payers[0].pk], hot)[0] == 201
        finally:
            frozen.resume()
        stuck.join(timeout=30)

        # The frozen request's transaction is gone: its client is told to retry, and the retry
        # with the same key moves the money once.
        status, body, headers, _seconds = answers["stuck"]
        assert (status, body["code"]) == (503, "unavailable")
        assert int(headers["Retry-After"]) >= 1
        status, body, headers, _seconds = transfer(stack, token[hot.pk], bystander, key="stuck")
        assert status == 201 and "Idempotent-Replayed" not in headers, body
        replayed = transfer(stack, token[hot.pk], bystander, key="stuck")
        assert (replayed[0], replayed[1], replayed[2]["Idempotent-Replayed"]) == (201, body, "true")

    assert Transfer.objects.filter(sender=hot).count() == 1
    assert Transfer.objects.count() == len(unrelated) + 2
    assert_money_invariants()


def test_readiness_answers_within_a_second_and_a_half_while_postgres_hangs(postgres, tmp_path):
    """A stopped PostgreSQL (SIGSTOP: a frozen host) answers nothing and refuses nothing."""
    with running_stack(tmp_path, web_only=True, DATABASE_URL=postgres.url("quickpe")) as stack:
        # web_only: no Celery worker, so readiness is 503 for that; the database check is ours.
        assert stack.get("/health/ready")[1]["checks"]["database"] == "ok"
        server = psutil.Process(postgres.process.pid)
        processes = [server, *server.children(recursive=True)]
        for process in processes:
            process.suspend()
        try:
            for _ in range(3):
                started = time.monotonic()
                status, body = stack.get("/health/ready")
                assert time.monotonic() - started < 1.5
                assert status == 503, body
                assert body["checks"]["database"] == "error: timeout"
                assert body["checks"]["redis"] == "ok"
        finally:
            for process in processes:
                process.resume()
        wait_until(
            lambda: stack.get("/health/ready")[1]["checks"]["database"] == "ok",
            timeout=20,
            what="the database check passing again",
        )
