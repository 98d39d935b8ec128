"""Idempotency keys: exactly-once money movement under retries and concurrency."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction

from quickpe.errors import IdempotencyKeyInUse, InsufficientFunds
from tests.conftest import client_for, fund, idempotency_keys, make_user, snapshot
from tests.invariants import assert_money_invariants
from tests.test_concurrency import run_threads
from wallet.idempotency import Outcome, _advisory_lock_id, run_once
from wallet.models import IdempotencyKey, LedgerEntry, Transfer
from wallet.services.money import deposit_create
from wallet.services.users import tokens_issue


def post_transfer(client, recipient, amount="25.00", key="key-1", **extra):
    return client.post(
        "/api/v1/transfers",
        {"recipient": recipient.quickpe_id, "amount": amount, **extra},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


@pytest.mark.django_db(transaction=True)
def test_same_key_sent_20_times_at_once_moves_money_once():
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 1000_00)
    answers: list[tuple[int, str | None, str | None]] = []
    bodies: list[dict] = []
    lock = threading.Lock()

    token = tokens_issue(alice)["access"]

    def work(index: int) -> None:
        response = post_transfer(client_for(token=token), bob, key="same-key")
        with lock:
            answers.append(
                (
                    response.status_code,
                    response.headers.get("Idempotent-Replayed"),
                    response.json().get("code"),
                )
            )
            if response.status_code == 201:
                bodies.append(response.json())

    run_threads(20, work)

    assert Transfer.objects.count() == 1
    assert set(answers) <= {
        (201, None, None),
        (201, "true", None),
        (409, None, "idempotency_key_in_use"),
    }
    assert answers.count((201, None, None)) == 1
    # Every 201 (original or replay) carries the same transfer.
    assert len({body["transfer"]["id"] for body in bodies}) == 1
    alice.wallet.refresh_from_db()
    assert alice.wallet.balance == 975_00
    assert_money_invariants()


@pytest.mark.django_db
def test_replay_returns_the_original_status_and_body_and_moves_nothing(alice, bob):
    fund(alice, 100_00)
    client = client_for(alice)
    first = post_transfer(client, bob)
    before = snapshot()
    again = post_transfer(client, bob)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    assert snapshot() == before


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_422_and_changes_nothing(alice, bob):
    fund(alice, 100_00)
    client = client_for(alice)
    post_transfer(client, bob, amount="10.00")
    before = snapshot()
    response = post_transfer(client, bob, amount="11.00")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert response["Content-Type"] == "application/problem+json"
    assert snapshot() == before


@pytest.mark.django_db
def test_a_refusal_is_remembered_under_its_key(alice, bob):
    fund(alice, 5_00)
    client = client_for(alice)
    refused = post_transfer(client, bob, amount="50.00")
    assert refused.status_code == 409
    assert refused.json()["code"] == "insufficient_funds"
    fund(alice, 100_00)  # now there is enough, but the key already has its answer
    before = snapshot()
    again = post_transfer(client, bob, amount="50.00")
    assert again.status_code == 409
    assert again.json() == refused.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert snapshot() == before


@pytest.mark.django_db
def test_a_validation_failure_is_remembered_too(alice, bob):
    client = client_for(alice)
    first = post_transfer(client, bob, amount="1.005")
    assert first.status_code == 400
    again = post_transfer(client, bob, amount="1.005")
    assert again.status_code == 400
    assert again.headers["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.filter(user=alice).count() == 1


@pytest.mark.django_db
def test_keys_are_scoped_to_the_user(alice, bob):
    fund(alice, 100_00)
    fund(bob, 100_00)
    assert post_transfer(client_for(alice), bob, key="shared").status_code == 201
    response = post_transfer(client_for(bob), alice, key="shared")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert Transfer.objects.count() == 2


@pytest.mark.django_db
def test_missing_key_is_400_and_stores_nothing(alice, bob):
    fund(alice, 100_00)
    before, keys = snapshot(), idempotency_keys()
    response = client_for(alice).post(
        "/api/v1/transfers", {"recipient": bob.quickpe_id, "amount": "1.00"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    assert snapshot() == before
    assert idempotency_keys() == keys


@pytest.mark.django_db
def test_an_expired_key_starts_afresh(alice, settings):
    client = client_for(alice)
    body = {"amount": "10.00"}
    first = client.post("/api/v1/wallet/deposits", body, format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert first.status_code == 201
    IdempotencyKey.objects.filter(user=alice).update(
        created_at=IdempotencyKey.objects.get(user=alice).created_at - timedelta(hours=25)
    )
    again = client.post("/api/v1/wallet/deposits", body, format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert LedgerEntry.objects.filter(wallet__user=alice, kind="deposit").count() == 2


@pytest.mark.django_db
def test_key_row_and_movement_commit_together(alice, bob):
    """The stored response is exactly what the client got, saved in the same transaction."""
    fund(alice, 100_00)
    response = post_transfer(client_for(alice), bob, key="atomic")
    record = IdempotencyKey.objects.get(user=alice, key="atomic")
    assert record.response_status == 201
    assert record.response_body == json.loads(response.content)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM wallet_transfer")
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db
def test_the_same_json_with_other_spacing_and_key_order_is_a_replay(alice, bob):
    fund(alice, 100_00)
    client = client_for(alice)
    first = client.post(
        "/api/v1/transfers",
        f'{{"recipient": "{bob.quickpe_id}", "amount": "5.00"}}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="spaced key 1",  # a space is printable ASCII
    )
    again = client.post(
        "/api/v1/transfers",
        f'{{"amount":"5.00","recipient":"{bob.quickpe_id}"}}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="spaced key 1",
    )
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Transfer.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_refusal_after_writes_keeps_none_of_them_and_remembers_the_refusal():
    """A rule can refuse after the handler has written (a deposit here): the handler's
    savepoint rolls all of it back, and the refusal is stored under the key in its place."""
    alice = make_user("Alice")
    fund(alice, 10_00)
    before, keys = snapshot(), idempotency_keys()

    def handler() -> Outcome:
        deposit_create(user=alice, amount=5_00)
        raise InsufficientFunds()

    def refusal(error: Exception) -> Outcome:
        return Outcome(409, {"code": error.code})

    outcome = run_once(user=alice, key="late", fingerprint="f", handler=handler, refusal=refusal)
    assert (outcome.status, outcome.body, outcome.is_replay) == (
        409,
        {"code": "insufficient_funds"},
        False,
    )
    assert snapshot() == before
    assert idempotency_keys() == keys + 1
    again = run_once(user=alice, key="late", fingerprint="f", handler=handler, refusal=refusal)
    assert (again.status, again.is_replay) == (409, True)
    assert_money_invariants()


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_committing_after_the_lookup_is_replayed_and_nothing_moves_twice():
    """The lookup reads the snapshot its statement starts with, before the in-flight lock is
    tried: a duplicate can commit its key in between. The unique key then stops this attempt's
    commit; it is rolled back whole and the duplicate's answer is given."""
    alice = make_user("Alice")
    fund(alice, 10_00)
    before = snapshot()
    calls = []

    def duplicate_commits(_index: int) -> None:  # on its own connection, as another worker
        IdempotencyKey.objects.create(
            user=alice, key="race", fingerprint="f", response_status=201, response_body={"n": 1}
        )

    def handler() -> Outcome:
        calls.append(1)
        deposit_create(user=alice, amount=5_00)
        run_threads(1, duplicate_commits)
        return Outcome(201, {"n": 2})

    outcome = run_once(
        user=alice, key="race", fingerprint="f", handler=handler, refusal=lambda error: None
    )
    assert (outcome.status, outcome.body, outcome.is_replay) == (201, {"n": 1}, True)
    assert len(calls) == 1
    assert snapshot() == before
    assert IdempotencyKey.objects.filter(user=alice, key="race").count() == 1
    assert_money_invariants()


@pytest.mark.django_db(transaction=True)
def test_a_refusal_sent_20_times_at_once_is_stored_once_and_moves_nothing():
    """Refusals are stored under the key like successes; concurrent duplicates of a refused
    request still get that refusal (first or replayed) or 409 in flight, and one key row
    exists."""
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 10_00)
    before = snapshot()
    token = tokens_issue(alice)["access"]
    answers: list[tuple[int, str | None, str | None]] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        response = post_transfer(client_for(token=token), bob, amount="50.00", key="refused")
        with lock:
            answers.append(
                (
                    response.status_code,
                    response.headers.get("Idempotent-Replayed"),
                    response.json().get("code"),
                )
            )

    run_threads(20, work)

    assert set(answers) <= {
        (409, None, "insufficient_funds"),
        (409, "true", "insufficient_funds"),
        (409, None, "idempotency_key_in_use"),
    }
    assert (409, None, "insufficient_funds") in answers
    assert IdempotencyKey.objects.filter(user=alice, key="refused").count() == 1
    assert snapshot() == before
    assert_money_invariants()


@pytest.mark.django_db(transaction=True)
def test_in_flight_is_an_answer_about_the_key_and_is_never_stored_under_it():
    """While another transaction holds the key's guard, the answer is 409 in flight; that is
    not the request's refusal, so nothing is stored and the key stays free for the first."""
    alice = make_user("Alice")
    holding, release = threading.Event(), threading.Event()

    def hold_the_guard(_index: int) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s)", [_advisory_lock_id(alice.pk, "busy")]
            )
            holding.set()
            release.wait(timeout=10)

    def refusal(error: Exception) -> Outcome:
        # Were "in flight" taken for a refusal, the guard would be free when it is stored.
        release.set()
        holder.join()
        return Outcome(409, {"code": error.code})

    holder = threading.Thread(target=run_threads, args=(1, hold_the_guard))
    holder.start()
    try:
        assert holding.wait(timeout=10)
        with pytest.raises(IdempotencyKeyInUse):
            run_once(
                user=alice,
                key="busy",
                fingerprint="f",
                handler=lambda: Outcome(201, {}),
                refusal=refusal,
            )
    finally:
        release.set()
        holder.join()
    assert idempotency_keys() == 0
