"""Reversing a transfer from the admin: a new compensating movement, never an edit."""

import json
import threading
from collections import Counter

import pytest
from django.db import connection

from audit.models import AuditEntry
from notifications.models import Event, Notification
from quickpe.errors import InsufficientFunds, InvalidState, QuickPeError
from tests.conftest import fund, make_user, snapshot, wallet_status_set
from tests.invariants import assert_money_invariants
from tests.test_admin import run_action, staff_in
from wallet.models import LedgerEntry, Wallet
from wallet.services import support
from wallet.services.money import transfer_create

pytestmark = pytest.mark.django_db

TRANSFERS = "/admin/wallet/transfer/"


def balances(*users) -> list[int]:
    return [Wallet.objects.get(user=user).balance for user in users]


def events_since(user, seq: int) -> list[tuple[str, dict]]:
    return [
        (event.type, json.loads(json.dumps(event.data)))
        for event in Event.objects.filter(user=user, seq__gt=seq).order_by("seq")
    ]


def last_seq(user) -> int:
    last = Event.objects.filter(user=user).order_by("-seq").first()
    return last.seq if last else 0


@pytest.fixture
def paid(alice, bob):
    """Alice sent Bob 120.00 of her 500.00."""
    fund(alice, 500_00)
    return transfer_create(sender=alice, recipient=bob, amount=120_00, note="Rent").transfer


def test_a_superuser_reverses_a_transfer_and_the_money_returns(alice, bob, paid):
    staff, browser = staff_in(None, is_superuser=True)
    seen = {user: last_seq(user) for user in (alice, bob, staff)}
    lines_before = LedgerEntry.objects.count()

    response = run_action(browser, TRANSFERS, "reverse", [paid.pk], reason="Sent by mistake")
    assert response.status_code == 302

    assert balances(alice, bob) == [500_00, 0]
    paid.refresh_from_db()
    assert paid.status == "reversed"
    assert LedgerEntry.objects.count() == lines_before + 2
    debit, credit = LedgerEntry.objects.filter(transfer=paid, kind="reversal").order_by("pk")
    assert (debit.wallet.user, debit.direction, debit.amount, debit.balance_after) == (
        bob,
        "debit",
        120_00,
        0,
    )
    assert (credit.wallet.user, credit.direction, credit.amount, credit.balance_after) == (
        alice,
        "credit",
        120_00,
        500_00,
    )
    assert (debit.counterparty, credit.counterparty) == (alice, bob)
    # The original lines are untouched.
    assert sorted(paid.entries.exclude(kind="reversal").values_list("kind", "amount")) == [
        ("transfer_in", 120_00),
        ("transfer_out", 120_00),
    ]

    movement = AuditEntry.objects.get(action="transfer.reverse")
    decision = AuditEntry.objects.get(action="admin.transfer_reverse")
    assert movement.actor == decision.actor == staff
    assert movement.entity_id == decision.entity_id == str(paid.pk)
    assert movement.data == {
        "reference": paid.reference,
        "amount": "120.00",
        "from": bob.quickpe_id,
        "to": alice.quickpe_id,
        "debit": debit.reference,
        "credit": credit.reference,
    }
    assert decision.data == {"reference": paid.reference, "reason": "Sent by mistake"}

    returned = Notification.objects.get(user=alice, kind="transfer_received")
    taken = Notification.objects.filter(user=bob, kind="transfer_sent").get()
    assert returned.title == "₹120.00 returned to you"
    assert taken.title == "₹120.00 sent back"
    assert returned.data == {
        "transfer_id": paid.pk,
        "reference": paid.reference,
        "transaction_id": credit.pk,
    }

    alice_events = events_since(alice, seen[alice])
    assert [kind for kind, _ in alice_events] == [
        "balance:update",
        "transaction:new",
        "notification:new",
    ]
    assert alice_events[0][1] == {"balance": "500.00", "transaction_id": credit.pk}
    assert alice_events[1][1]["transaction"]["kind"] == "reversal"
    assert alice_events[1][1]["transaction"]["transfer_id"] == paid.pk
    assert alice_events[2][1]["notification"]["id"] == returned.pk
    bob_events = events_since(bob, seen[bob])
    assert [kind for kind, _ in bob_events] == [
        "balance:update",
        "transaction:new",
        "notification:new",
    ]
    assert bob_events[0][1] == {"balance": "0.00", "transaction_id": debit.pk}
    staff_events = events_since(staff, seen[staff])
    assert [data["entry"]["action"] for _, data in staff_events] == [
        "transfer.reverse",
        "admin.transfer_reverse",
    ]
    assert_money_invariants()


def test_a_second_reversal_is_refused_and_changes_nothing(alice, bob, paid):
    staff, browser = staff_in(None, is_superuser=True)
    run_action(browser, TRANSFERS, "reverse", [paid.pk], reason="Mistake")
    before = snapshot()
    response = run_action(browser, TRANSFERS, "reverse", [paid.pk], reason="Again")
    messages = [str(message) for message in response.wsgi_request._messages]
    assert messages == [f"{paid.reference}: This transfer was already reversed."]
    assert snapshot() == before
    with pytest.raises(InvalidState):
        support.transfer_reverse(transfer=paid, actor=staff, reason="And again")
    assert snapshot() == before
    assert_money_invariants()


def test_no_reversal_when_the_recipient_no_longer_has_the_money(alice, bob, paid):
    carol = make_user("Carol")
    transfer_create(sender=bob, recipient=carol, amount=100_00)
    staff, browser = staff_in(None, is_superuser=True)
    before = snapshot()
    response = run_action(browser, TRANSFERS, "reverse", [paid.pk], reason="Fraud")
    messages = [str(message) for message in response.wsgi_request._messages]
    assert messages == [f"{paid.reference}: The recipient no longer has the money to send back."]
    assert snapshot() == before
    paid.refresh_from_db()
    assert paid.status == "completed"
    assert_money_invariants()


def test_a_frozen_recipient_wallet_can_still_be_reversed(alice, bob, paid):
    """Freezing the recipient is how support holds disputed money until it goes back."""
    staff, _ = staff_in(None, is_superuser=True)
    wallet_status_set(bob, Wallet.Status.FROZEN, actor=staff)
    support.transfer_reverse(transfer=paid, actor=staff, reason="Fraud confirmed")
    assert balances(alice, bob) == [500_00, 0]
    assert_money_invariants()


def test_nobody_reverses_a_transfer_they_took_part_in(alice, bob):
    root = make_user("Root", is_staff=True, is_superuser=True)
    fund(root, 50_00)
    own = transfer_create(sender=root, recipient=bob, amount=10_00).transfer
    before = snapshot()
    with pytest.raises(QuickPeError, match="took part"):
        support.transfer_reverse(transfer=own, actor=root, reason="Oops")
    assert snapshot() == before


@pytest.mark.django_db(transaction=True)
def test_racing_reversals_and_a_spend_move_the_money_once():
    alice, bob = make_user("Alice"), make_user("Bob")
    staff = [make_user(f"Root{i}", is_staff=True, is_superuser=True) for i in range(4)]
    fund(alice, 300_00)
    paid = transfer_create(sender=alice, recipient=bob, amount=200_00).transfer
    outcomes: Counter = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(len(staff) + 1)
    errors: list[BaseException] = []

    def reverse(actor) -> None:
        try:
            barrier.wait(timeout=30)
            support.transfer_reverse(transfer=paid, actor=actor, reason="Race")
            outcome = "reversed"
        except InvalidState:
            outcome = "already"
        except InsufficientFunds:
            outcome = "no funds"
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)
            return
        finally:
            connection.close()
        with lock:
            outcomes[outcome] += 1

    def spend() -> None:
        """Bob spends what he got, at the same moment."""
        try:
            barrier.wait(timeout=30)
            transfer_create(sender=bob, recipient=alice, amount=150_00)
            outcome = "spent"
        except InsufficientFunds:
            outcome = "not spent"
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
            return
        finally:
            connection.close()
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=reverse, args=(actor,)) for actor in staff]
    threads.append(threading.Thread(target=spend))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[0]
    # Either a reversal won (Bob then had nothing to spend, the other reversals find it done)
    # or Bob's spend did (then no reversal: he holds 50.00 of the 200.00).
    if outcomes["reversed"]:
        assert outcomes == Counter({"reversed": 1, "already": 3, "not spent": 1})
    else:
        assert outcomes == Counter({"no funds": 4, "spent": 1})
    reversals = outcomes["reversed"]
    paid.refresh_from_db()
    assert paid.status == ("reversed" if reversals else "completed")
    assert LedgerEntry.objects.filter(kind="reversal").count() == 2 * reversals
    assert AuditEntry.objects.filter(action="admin.transfer_reverse").count() == reversals
    assert sum(balances(alice, bob)) == 300_00
    assert_money_invariants()
