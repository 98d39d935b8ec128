"""Money requests through the HTTP API: ask, list, pay, decline, cancel, expire.

Every refusal is checked for its exact status and problem+json ``code``, and for changing nothing
(``snapshot()``: balances, ledger, transfers, audit, events, notifications, request statuses;
plus the idempotency records where the endpoint takes a key). Races run on committed
transactions with real threads; the expiry task also runs once through a real Celery worker.
"""

import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.db.models import Max
from django.utils import timezone

from audit.models import AuditEntry
from notifications.models import Event, Notification
from tests.conftest import (
    assert_problem,
    client_for,
    fund,
    idempotency_keys,
    make_user,
    same_business_day,
    snapshot,
    wallet_status_set,
)
from tests.invariants import assert_money_invariants
from tests.test_concurrency import run_threads
from tests.test_money_api import api_time, field_codes
from wallet.models import LedgerEntry, MoneyRequest, Transfer, Wallet
from wallet.services import support
from wallet.services.money import transfer_create
from wallet.services.requests import (
    PartyDeactivated,
    money_request_create,
    money_request_pay,
    money_requests_expire,
)
from wallet.services.users import tokens_issue
from wallet.tasks import money_requests_expire as money_requests_expire_task

REQUESTS = "/api/v1/money-requests"
MONEY_REQUEST_KEYS = {
    "id",
    "requester",
    "payer",
    "amount",
    "note",
    "status",
    "transfer_id",
    "created_at",
    "expires_at",
    "resolved_at",
}
# Who may take each action on a pending request.
RIGHT_ROLE = {"pay": "payer", "decline": "payer", "cancel": "requester"}


# --- helpers -----------------------------------------------------------------------------


def party(user) -> dict:
    return {"quickpe_id": user.quickpe_id, "name": user.get_full_name()}


def rupees(paise: int) -> str:
    return f"{paise // 100}.{paise % 100:02d}"


def request_json(pk: int, **shown) -> dict:
    """The contract's MoneyRequest for the row as stored; ``shown`` overrides what is computed
    at read time (a pending request past its deadline reads expired)."""
    row = MoneyRequest.objects.select_related("requester", "payer").get(pk=pk)
    return {
        "id": row.pk,
        "requester": party(row.requester),
        "payer": party(row.payer),
        "amount": rupees(row.amount),
        "note": row.note,
        "status": row.status,
        "transfer_id": row.transfer_id,
        "created_at": api_time(row.created_at),
        "expires_at": api_time(row.expires_at),
        "resolved_at": api_time(row.resolved_at) if row.resolved_at else None,
        **shown,
    }


def expired_json(pk: int) -> dict:
    row = MoneyRequest.objects.get(pk=pk)
    return request_json(pk, status="expired", resolved_at=api_time(row.expires_at))


def transfer_json(transfer: Transfer) -> dict:
    return {
        "id": transfer.pk,
        "reference": transfer.reference,
        "sender": party(transfer.sender),
        "recipient": party(transfer.recipient),
        "amount": rupees(transfer.amount),
        "note": transfer.note,
        "category": transfer.category,
        "status": transfer.status,
        "created_at": api_time(transfer.created_at),
    }


def created(response) -> dict:
    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def ask_response(requester, payer_identifier: str, amount="500.00", note: str | None = "Dinner"):
    body = {"payer": payer_identifier, "amount": amount}
    if note is not None:
        body["note"] = note
    return client_for(requester).post(REQUESTS, body, format="json")


def ask(requester, payer, amount="500.00", note="Dinner") -> int:
    """A pending request made through the API; returns its id."""
    return created(ask_response(requester, payer.quickpe_id, amount, note))["id"]


def act(user, pk: int, action: str, *, key: str | None = None, token: str | None = None):
    """POST pay / decline / cancel as ``user`` (or with ``token``, see ``client_for``);
    pay carries a fresh Idempotency-Key."""
    client = client_for(user, token=token)
    path = f"{REQUESTS}/{pk}/{action}"
    if action == "pay":
        return client.post(path, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)
    return client.post(path, format="json")


def backdate(pk: int, *, days: int = 8) -> None:
    """Move a request's life into the past: made ``days`` ago, so due ``days - 7`` days ago."""
    made = timezone.now() - timedelta(days=days)
    MoneyRequest.objects.filter(pk=pk).update(created_at=made, expires_at=made + timedelta(days=7))


def freeze(user, actor) -> None:
    wallet_status_set(user, Wallet.Status.FROZEN, actor=actor)


def unfreeze(user, actor) -> None:
    wallet_status_set(user, Wallet.Status.ACTIVE, actor=actor)


def marks() -> dict:
    """The newest event, notification and audit entry so far: what came after is new."""
    return {
        "event": Event.objects.aggregate(m=Max("pk"))["m"] or 0,
        "notification": Notification.objects.aggregate(m=Max("pk"))["m"] or 0,
        "audit": AuditEntry.objects.aggregate(m=Max("seq"))["m"] or 0,
    }


def new_events(mark: dict, user) -> list[tuple[str, dict]]:
    found = Event.objects.filter(pk__gt=mark["event"], user=user).order_by("seq")
    return [(event.type, event.data) for event in found]


def new_event_types(mark: dict, user) -> Counter:
    return Counter(kind for kind, _ in new_events(mark, user))


def new_updates(mark: dict, user) -> list[dict]:
    """The ``money_request:update`` payloads a user got since ``mark``."""
    return [data for kind, data in new_events(mark, user) if kind == "money_request:update"]


def new_notifications(mark: dict) -> list[tuple]:
    found = Notification.objects.filter(pk__gt=mark["notification"]).order_by("pk")
    return [(n.user_id, n.kind, n.title, n.body, n.data) for n in found]


def new_audit(mark: dict) -> list[tuple]:
    found = AuditEntry.objects.filter(seq__gt=mark["audit"]).order_by("seq")
    return [(e.actor_id, e.action, e.entity_type, e.entity_id, e.data) for e in found]


def request_audit_data(requester, payer, amount: str, status: str) -> dict:
    return {
        "amount": amount,
        "requester": requester.quickpe_id,
        "payer": payer.quickpe_id,
        "status": status,
    }


def balance_of(user) -> int:
    return Wallet.objects.get(user=user).balance


def listed_ids(user, params: dict | None = None) -> list[int]:
    body = ok(client_for(user).get(REQUESTS, params or {}))
    assert set(body) == {"next", "previous", "results"}
    return [row["id"] for row in body["results"]]


@pytest.fixture
def carol(db):
    return make_user("Carol", "Iyer")


@pytest.fixture
def staff(db):
    return make_user("Sam", "Support", is_staff=True)


@pytest.fixture
def people(alice, bob, carol) -> dict:
    """Alice asks Bob; Carol is a stranger to the request. Everyone has money, so a refusal
    below is never a shortage in disguise."""
    for user in (alice, bob, carol):
        fund(user, 2000_00)
    return {"requester": alice, "payer": bob, "stranger": carol}


@pytest.fixture
def pending(people) -> int:
    return ask(people["requester"], people["payer"])


# --- create ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_is_201_with_the_request_and_tells_both_parties(alice, bob):
    before, mark = snapshot(), marks()
    started = timezone.now()

    body = created(ask_response(alice, bob.quickpe_id, amount="500", note="Dinner"))

    finished = timezone.now()
    row = MoneyRequest.objects.get(pk=body["id"])
    assert set(body) == MONEY_REQUEST_KEYS
    assert body == {
        "id": row.pk,
        "requester": party(alice),
        "payer": party(bob),
        "amount": "500.00",
        "note": "Dinner",
        "status": "pending",
        "transfer_id": None,
        "created_at": api_time(row.created_at),
        "expires_at": api_time(row.created_at + timedelta(days=7)),
        "resolved_at": None,
    }
    created_at = datetime.fromisoformat(body["created_at"])
    assert started <= created_at <= finished
    assert datetime.fromisoformat(body["expires_at"]) - created_at == timedelta(days=7)
    assert body["created_at"].endswith("Z") and body["expires_at"].endswith("Z")
    assert (row.requester_id, row.payer_id, row.amount, row.status) == (
        alice.pk,
        bob.pk,
        500_00,
        "pending",
    )
    assert (row.transfer_id, row.resolved_at) == (None, None)
    assert row.expires_at == row.created_at + timedelta(days=7)

    # The payer is told; the requester is not.
    assert new_notifications(mark) == [
        (
            bob.pk,
            "money_request",
            "Alice Sharma requests ₹500.00",
            "Dinner",
            {"money_request_id": row.pk},
        )
    ]
    # Both parties get the request as REST shows it.
    assert new_updates(mark, alice) == [{"money_request": body}]
    assert new_updates(mark, bob) == [{"money_request": body}]
    assert new_event_types(mark, alice) == Counter({"money_request:update": 1, "audit:new": 1})
    assert new_event_types(mark, bob) == Counter({"money_request:update": 1, "notification:new": 1})
    [(_, notice)] = [item for item in new_events(mark, bob) if item[0] == "notification:new"]
    assert notice["notification"]["kind"] == "money_request"
    assert notice["unread_count"] == 1
    assert new_audit(mark) == [
        (
            alice.pk,
            "money_request.create",
            "money_request",
            str(row.pk),
            request_audit_data(alice, bob, "500.00", "pending"),
        )
    ]
    # Nothing else: no money moved.
    assert snapshot() == {
        **before,
        "audit": before["audit"] + 1,
        "events": before["events"] + 4,
        "notifications": before["notifications"] + 1,
        "money_requests": {**before["money_requests"], row.pk: "pending"},
    }
    assert_money_invariants()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "identify",
    [
        pytest.param(lambda user: user.quickpe_id, id="quickpe-id"),
        pytest.param(lambda user: user.quickpe_id.lower(), id="quickpe-id-lowercase"),
        pytest.param(lambda user: user.email, id="email"),
        pytest.param(lambda user: user.email.upper(), id="email-uppercase"),
        pytest.param(lambda user: user.email.title(), id="email-mixed-case"),
        pytest.param(lambda user: f"  {user.email}  ", id="email-padded"),
    ],
)
def test_the_payer_is_found_by_quickpe_id_or_email_in_any_case(alice, bob, identify):
    body = created(ask_response(alice, identify(bob), amount="12.5", note=None))

    assert body["payer"] == party(bob)
    assert (body["amount"], body["note"]) == ("12.50", "")
    row = MoneyRequest.objects.get(pk=body["id"])
    assert (row.requester_id, row.payer_id, row.amount, row.note) == (alice.pk, bob.pk, 12_50, "")


@pytest.mark.django_db
@pytest.mark.parametrize("payer", ["QP00000000", "nobody@example.com", "not an id", "inactive"])
def test_an_unknown_or_inactive_payer_is_404_and_changes_nothing(alice, payer):
    if payer == "inactive":
        gone = make_user("Gone", "Away")
        gone.is_active = False
        gone.save(update_fields=["is_active"])
        payer = gone.email
    before = snapshot()

    body = assert_problem(ask_response(alice, payer), 404, "payer_not_found")

    assert field_codes(body) == [("payer", "payer_not_found")]
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "identify",
    [
        pytest.param(lambda u: u.quickpe_id, id="quickpe-id"),
        pytest.param(lambda u: u.email.upper(), id="email"),
    ],
)
def test_asking_yourself_is_400_self_request_and_changes_nothing(alice, identify):
    before = snapshot()

    body = assert_problem(ask_response(alice, identify(alice)), 400, "self_request")

    assert field_codes(body) == [("payer", "self_request")]
    assert snapshot() == before


# (raw JSON for "amount" or None to leave it out, problem code, field errors)
BAD_AMOUNTS = [
    pytest.param('"0"', "validation_error", [("amount", "invalid_amount")], id="string-zero"),
    pytest.param("0", "validation_error", [("amount", "invalid_amount")], id="number-zero"),
    pytest.param("0.00", "validation_error", [("amount", "invalid_amount")], id="zero-decimals"),
    pytest.param('"-5.00"', "validation_error", [("amount", "invalid_amount")], id="negative"),
    pytest.param("-5", "validation_error", [("amount", "invalid_amount")], id="number-negative"),
    pytest.param('"1.001"', "validation_error", [("amount", "invalid_amount")], id="3-decimals"),
    pytest.param("1.001", "validation_error", [("amount", "invalid_amount")], id="num-3-decimals"),
    pytest.param('"1e3"', "validation_error", [("amount", "invalid_amount")], id="exponent"),
    pytest.param("1e3", "validation_error", [("amount", "invalid_amount")], id="num-exponent"),
    pytest.param(
        '"99999999999999999999999.00"',
        "validation_error",
        [("amount", "amount_too_large")],
        id="huge",
    ),
    pytest.param(
        "1" + "0" * 30, "validation_error", [("amount", "amount_too_large")], id="num-huge"
    ),
    pytest.param('"abc"', "validation_error", [("amount", "invalid_amount")], id="letters"),
    pytest.param('""', "validation_error", [("amount", "invalid_amount")], id="empty"),
    pytest.param('"NaN"', "validation_error", [("amount", "invalid_amount")], id="string-nan"),
    pytest.param("NaN", "malformed_request", [], id="json-nan"),
    pytest.param("[]", "validation_error", [("amount", "invalid_amount")], id="list"),
    pytest.param("true", "validation_error", [("amount", "invalid_amount")], id="true"),
    pytest.param("null", "validation_error", [("amount", "null")], id="null"),
    pytest.param(None, "validation_error", [("amount", "required")], id="missing"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("raw_amount", "code", "errors"), BAD_AMOUNTS)
def test_bad_amounts_are_400_and_change_nothing(alice, bob, raw_amount, code, errors):
    amount = "" if raw_amount is None else f', "amount": {raw_amount}'
    raw = f'{{"payer": "{bob.quickpe_id}", "note": "x"{amount}}}'
    before = snapshot()

    response = client_for(alice).post(REQUESTS, raw, content_type="application/json")

    body = assert_problem(response, 400, code)
    assert field_codes(body) == errors
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param({"amount": "5"}, [("payer", "required")], id="no-payer"),
        pytest.param({"payer": "", "amount": "5"}, [("payer", "blank")], id="blank-payer"),
        pytest.param(
            {"payer": "PAYER", "amount": "5", "note": "n" * 256},
            [("note", "max_length")],
            id="long-note",
        ),
    ],
)
def test_bad_fields_are_400_and_change_nothing(alice, bob, body, errors):
    body = {**body, "payer": bob.quickpe_id} if body.get("payer") == "PAYER" else body
    before = snapshot()

    response = client_for(alice).post(REQUESTS, body, format="json")

    assert field_codes(assert_problem(response, 400, "validation_error")) == errors
    assert snapshot() == before


@pytest.mark.django_db
def test_amounts_outside_the_per_transaction_limits_are_409_and_change_nothing(alice, bob):
    before = snapshot()

    high = assert_problem(ask_response(alice, bob.quickpe_id, "100000.01"), 409, "limit_exceeded")
    low = assert_problem(ask_response(alice, bob.quickpe_id, "0.99"), 409, "limit_exceeded")

    assert [{k: v for k, v in e.items() if k != "detail"} for e in high["errors"]] == [
        {
            "field": "amount",
            "code": "max_per_transaction",
            "limit": "100000.00",
            "remaining": "100000.00",
        }
    ]
    assert [{k: v for k, v in e.items() if k != "detail"} for e in low["errors"]] == [
        {"field": "amount", "code": "min_per_transaction", "limit": "1.00"}
    ]
    assert snapshot() == before
    # The limits themselves are allowed.
    assert created(ask_response(alice, bob.quickpe_id, "100000.00"))["amount"] == "100000.00"
    assert created(ask_response(alice, bob.quickpe_id, "1.00"))["amount"] == "1.00"


@pytest.mark.django_db
def test_a_frozen_requester_cannot_ask_and_nothing_changes(alice, bob, staff):
    freeze(alice, staff)
    before = snapshot()

    body = assert_problem(ask_response(alice, bob.quickpe_id), 403, "wallet_frozen")

    assert body["errors"] == []
    assert snapshot() == before
    unfreeze(alice, staff)
    created(ask_response(alice, bob.quickpe_id))


@pytest.mark.django_db
def test_every_endpoint_needs_authentication(alice, bob):
    pk = ask(alice, bob)
    before = snapshot()
    anonymous = client_for()

    responses = [
        anonymous.post(REQUESTS, {"payer": bob.quickpe_id, "amount": "5"}, format="json"),
        anonymous.get(REQUESTS),
        anonymous.get(f"{REQUESTS}/{pk}"),
        anonymous.post(f"{REQUESTS}/{pk}/pay", format="json", HTTP_IDEMPOTENCY_KEY="k"),
        anonymous.post(f"{REQUESTS}/{pk}/decline", format="json"),
        anonymous.post(f"{REQUESTS}/{pk}/cancel", format="json"),
    ]

    for response in responses:
        assert_problem(response, 401, "not_authenticated")
    assert snapshot() == before


# --- the state machine: who may do what -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "role", "status", "code"),
    [
        ("pay", "requester", 403, "permission_denied"),
        ("pay", "stranger", 404, "not_found"),
        ("decline", "requester", 403, "permission_denied"),
        ("decline", "stranger", 404, "not_found"),
        ("cancel", "payer", 403, "permission_denied"),
        ("cancel", "stranger", 404, "not_found"),
    ],
)
def test_the_wrong_user_is_refused_and_nothing_changes(people, pending, action, role, status, code):
    before, keys = snapshot(), idempotency_keys()

    response = act(people[role], pending, action, key="wrong-user")

    assert assert_problem(response, status, code)["errors"] == []
    assert snapshot() == before
    if action == "pay":
        # A refusal is remembered under its key and replayed, still changing nothing.
        assert idempotency_keys() == keys + 1
        again = act(people[role], pending, action, key="wrong-user")
        assert assert_problem(again, status, code) == response.json()
        assert again["Idempotent-Replayed"] == "true"
        assert snapshot() == before
    else:
        assert idempotency_keys() == keys
    # Still pending: the right user can still act on it.
    right = people[RIGHT_ROLE[action]]
    assert act(right, pending, action).status_code == (201 if action == "pay" else 200)


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["pay", "decline", "cancel"])
def test_an_unknown_request_is_404_and_changes_nothing(people, pending, action):
    before = snapshot()

    response = act(people[RIGHT_ROLE[action]], pending + 1000, action)

    assert_problem(response, 404, "not_found")
    assert snapshot() == before


def bring_to(state: str, pk: int, people: dict) -> str:
    """Move a pending request into ``state``; returns the status users then see."""
    requester, payer = people["requester"], people["payer"]
    if state == "paid":
        created(act(payer, pk, "pay"))
    elif state == "declined":
        ok(act(payer, pk, "decline"))
    elif state == "cancelled":
        ok(act(requester, pk, "cancel"))
    elif state == "expired":  # past its deadline, not yet written down by the job
        backdate(pk)
    elif state == "expired-recorded":
        backdate(pk)
        assert money_requests_expire() == 1
    return "expired" if state.startswith("expired") else state


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["pay", "decline", "cancel"])
@pytest.mark.parametrize("state", ["paid", "declined", "cancelled", "expired", "expired-recorded"])
def test_a_request_that_is_no_longer_pending_cannot_change(people, pending, state, action):
    shown = bring_to(state, pending, people)
    stored = MoneyRequest.objects.get(pk=pending)
    before, keys = snapshot(), idempotency_keys()

    response = act(people[RIGHT_ROLE[action]], pending, action)

    assert assert_problem(response, 409, "invalid_state")["errors"] == []
    assert snapshot() == before
    assert idempotency_keys() == keys + (1 if action == "pay" else 0)
    after = MoneyRequest.objects.get(pk=pending)
    assert (after.status, after.resolved_at, after.transfer_id) == (
        stored.status,
        stored.resolved_at,
        stored.transfer_id,
    )
    assert ok(client_for(people["requester"]).get(f"{REQUESTS}/{pending}"))["status"] == shown
    # A stranger still learns nothing about it, not even that it is closed.
    assert_problem(act(people["stranger"], pending, action), 404, "not_found")
    assert snapshot() == before


# --- pay ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_paying_moves_the_money_once_and_tells_both_parties(alice, bob):
    fund(bob, 1000_00)
    pk = ask(alice, bob, "500.00", "Dinner")
    before, keys, mark = snapshot(), idempotency_keys(), marks()

    response = act(bob, pk, "pay", key="pay-once")

    body = created(response)
    assert "Idempotent-Replayed" not in response
    transfer = Transfer.objects.get()
    row = MoneyRequest.objects.get(pk=pk)
    assert set(body) == {"money_request", "transfer", "balance"}
    assert body["balance"] == "500.00"
    assert body["transfer"] == transfer_json(transfer)
    assert (transfer.sender_id, transfer.recipient_id, transfer.amount, transfer.note) == (
        bob.pk,
        alice.pk,
        500_00,
        "Dinner",
    )
    assert (transfer.status, transfer.category) == ("completed", "transfer")
    assert body["money_request"] == request_json(pk)
    assert body["money_request"]["status"] == "paid"
    assert body["money_request"]["transfer_id"] == transfer.pk
    assert row.resolved_at is not None and row.resolved_at >= row.created_at
    assert row.transfer == transfer and transfer.money_request == row

    # Money moved exactly once: two ledger lines, both balances.
    assert (balance_of(bob), balance_of(alice)) == (500_00, 500_00)
    lines = LedgerEntry.objects.filter(transfer=transfer).order_by("pk")
    assert [
        (e.wallet.user_id, e.kind, e.direction, e.amount, e.balance_after, e.counterparty_id)
        for e in lines
    ] == [
        (bob.pk, "transfer_out", "debit", 500_00, 500_00, alice.pk),
        (alice.pk, "transfer_in", "credit", 500_00, 500_00, bob.pk),
    ]

    # The requester hears it was paid, the payer that they sent money.
    assert new_notifications(mark) == [
        (
            bob.pk,
            "transfer_sent",
            "You sent ₹500.00 to Alice Sharma",
            "Dinner",
            {"transfer_id": transfer.pk, "reference": transfer.reference},
        ),
        (
            alice.pk,
            "money_request_paid",
            "Bob Verma paid your request of ₹500.00",
            "Dinner",
            {"money_request_id": pk, "transfer_id": transfer.pk},
        ),
    ]
    assert new_updates(mark, alice) == [{"money_request": body["money_request"]}]
    assert new_updates(mark, bob) == [{"money_request": body["money_request"]}]
    movement = {"balance:update": 1, "transaction:new": 1, "notification:new": 1}
    assert new_event_types(mark, bob) == Counter(
        {**movement, "money_request:update": 1, "audit:new": 2}
    )
    assert new_event_types(mark, alice) == Counter({**movement, "money_request:update": 1})
    assert new_audit(mark) == [
        (
            bob.pk,
            "transfer.create",
            "transfer",
            str(transfer.pk),
            {
                "reference": transfer.reference,
                "amount": "500.00",
                "recipient": alice.quickpe_id,
                "category": "transfer",
            },
        ),
        (
            bob.pk,
            "money_request.pay",
            "money_request",
            str(pk),
            request_audit_data(alice, bob, "500.00", "paid"),
        ),
    ]
    after = snapshot()
    assert after == {
        **before,
        "balances": {**before["balances"], alice.pk: 500_00, bob.pk: 500_00},
        "ledger": before["ledger"] + 2,
        "transfers": before["transfers"] + 1,
        "audit": before["audit"] + 2,
        "events": before["events"] + 10,
        "notifications": before["notifications"] + 2,
        "money_requests": {pk: "paid"},
    }
    assert idempotency_keys() == keys + 1
    assert_money_invariants()

    # The same key again: the same answer, flagged as a replay; nothing moves twice.
    again = act(bob, pk, "pay", key="pay-once")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert snapshot() == after
    assert idempotency_keys() == keys + 1
    # A new key is a new attempt, on a request that is no longer pending.
    assert_problem(act(bob, pk, "pay", key="pay-twice"), 409, "invalid_state")
    assert snapshot() == after


@pytest.mark.django_db
def test_a_pay_key_reused_for_another_request_is_422_and_changes_nothing(alice, bob):
    fund(bob, 1000_00)
    first, second = ask(alice, bob, "10.00"), ask(alice, bob, "20.00")
    created(act(bob, first, "pay", key="shared"))
    before, keys = snapshot(), idempotency_keys()

    assert_problem(act(bob, second, "pay", key="shared"), 422, "idempotency_key_reused")

    assert snapshot() == before
    assert idempotency_keys() == keys
    assert MoneyRequest.objects.get(pk=second).status == "pending"


@pytest.mark.django_db
def test_paying_without_funds_is_409_and_the_request_stays_payable(alice, bob):
    fund(bob, 499_00)
    pk = ask(alice, bob, "500.00")
    before, keys = snapshot(), idempotency_keys()

    response = act(bob, pk, "pay", key="too-soon")

    assert assert_problem(response, 409, "insufficient_funds")["errors"] == []
    assert snapshot() == before
    assert idempotency_keys() == keys + 1
    assert ok(client_for(bob).get(f"{REQUESTS}/{pk}")) == request_json(pk, status="pending")

    fund(bob, 1_00)
    # The refusal is remembered under its key (the contract says so for lack of funds)...
    replayed = act(bob, pk, "pay", key="too-soon")
    assert assert_problem(replayed, 409, "insufficient_funds") == response.json()
    assert replayed["Idempotent-Replayed"] == "true"
    # ...and a new key pays it, the whole balance and not a paisa more.
    body = created(act(bob, pk, "pay", key="funded"))
    assert body["balance"] == "0.00"
    assert body["money_request"]["status"] == "paid"
    assert (balance_of(bob), balance_of(alice)) == (0, 500_00)
    assert_money_invariants()


@pytest.mark.django_db
@pytest.mark.parametrize("frozen", ["payer", "requester"])
def test_paying_when_either_wallet_is_frozen_is_403_and_changes_nothing(
    people, pending, staff, frozen
):
    freeze(people[frozen], staff)
    before, keys = snapshot(), idempotency_keys()

    response = act(people["payer"], pending, "pay")

    assert assert_problem(response, 403, "wallet_frozen")["errors"] == []
    assert snapshot() == before
    assert idempotency_keys() == keys + 1
    unfreeze(people[frozen], staff)
    assert created(act(people["payer"], pending, "pay"))["money_request"]["status"] == "paid"


@pytest.mark.django_db
@same_business_day
def test_paying_counts_against_the_daily_outgoing_limit(settings, alice, bob, carol):
    settings.QUICKPE_DAILY_OUTGOING_LIMIT = 700_00
    fund(bob, 2000_00)
    transfer_create(sender=bob, recipient=carol, amount=300_00)
    too_much, fits = ask(alice, bob, "400.01"), ask(alice, bob, "400.00")
    before, keys = snapshot(), idempotency_keys()

    response = act(bob, too_much, "pay")

    body = assert_problem(response, 409, "limit_exceeded")
    assert [{k: v for k, v in e.items() if k != "detail"} for e in body["errors"]] == [
        {"field": "amount", "code": "daily_outgoing", "limit": "700.00", "remaining": "400.00"}
    ]
    assert snapshot() == before
    assert idempotency_keys() == keys + 1
    # Exactly the remaining allowance can be paid, and then it is used up.
    created(act(bob, fits, "pay"))
    limits = ok(client_for(bob).get("/api/v1/wallet"))["limits"]
    assert limits["daily_outgoing_remaining"] == "0.00"
    assert MoneyRequest.objects.get(pk=too_much).status == "pending"
    assert_money_invariants()


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{}, {"HTTP_IDEMPOTENCY_KEY": ""}], ids=["absent", "empty"])
def test_paying_without_an_idempotency_key_is_400_and_changes_nothing(people, pending, headers):
    before, keys = snapshot(), idempotency_keys()

    response = client_for(people["payer"]).post(
        f"{REQUESTS}/{pending}/pay", format="json", **headers
    )

    assert_problem(response, 400, "idempotency_key_required")
    assert snapshot() == before
    assert idempotency_keys() == keys


# --- decline and cancel -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_payer_declines_and_the_requester_is_told(people, pending):
    alice, bob = people["requester"], people["payer"]
    before, keys, mark = snapshot(), idempotency_keys(), marks()

    body = ok(act(bob, pending, "decline"))

    row = MoneyRequest.objects.get(pk=pending)
    assert body == request_json(pending)
    assert (body["status"], body["transfer_id"]) == ("declined", None)
    assert body["resolved_at"] == api_time(row.resolved_at)
    assert row.resolved_at >= row.created_at
    assert new_notifications(mark) == [
        (
            alice.pk,
            "money_request_declined",
            "Bob Verma declined your request of ₹500.00",
            "Dinner",
            {"money_request_id": pending},
        )
    ]
    assert new_updates(mark, alice) == [{"money_request": body}]
    assert new_updates(mark, bob) == [{"money_request": body}]
    assert new_event_types(mark, alice) == Counter(
        {"money_request:update": 1, "notification:new": 1}
    )
    assert new_event_types(mark, bob) == Counter({"money_request:update": 1, "audit:new": 1})
    assert new_audit(mark) == [
        (
            bob.pk,
            "money_request.declined",
            "money_request",
            str(pending),
            request_audit_data(alice, bob, "500.00", "declined"),
        )
    ]
    assert snapshot() == {
        **before,
        "audit": before["audit"] + 1,
        "events": before["events"] + 4,
        "notifications": before["notifications"] + 1,
        "money_requests": {pending: "declined"},
    }
    assert idempotency_keys() == keys
    assert_money_invariants()


@pytest.mark.django_db
def test_the_requester_cancels_and_the_payer_is_told(people, pending):
    alice, bob = people["requester"], people["payer"]
    before, mark = snapshot(), marks()

    body = ok(act(alice, pending, "cancel"))

    row = MoneyRequest.objects.get(pk=pending)
    assert body == request_json(pending)
    assert (body["status"], body["transfer_id"]) == ("cancelled", None)
    assert body["resolved_at"] == api_time(row.resolved_at)
    assert new_notifications(mark) == [
        (
            bob.pk,
            "money_request",
            "Alice Sharma cancelled their request of ₹500.00",
            "Dinner",
            {"money_request_id": pending},
        )
    ]
    assert new_updates(mark, alice) == [{"money_request": body}]
    assert new_updates(mark, bob) == [{"money_request": body}]
    assert new_event_types(mark, alice) == Counter({"money_request:update": 1, "audit:new": 1})
    assert new_event_types(mark, bob) == Counter({"money_request:update": 1, "notification:new": 1})
    assert new_audit(mark) == [
        (
            alice.pk,
            "money_request.cancelled",
            "money_request",
            str(pending),
            request_audit_data(alice, bob, "500.00", "cancelled"),
        )
    ]
    assert snapshot() == {
        **before,
        "audit": before["audit"] + 1,
        "events": before["events"] + 4,
        "notifications": before["notifications"] + 1,
        "money_requests": {pending: "cancelled"},
    }
    assert_money_invariants()


# --- races -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_payments_of_one_request_at_once_pay_it_once():
    alice, bob = make_user("Alice", "Sharma"), make_user("Bob", "Verma")
    fund(bob, 1000_00)
    request = money_request_create(requester=alice, payer=bob, amount=500_00, note="Dinner")

    token = tokens_issue(bob)["access"]
    answers: Counter = Counter()
    lock = threading.Lock()

    def work(index: int) -> None:
        response = act(bob, request.pk, "pay", key=f"at-once-{index}", token=token)
        with lock:
            answers[(response.status_code, response.json().get("code"))] += 1

    run_threads(20, work)

    assert answers == Counter({(201, None): 1, (409, "invalid_state"): 19})
    transfer = Transfer.objects.get()
    request.refresh_from_db()
    assert (request.status, request.transfer_id) == ("paid", transfer.pk)
    assert (balance_of(bob), balance_of(alice)) == (500_00, 500_00)
    assert LedgerEntry.objects.filter(transfer=transfer).count() == 2
    assert Notification.objects.filter(kind="money_request_paid").count() == 1
    assert AuditEntry.objects.filter(action="money_request.pay").count() == 1
    assert idempotency_keys() == 20  # the refusals are remembered under their keys too
    assert_money_invariants()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("rival", "rival_role"), [("cancel", "requester"), ("decline", "payer")])
def test_paying_racing_a_close_lets_exactly_one_win(rival, rival_role):
    people = {"requester": make_user("Alice", "Sharma"), "payer": make_user("Bob", "Verma")}
    alice, bob = people["requester"], people["payer"]
    rounds = 8
    fund(bob, rounds * 100_00)
    closed = {"cancel": "cancelled", "decline": "declined"}[rival]
    outcomes: Counter = Counter()
    tokens = {user.pk: tokens_issue(user)["access"] for user in (alice, bob)}

    for _ in range(rounds):
        pk = money_request_create(requester=alice, payer=bob, amount=100_00).pk
        answers: dict[str, tuple] = {}
        lock = threading.Lock()

        def work(index: int, pk=pk, answers=answers, lock=lock) -> None:
            action = "pay" if index == 0 else rival
            user = bob if index == 0 else people[rival_role]
            response = act(user, pk, action, token=tokens[user.pk])
            with lock:
                answers[action] = (response.status_code, response.json().get("code"))

        run_threads(2, work)

        status = MoneyRequest.objects.get(pk=pk).status
        if answers["pay"][0] == 201:
            assert answers == {"pay": (201, None), rival: (409, "invalid_state")}
            assert status == "paid"
        else:
            assert answers == {"pay": (409, "invalid_state"), rival: (200, None)}
            assert status == closed
        outcomes[status] += 1

    paid = outcomes["paid"]
    assert sum(outcomes.values()) == rounds
    assert Transfer.objects.count() == paid
    assert MoneyRequest.objects.filter(status="paid", transfer__isnull=False).count() == paid
    assert (balance_of(bob), balance_of(alice)) == ((rounds - paid) * 100_00, paid * 100_00)
    assert_money_invariants()


# --- expiry ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_request_past_its_deadline_reads_expired_before_any_job_ran(alice, bob):
    due = ask(alice, bob, "10.00")
    fresh = ask(alice, bob, "20.00")
    backdate(due)

    for user in (alice, bob):
        detail = ok(client_for(user).get(f"{REQUESTS}/{due}"))
        assert detail == expired_json(due)
        assert detail["status"] == "expired"
        assert detail["resolved_at"] == detail["expires_at"]
    assert listed_ids(alice, {"status": "expired"}) == [due]
    assert listed_ids(bob, {"status": "expired", "role": "incoming"}) == [due]
    assert listed_ids(alice, {"status": "pending"}) == [fresh]
    assert listed_ids(bob, {"status": "pending"}) == [fresh]
    everything = ok(client_for(alice).get(REQUESTS))["results"]
    assert everything == [request_json(fresh), expired_json(due)]
    # Only read that way: nothing was written.
    assert MoneyRequest.objects.get(pk=due).status == "pending"
    assert MoneyRequest.objects.get(pk=due).resolved_at is None


@pytest.mark.django_db
def test_the_expiry_job_writes_it_down_tells_both_and_is_idempotent(alice, bob, carol):
    due = ask(alice, bob, "500.00", "Dinner")
    backdate(due)
    fresh = ask(alice, bob, "20.00")
    declined = ask(carol, bob, "30.00")
    ok(act(bob, declined, "decline"))
    backdate(declined)  # resolved long ago: the job must leave it alone
    shown = expired_json(due)
    before, mark = snapshot(), marks()

    assert money_requests_expire() == 1

    row = MoneyRequest.objects.get(pk=due)
    assert (row.status, row.resolved_at, row.transfer_id) == ("expired", row.expires_at, None)
    # What was read before is now what is stored: the same JSON, everywhere.
    assert request_json(due) == shown
    assert ok(client_for(bob).get(f"{REQUESTS}/{due}")) == shown
    assert new_notifications(mark) == [
        (
            alice.pk,
            "money_request",
            "Your request of ₹500.00 to Bob Verma expired",
            "Dinner",
            {"money_request_id": due},
        )
    ]
    assert new_updates(mark, alice) == [{"money_request": shown}]
    assert new_updates(mark, bob) == [{"money_request": shown}]
    assert new_event_types(mark, alice) == Counter(
        {"money_request:update": 1, "notification:new": 1}
    )
    assert new_event_types(mark, bob) == Counter({"money_request:update": 1})
    assert new_event_types(mark, carol) == Counter()
    assert new_audit(mark) == [
        (
            None,
            "money_request.expire",
            "money_request",
            str(due),
            request_audit_data(alice, bob, "500.00", "expired"),
        )
    ]
    after = snapshot()
    assert after == {
        **before,
        "audit": before["audit"] + 1,
        "events": before["events"] + 3,
        "notifications": before["notifications"] + 1,
        "money_requests": {due: "expired", fresh: "pending", declined: "declined"},
    }
    assert_money_invariants()

    # A second run finds nothing to do.
    assert money_requests_expire() == 0
    assert snapshot() == after


@pytest.mark.django_db
def test_the_expiry_job_expires_a_request_at_its_deadline_and_not_before(alice, bob):
    pk = ask(alice, bob)
    deadline = MoneyRequest.objects.get(pk=pk).expires_at

    assert money_requests_expire(now=deadline - timedelta(microseconds=1)) == 0
    assert MoneyRequest.objects.get(pk=pk).status == "pending"
    assert money_requests_expire() == 0  # seven days to go
    assert money_requests_expire(now=deadline) == 1

    row = MoneyRequest.objects.get(pk=pk)
    assert (row.status, row.resolved_at) == ("expired", deadline)


# transaction=True: a starting Celery worker closes the database connections of the thread
# that starts it (Celery's Django fixup), which a test wrapped in a transaction cannot survive.
@pytest.mark.django_db(transaction=True)
def test_the_expiry_task_runs_through_a_real_celery_worker(celery_worker):
    alice, bob = make_user("Alice", "Sharma"), make_user("Bob", "Verma")
    due = money_request_create(requester=alice, payer=bob, amount=500_00, note="Dinner").pk
    fresh = money_request_create(requester=alice, payer=bob, amount=20_00).pk
    backdate(due)

    # Under pytest-xdist another test process's worker may listen on the same queue and take
    # the job (running it on its own database); the task is idempotent, so send it again.
    deadline, resend_at = time.monotonic() + 30, 0.0
    while MoneyRequest.objects.get(pk=due).status == "pending":
        assert time.monotonic() < deadline, "the worker did not expire the request"
        if time.monotonic() >= resend_at:
            money_requests_expire_task.delay()
            resend_at = time.monotonic() + 3
        time.sleep(0.05)
    row = MoneyRequest.objects.get(pk=due)
    assert (row.status, row.resolved_at) == ("expired", row.expires_at)
    assert MoneyRequest.objects.get(pk=fresh).status == "pending"
    notice = Notification.objects.filter(user=alice).get()
    assert (notice.kind, notice.data) == ("money_request", {"money_request_id": due})
    assert AuditEntry.objects.filter(action="money_request.expire").count() == 1
    assert Event.objects.filter(user=bob, type="money_request:update").count() == 3
    assert_money_invariants()


# --- list and detail ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_list_is_by_role_newest_first_and_never_shows_others_requests(alice, bob, carol):
    asked_bob = ask(alice, bob, "10.00")
    asked_by_bob = ask(bob, alice, "20.00")
    not_alices = ask(carol, bob, "30.00")
    asked_carol = ask(alice, carol, "40.00")

    body = ok(client_for(alice).get(REQUESTS))
    assert body == {
        "next": None,
        "previous": None,
        "results": [request_json(asked_carol), request_json(asked_by_bob), request_json(asked_bob)],
    }
    assert listed_ids(alice, {"role": "outgoing"}) == [asked_carol, asked_bob]
    assert listed_ids(alice, {"role": "incoming"}) == [asked_by_bob]
    assert listed_ids(bob) == [not_alices, asked_by_bob, asked_bob]
    assert listed_ids(bob, {"role": "incoming"}) == [not_alices, asked_bob]
    assert listed_ids(bob, {"role": "outgoing"}) == [asked_by_bob]
    assert listed_ids(carol) == [asked_carol, not_alices]
    assert not_alices not in listed_ids(alice)
    # An empty filter is no filter (as DRF reads query strings, and like /transactions).
    assert listed_ids(alice, {"role": "", "status": ""}) == listed_ids(alice)


@pytest.mark.django_db
def test_the_list_filters_by_status(alice, bob):
    fund(bob, 1000_00)
    paid, declined, cancelled, pending = (ask(alice, bob, f"{n}.00") for n in (10, 20, 30, 40))
    created(act(bob, paid, "pay"))
    ok(act(bob, declined, "decline"))
    ok(act(alice, cancelled, "cancel"))

    assert listed_ids(alice, {"status": "paid"}) == [paid]
    assert listed_ids(alice, {"status": "declined"}) == [declined]
    assert listed_ids(alice, {"status": "cancelled"}) == [cancelled]
    assert listed_ids(alice, {"status": "pending"}) == [pending]
    assert listed_ids(alice, {"status": "expired"}) == []
    assert listed_ids(bob, {"status": "paid", "role": "incoming"}) == [paid]
    assert listed_ids(bob, {"status": "paid", "role": "outgoing"}) == []
    assert listed_ids(alice, {"status": "paid", "role": "incoming"}) == []


@pytest.mark.django_db
def test_the_list_pages_with_cursors_and_keeps_the_filters(alice, bob, carol):
    ids = [
        money_request_create(requester=alice, payer=bob, amount=(n + 1) * 100).pk for n in range(25)
    ]
    money_request_create(requester=carol, payer=alice, amount=100)  # incoming: filtered out
    newest_first = ids[::-1]
    client = client_for(alice)

    first = ok(client.get(REQUESTS, {"role": "outgoing"}))
    assert len(first["results"]) == 20 and first["previous"] is None
    assert first["next"].startswith("http://testserver/api/v1/money-requests?")
    second = ok(client.get(first["next"]))
    assert [row["id"] for row in first["results"] + second["results"]] == newest_first
    assert second["next"] is None
    assert ok(client.get(second["previous"]))["results"] == first["results"]

    walked, url, params = [], REQUESTS, {"role": "outgoing", "page_size": 7}
    while url:
        page = ok(client.get(url, params))
        assert len(page["results"]) <= 7
        walked += [row["id"] for row in page["results"]]
        url, params = page["next"], None
    assert walked == newest_first


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "errors"),
    [
        pytest.param({"role": "sideways"}, [("role", "invalid_choice")], id="role-sideways"),
        pytest.param({"role": "INCOMING"}, [("role", "invalid_choice")], id="role-uppercase"),
        pytest.param({"status": "overdue"}, [("status", "invalid_choice")], id="status-overdue"),
        pytest.param(
            {"status": "Pending"}, [("status", "invalid_choice")], id="status-capitalised"
        ),
    ],
)
def test_an_unknown_role_or_status_is_400(alice, bob, params, errors):
    ask(alice, bob)

    body = assert_problem(client_for(alice).get(REQUESTS, params), 400, "validation_error")

    assert field_codes(body) == errors


@pytest.mark.django_db
def test_detail_is_for_the_two_parties_only(alice, bob, carol):
    pk = ask(alice, bob)

    assert ok(client_for(alice).get(f"{REQUESTS}/{pk}")) == request_json(pk)
    assert ok(client_for(bob).get(f"{REQUESTS}/{pk}")) == request_json(pk)
    assert_problem(client_for(carol).get(f"{REQUESTS}/{pk}"), 404, "not_found")
    assert_problem(client_for(alice).get(f"{REQUESTS}/{pk + 1000}"), 404, "not_found")


# --- deactivated accounts ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_request_from_or_to_a_deactivated_account_cannot_be_paid(people):
    """A request that was pending when its requester was closed (say it predates the
    cancellation on deactivation) moves no money into the closed account."""
    alice, bob, carol = people["requester"], people["payer"], people["stranger"]
    from_closed = ask(alice, bob)
    to_closed = ask(carol, alice)
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    before, keys = snapshot(), idempotency_keys()

    body = assert_problem(act(bob, from_closed, "pay"), 409, "account_deactivated")
    assert "deactivated" in body["detail"]
    assert snapshot() == before
    assert idempotency_keys() == keys + 1  # the refusal is remembered under its key
    # The payer's side: a closed payer's call (it cannot sign in; a service caller could).
    with pytest.raises(PartyDeactivated):
        money_request_pay(user=type(alice).objects.get(pk=alice.pk), money_request_id=to_closed)
    assert snapshot() == before
    # Declared where the pay endpoint lists its errors.
    schema = client_for().get("/api/schema/", {"format": "json"}).json()
    pay = schema["paths"]["/api/v1/money-requests/{id}/pay"]["post"]
    assert "`account_deactivated`" in pay["responses"]["409"]["description"]


@pytest.mark.django_db
def test_deactivating_a_user_cancels_their_pending_requests_and_tells_the_other_party(people):
    alice, bob, carol = people["requester"], people["payer"], people["stranger"]
    root = make_user("Root", "Admin", is_staff=True, is_superuser=True)
    asked_bob = ask(alice, bob, "10.00", "Lunch")
    asked_by_carol = ask(carol, alice, "20.00", "Taxi")
    paid = ask(alice, carol, "5.00")
    assert act(carol, paid, "pay").status_code == 201
    unrelated = ask(bob, carol)
    before, mark = snapshot(), marks()

    support.user_deactivate(user=alice, actor=root, reason="Account takeover")

    statuses = dict(MoneyRequest.objects.values_list("pk", "status"))
    assert statuses == {
        **before["money_requests"],
        asked_bob: "cancelled",
        asked_by_carol: "cancelled",
    }
    assert statuses[paid] == "paid" and statuses[unrelated] == "pending"
    assert MoneyRequest.objects.get(pk=asked_bob).resolved_at is not None
    notices = [(user_id, kind, title) for user_id, kind, title, *_ in new_notifications(mark)]
    assert notices == [
        (bob.pk, "money_request", "Alice Sharma's request of ₹10.00 was cancelled"),
        (carol.pk, "money_request", "Your request of ₹20.00 to Alice Sharma was cancelled"),
        (alice.pk, "security", "Your account was deactivated"),
    ]
    for user, pk in [(bob, asked_bob), (carol, asked_by_carol)]:
        [update] = new_updates(mark, user)
        assert (update["money_request"]["id"], update["money_request"]["status"]) == (
            pk,
            "cancelled",
        )
    assert [u["money_request"]["id"] for u in new_updates(mark, alice)] == sorted(
        [asked_bob, asked_by_carol]
    )
    assert new_audit(mark) == [
        (
            root.pk,
            "money_request.cancelled",
            "money_request",
            str(asked_bob),
            request_audit_data(alice, bob, "10.00", "cancelled"),
        ),
        (
            root.pk,
            "money_request.cancelled",
            "money_request",
            str(asked_by_carol),
            request_audit_data(carol, alice, "20.00", "cancelled"),
        ),
        (
            root.pk,
            "admin.user_deactivate",
            "user",
            str(alice.pk),
            {"quickpe_id": alice.quickpe_id, "reason": "Account takeover", "revoked_tokens": 2},
        ),
    ]
    assert_problem(act(bob, asked_bob, "pay"), 409, "invalid_state")
