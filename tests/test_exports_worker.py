"""Exports built by real Celery worker processes: requested over HTTP (gunicorn), followed over
the WebSocket (daphne), and finished exactly once, within seconds of a worker being back, when
the worker building one is killed mid-build (the whole worker, or only its pool process)."""

import json
import time

import pytest
from django.db import connection
from websockets.sync.client import connect

from analytics.models import Export
from notifications.models import Notification
from tests.conftest import make_user
from tests.processes import running_stack
from wallet.services.users import tokens_issue

pytestmark = pytest.mark.django_db(transaction=True)
LINES = 15_000  # a PDF of a few seconds' work


@pytest.fixture(params=["solo", "prefork"])
def stack(request, tmp_path):
    with running_stack(
        tmp_path, worker_pool=request.param, QUICKPE_EXPORT_DIR=str(tmp_path / "exports")
    ) as running:
        yield running


def long_history(user, lines: int) -> None:
    """``lines`` deposits straight into the ledger (what a year of use would leave), so the
    statement takes a few seconds to build."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO wallet_ledgerentry (wallet_id, kind, direction, amount, balance_after,
                category, description, reference, created_at)
            SELECT w.id, 'deposit', 'credit', 100, 100 * n, 'other', 'Top-up ' || n,
                'TXNB' || lpad(n::text, 11, '0'), now() - interval '1 second' * (%s - n)
            FROM wallet_wallet w, generate_series(1, %s) AS n
            WHERE w.user_id = %s
            """,
            [lines, lines, user.pk],
        )
        cursor.execute(
            "UPDATE wallet_wallet SET balance = 100 * %s WHERE user_id = %s", [lines, user.pk]
        )


def export_updates(socket, until) -> list[dict]:
    """``export:update`` payloads received until ``until(export)`` holds."""
    seen = []
    while True:
        frame = json.loads(socket.recv(timeout=90))
        if frame.get("type") == "export:update":
            seen.append(frame["data"]["export"])
            if until(seen[-1]):
                return seen


def test_a_worker_killed_mid_build_is_replaced_and_one_file_results(stack, tmp_path):
    user = make_user("Exporter")
    long_history(user, LINES)
    token = tokens_issue(user)["access"]

    with connect(f"{stack.ws_url(1)}?token={token}") as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        status, body = stack.request(
            "POST", "/api/v1/exports", {"kind": "statement", "format": "pdf"}, token=token
        )
        assert status == 202, body
        export_id = body["id"]

        started = export_updates(
            socket, lambda export: export["status"] == "running" and export["progress"] > 0
        )
        assert started[0]["status"] == "queued"
        if stack.worker_pool == "solo":
            # The whole worker dies; its task stays with the broker (for Redis' visibility
            # timeout, an hour). A new worker looks for unfinished exports as it starts.
            stack.kill("worker")
            stack.start_worker("worker2")
        else:
            # Only the pool process dies: the worker starts another and redelivers the task
            # at once, which finds the export still "running" and looks again once the dead
            # process's heartbeat has gone stale.
            [pool_process] = stack.children("worker")
            pool_process.kill()
        back = time.monotonic()
        assert Export.objects.get(pk=export_id).status == "running"
        finished = export_updates(socket, lambda export: export["status"] == "done")
        # The stale limit (10 s, ten missed heartbeats) and a few seconds' build: about 15 s on
        # an idle machine. The bound leaves room for a busy CI host and still fails the old
        # recovery, which waited out a two-minute stale window.
        assert time.monotonic() - back < 60

    export = Export.objects.get(pk=export_id)
    assert export.attempt == 2
    assert finished[-1]["rows"] == LINES and finished[-1]["progress"] == 100
    files = [path for path in (tmp_path / "exports").rglob("*") if path.is_file()]
    assert [str(path.relative_to(tmp_path / "exports")) for path in files] == [export.file]
    assert files[0].read_bytes().startswith(b"%PDF")
    assert Notification.objects.filter(user=user, kind="export_ready").count() == 1
    status, _body = stack.request("GET", f"/api/v1/exports/{export_id}", token=token)
    assert status == 200
