"""One unit of work: every whole change commits alone or joins its caller's transaction in a
savepoint; pieces never run outside one; the lock order and its rules hold."""

import threading

import pytest
from django.db import connection, transaction

from audit.services import audit_append
from notifications.services import events_emit
from quickpe import unit_of_work as units
from quickpe.errors import InsufficientFunds
from tests.conftest import fund, make_user, snapshot
from tests.invariants import assert_money_invariants
from tests.test_concurrency import run_threads
from wallet.locks import user_lock, wallets_lock
from wallet.models import Wallet
from wallet.services.money import deposit_create, transfer_create
from wallet.services.requests import money_request_create, money_request_decline


def balance(user) -> int:
    return Wallet.objects.get(user=user).balance


@pytest.mark.django_db(transaction=True)
def test_a_unit_of_work_on_its_own_commits_durably():
    alice = make_user("Alice")
    deposit_create(user=alice, amount=7_00)
    assert not connection.in_atomic_block
    seen: list[int] = []

    def read_elsewhere() -> None:
        seen.append(balance(alice))
        connection.close()

    reader = threading.Thread(target=read_elsewhere)
    reader.start()
    reader.join()
    assert seen == [7_00]  # another connection sees it: committed


@pytest.mark.django_db(transaction=True)
def test_a_refusal_inside_a_callers_transaction_leaves_that_transaction_usable():
    """A shell session, the admin or a task calling a money service inside its own transaction:
    the refused change rolls back alone and the caller goes on."""
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 10_00)
    with transaction.atomic():
        with pytest.raises(InsufficientFunds):
            transfer_create(sender=alice, recipient=bob, amount=50_00)
        transfer_create(sender=alice, recipient=bob, amount=4_00)
    assert (balance(alice), balance(bob)) == (6_00, 4_00)
    assert_money_invariants()


@pytest.mark.django_db(transaction=True)
def test_a_joined_change_rolls_back_with_its_caller():
    alice, bob = make_user("Alice"), make_user("Bob")
    fund(alice, 10_00)
    before = snapshot()
    with pytest.raises(RuntimeError), transaction.atomic():
        transfer_create(sender=alice, recipient=bob, amount=4_00)
        raise RuntimeError("the caller fails after the change")
    assert snapshot() == before


@pytest.mark.django_db
def test_pieces_run_only_inside_a_unit_of_work(alice):
    with transaction.atomic():
        with pytest.raises(AssertionError, match="unit of work"):
            audit_append(actor=alice, action="test.piece", entity_type="user")
        with pytest.raises(AssertionError, match="unit of work"):
            events_emit({alice.pk: [("test", {})]})
        with pytest.raises(AssertionError, match="unit of work"):
            wallets_lock(user_ids=[alice.pk])


@pytest.mark.django_db
def test_a_transaction_appends_to_one_audit_chain(alice, settings):
    other = make_user("Other")
    assert alice.pk % settings.QUICKPE_AUDIT_CHAINS != other.pk % settings.QUICKPE_AUDIT_CHAINS

    @units.unit_of_work
    def two_chains():
        audit_append(actor=alice, action="test.one", entity_type="user")
        audit_append(actor=other, action="test.two", entity_type="user")

    before = snapshot()
    with pytest.raises(AssertionError, match="one audit chain"):
        two_chains()
    assert snapshot() == before


@pytest.mark.django_db
def test_a_transaction_emits_its_events_once(alice):
    @units.unit_of_work
    def two_emits():
        events_emit({alice.pk: [("test:one", {})]})
        events_emit({alice.pk: [("test:two", {})]})

    before = snapshot()
    with pytest.raises(AssertionError, match="emits its events once"):
        two_emits()
    assert snapshot() == before


@pytest.mark.django_db
def test_rows_are_locked_in_the_global_order(alice):
    @units.unit_of_work
    def wallets_then_user():
        wallets_lock(user_ids=[alice.pk])
        user_lock(user=alice)

    @units.unit_of_work
    def audit_then_wallets():
        audit_append(actor=alice, action="test.order", entity_type="user")
        wallets_lock(user_ids=[alice.pk])

    with pytest.raises(AssertionError, match="earlier in the lock order"):
        wallets_then_user()
    with pytest.raises(AssertionError, match="before the audit chain head"):
        audit_then_wallets()


@pytest.mark.django_db
def test_separate_changes_in_one_callers_transaction_each_follow_the_rules(alice, bob):
    """Each joined unit has its own rules: two changes in one caller's transaction (seed data,
    a shell session) each emit once and audit their own actor."""
    with transaction.atomic():
        request = money_request_create(requester=alice, payer=bob, amount=5_00)
        money_request_decline(user=bob, money_request_id=request.pk)
    request.refresh_from_db()
    assert request.status == "declined"


@pytest.mark.django_db(transaction=True)
def test_opposite_transfers_never_need_a_deadlock_retry(monkeypatch):
    """With retries off, any deadlock reaches the thread that lost: opposite transfers, money
    requests paid across and deposits racing on the same wallets must queue on one lock order
    (wallets in primary-key order, one audit chain, one emit) and never deadlock."""
    monkeypatch.setattr(units, "ATTEMPTS", 1)
    alice, bob, carol = make_user("Alice"), make_user("Bob"), make_user("Carol")
    people = [alice, bob, carol]
    for person in people:
        fund(person, 1_000_00)
    rounds = 15

    def work(index: int) -> None:
        # Threads 0-5 send to the next person, 6-11 to the one before: opposite pairs.
        sender = people[index % 3]
        recipient = people[(index + 1 + index // 6) % 3]
        for _ in range(rounds):
            if index % 4 == 3:
                deposit_create(user=sender, amount=1_00)
            else:
                transfer_create(sender=sender, recipient=recipient, amount=1_00)

    run_threads(12, work)
    assert_money_invariants()
    total = sum(balance(person) for person in people)
    assert total == 3 * 1_000_00 + 3 * rounds * 1_00  # the deposits of threads 3, 7 and 11
