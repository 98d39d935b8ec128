"""Deadlocks and serialization failures are retried inside the server, never shown to clients.

The services lock in primary-key order so they do not deadlock; to prove the retry itself
works, these tests provoke real PostgreSQL errors on purpose.
"""

import threading

import pytest
from django.db import OperationalError, connection, transaction
from django.db.models import F

from quickpe.unit_of_work import run_with_retries
from tests.conftest import assert_problem, client_for, fund, make_user, snapshot
from tests.test_concurrency import run_threads
from wallet.models import Wallet

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_real_deadlock_is_retried_until_both_transactions_commit():
    first, second = make_user("First").wallet, make_user("Second").wallet
    both_hold_one = threading.Barrier(2)
    attempts = {"a": 0, "b": 0}

    def opposite_order(name: str, order: list[int]):
        def work():
            attempts[name] += 1
            with transaction.atomic():
                Wallet.objects.select_for_update().get(pk=order[0])
                if attempts[name] == 1:
                    both_hold_one.wait(timeout=10)  # make the first attempts collide
                Wallet.objects.select_for_update().get(pk=order[1])
                Wallet.objects.filter(pk=order[0]).update(balance=F("balance") + 1)

        return work

    def work(index: int) -> None:
        name, order = ("a", [first.pk, second.pk]) if index == 0 else ("b", [second.pk, first.pk])
        run_with_retries(opposite_order(name, order))

    run_threads(2, work)
    # PostgreSQL broke the deadlock by failing one of the two; that one ran again.
    assert sorted(attempts.values()) == [1, 2]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.balance, second.balance) == (1, 1)


def test_a_serialization_failure_is_retried():
    wallet = make_user("Serial").wallet
    attempts = []
    other_committed = threading.Event()

    def work():
        attempts.append(1)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            Wallet.objects.get(pk=wallet.pk)  # takes the snapshot
            if len(attempts) == 1:
                thread = threading.Thread(target=concurrent_update)
                thread.start()
                thread.join()
            # Updating a row changed since our snapshot: SerializationFailure on attempt 1.
            Wallet.objects.filter(pk=wallet.pk).update(status="active")

    def concurrent_update():
        try:
            Wallet.objects.filter(pk=wallet.pk).update(limits_day=None)
            other_committed.set()
        finally:
            connection.close()

    run_with_retries(work)
    assert other_committed.is_set()
    assert len(attempts) == 2


def test_other_database_errors_are_not_retried():
    attempts = []

    def work():
        attempts.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(1)")  # cancelled by the statement timeout below

    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 10")
    try:
        with pytest.raises(OperationalError):
            run_with_retries(work)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
    assert len(attempts) == 1


def test_a_lock_wait_past_the_lock_timeout_is_a_503_and_changes_nothing():
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 100_00)
    holding, release = threading.Event(), threading.Event()

    def hold_alices_wallet():
        with transaction.atomic():
            Wallet.objects.select_for_update().get(user=alice)
            holding.set()
            release.wait(timeout=10)
        connection.close()

    holder = threading.Thread(target=hold_alices_wallet)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        before = snapshot()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")  # this test's wait, not 10 s
        response = client_for(alice).post(
            "/api/v1/transfers",
            {"recipient": bob.quickpe_id, "amount": "1.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="busy-1",
        )
        assert_problem(response, 503, "busy")
        assert response["Retry-After"] == "1"
        assert snapshot() == before
    finally:
        release.set()
        holder.join(timeout=10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
