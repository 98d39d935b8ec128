"""Deadlocks and serialization failures are retried inside the server, never shown to clients.

The services lock in primary-key order so they do not deadlock; to prove the retry itself
works, these tests provoke real PostgreSQL errors on purpose.
"""

import threading

import pytest
from django.db import OperationalError, connection, transaction
from django.db.models import F

from quickpe.db import run_with_retries
from tests.conftest import make_user
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
