"""Wallet and money movement through the HTTP API: deposits, withdrawals, transfers, the ledger.

Every refusal is checked for its exact status, problem+json ``code`` and for changing nothing
(balances, ledger, transfers, audit, users: ``snapshot()``).
"""

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from audit.models import AuditEntry
from quickpe.business_day import business_day
from quickpe.env import env_rate
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
from wallet.idempotency import _advisory_lock_id
from wallet.models import LedgerEntry, Transfer, User, Wallet
from wallet.services.money import (
    deposit_create,
    transfer_create,
    withdrawal_create,
)

DEPOSITS = "/api/v1/wallet/deposits"
WITHDRAWALS = "/api/v1/wallet/withdrawals"
TRANSFERS = "/api/v1/transfers"
TRANSACTIONS = "/api/v1/transactions"
WALLET = "/api/v1/wallet"

TRANSACTION_KEYS = {
    "id",
    "reference",
    "kind",
    "direction",
    "amount",
    "balance_after",
    "category",
    "description",
    "counterparty",
    "transfer_id",
    "created_at",
}
TRANSFER_KEYS = {
    "id",
    "reference",
    "sender",
    "recipient",
    "amount",
    "note",
    "category",
    "status",
    "created_at",
}
IST = ZoneInfo("Asia/Kolkata")
OMITTED = object()


def field_codes(body: dict) -> list[tuple]:
    return [(error["field"], error["code"]) for error in body["errors"]]


def send(client, path: str, body, *, key: str | None = None):
    """A money-moving POST with a fresh Idempotency-Key; a ``str`` body is sent as raw JSON."""
    key = key or uuid.uuid4().hex
    if isinstance(body, str):
        return client.post(path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def created(response) -> dict:
    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def api_time(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def transaction_json(entry: LedgerEntry) -> dict:
    counterparty = entry.counterparty
    return {
        "id": entry.pk,
        "reference": entry.reference,
        "kind": entry.kind,
        "direction": entry.direction,
        "amount": f"{entry.amount // 100}.{entry.amount % 100:02d}",
        "balance_after": f"{entry.balance_after // 100}.{entry.balance_after % 100:02d}",
        "category": entry.category,
        "description": entry.description,
        "counterparty": None
        if counterparty is None
        else {"quickpe_id": counterparty.quickpe_id, "name": counterparty.get_full_name()},
        "transfer_id": entry.transfer_id,
        "created_at": api_time(entry.created_at),
    }


def balance_of(user) -> int:
    return Wallet.objects.get(user=user).balance


@pytest.fixture
def staff(db):
    return make_user("Sam", "Support", is_staff=True)


@pytest.fixture
def carol(db):
    return make_user("Carol", "Iyer")


# --- hostile and valid amounts -----------------------------------------------------------

# (raw JSON for "amount", the field error code)
HOSTILE_AMOUNTS = [
    pytest.param('"1.005"', "invalid_amount", id="string-three-decimals"),
    pytest.param("1.005", "invalid_amount", id="number-three-decimals"),
    pytest.param("10.500", "invalid_amount", id="number-trailing-zero-third-decimal"),
    pytest.param('"1e3"', "invalid_amount", id="string-exponent"),
    pytest.param("1e3", "invalid_amount", id="number-exponent"),
    pytest.param("1E2", "invalid_amount", id="number-exponent-upper"),
    pytest.param('"-5.00"', "invalid_amount", id="string-negative"),
    pytest.param("-5", "invalid_amount", id="number-negative"),
    pytest.param("-0.0", "invalid_amount", id="number-negative-zero"),
    pytest.param('"0"', "invalid_amount", id="string-zero"),
    pytest.param('"0.00"', "invalid_amount", id="string-zero-decimals"),
    pytest.param("0", "invalid_amount", id="number-zero"),
    pytest.param("0.00", "invalid_amount", id="number-zero-decimals"),
    pytest.param('"abc"', "invalid_amount", id="string-letters"),
    pytest.param('""', "invalid_amount", id="string-empty"),
    pytest.param("null", "null", id="null"),
    pytest.param("true", "invalid_amount", id="true"),
    pytest.param("false", "invalid_amount", id="false"),
    pytest.param("[]", "invalid_amount", id="list"),
    pytest.param('["5.00"]', "invalid_amount", id="list-of-amount"),
    pytest.param("{}", "invalid_amount", id="object"),
    pytest.param('"NaN"', "invalid_amount", id="string-nan"),
    pytest.param('"Infinity"', "invalid_amount", id="string-infinity"),
    pytest.param('"  5"', "invalid_amount", id="string-leading-spaces"),
    pytest.param('"5 "', "invalid_amount", id="string-trailing-space"),
    pytest.param('"5\\n"', "invalid_amount", id="string-trailing-newline"),
    pytest.param('"5."', "invalid_amount", id="string-trailing-dot"),
    pytest.param('".5"', "invalid_amount", id="string-leading-dot"),
    pytest.param('"+5"', "invalid_amount", id="string-plus"),
    pytest.param('"05"', "invalid_amount", id="string-leading-zero"),
    pytest.param('"1,000"', "invalid_amount", id="string-grouping"),
    pytest.param('"\u20b95"', "invalid_amount", id="string-rupee-sign"),
    pytest.param('"0x10"', "invalid_amount", id="string-hex"),
    pytest.param('"1\\u0665"', "invalid_amount", id="string-arabic-indic-digit"),
    pytest.param('"\\uff11\\uff10"', "invalid_amount", id="string-fullwidth-digits"),
    pytest.param('"99999999999999999999999.00"', "amount_too_large", id="string-huge"),
    pytest.param("1" + "0" * 30, "amount_too_large", id="number-huge-int"),
    pytest.param("1" + "0" * 100, "invalid_amount", id="number-hundred-digits"),
]

# JSON has no NaN or Infinity: these bodies are not JSON at all, so the parser refuses them.
NON_JSON_AMOUNTS = ["NaN", "Infinity", "-Infinity"]


def hostile_body(path: str, raw_amount: str, recipient) -> str:
    if path == TRANSFERS:
        return f'{{"recipient": "{recipient.quickpe_id}", "amount": {raw_amount}}}'
    return f'{{"amount": {raw_amount}}}'


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS, TRANSFERS])
@pytest.mark.parametrize(("raw_amount", "error_code"), HOSTILE_AMOUNTS)
def test_hostile_amounts_are_400_and_change_nothing(alice, bob, path, raw_amount, error_code):
    fund(alice, 1000_00)
    before = snapshot()

    response = send(client_for(alice), path, hostile_body(path, raw_amount, bob))

    body = assert_problem(response, 400, "validation_error")
    assert field_codes(body) == [("amount", error_code)]
    assert snapshot() == before


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS, TRANSFERS])
@pytest.mark.parametrize("raw_amount", NON_JSON_AMOUNTS)
def test_nan_and_infinity_json_numbers_are_400_and_change_nothing(alice, bob, path, raw_amount):
    fund(alice, 1000_00)
    before = snapshot()

    response = send(client_for(alice), path, hostile_body(path, raw_amount, bob))

    body = assert_problem(response, 400, "malformed_request")
    assert body["errors"] == []
    assert snapshot() == before


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS, TRANSFERS])
def test_a_missing_amount_is_400(alice, bob, path):
    fund(alice, 1000_00)
    before = snapshot()
    body = {"recipient": bob.quickpe_id} if path == TRANSFERS else {"description": "x"}

    problem = assert_problem(send(client_for(alice), path, body), 400, "validation_error")

    assert field_codes(problem) == [("amount", "required")]
    assert snapshot() == before


VALID_AMOUNTS = [
    pytest.param('"10"', "10.00", id="string-integer"),
    pytest.param('"10.5"', "10.50", id="string-one-decimal"),
    pytest.param('"10.50"', "10.50", id="string-two-decimals"),
    pytest.param("10", "10.00", id="number-integer"),
    pytest.param("10.5", "10.50", id="number-one-decimal"),
    pytest.param("10.50", "10.50", id="number-two-decimals"),
    pytest.param('"1.00"', "1.00", id="string-minimum"),
    pytest.param('"0.99"', None, id="string-below-minimum"),
]


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS, TRANSFERS])
@pytest.mark.parametrize(("raw_amount", "expected"), VALID_AMOUNTS)
def test_amount_forms(alice, bob, path, raw_amount, expected):
    fund(alice, 1000_00)
    before = snapshot()

    response = send(client_for(alice), path, hostile_body(path, raw_amount, bob))

    if expected is None:  # a well-formed amount under the minimum is a business refusal
        body = assert_problem(response, 409, "limit_exceeded")
        assert field_codes(body) == [("amount", "min_per_transaction")]
        assert snapshot() == before
        return
    body = created(response)
    assert body["transaction"]["amount"] == expected
    sign = -1 if path in (WITHDRAWALS, TRANSFERS) else 1
    paise = int(expected.replace(".", ""))
    assert balance_of(alice) == 1000_00 + sign * paise
    assert body["balance"] == body["transaction"]["balance_after"]
    if path == TRANSFERS:
        assert body["transfer"]["amount"] == expected
        assert balance_of(bob) == paise


# --- deposits and withdrawals ------------------------------------------------------------


def test_deposit_credits_the_wallet_and_is_audited(alice):
    fund(alice, 1000_00)
    before = snapshot()

    body = created(send(client_for(alice), DEPOSITS, {"amount": "250.75", "description": "Salary"}))

    entry = LedgerEntry.objects.get(pk=body["transaction"]["id"])
    assert set(body) == {"transaction", "balance"}
    assert body["balance"] == "1250.75"
    assert body["transaction"] == transaction_json(entry)
    assert body["transaction"]["kind"] == "deposit"
    assert body["transaction"]["direction"] == "credit"
    assert body["transaction"]["description"] == "Salary"
    assert body["transaction"]["counterparty"] is None
    assert body["transaction"]["transfer_id"] is None
    assert body["transaction"]["created_at"].endswith("Z")
    assert balance_of(alice) == 1250_75
    after = snapshot()
    assert (after["ledger"], after["audit"]) == (before["ledger"] + 1, before["audit"] + 1)
    assert after["transfers"] == before["transfers"]
    audit = AuditEntry.objects.order_by("-seq").first()
    assert (audit.actor_id, audit.action, audit.entity_id) == (
        alice.pk,
        "wallet.deposit",
        str(entry.pk),
    )
    assert audit.data == {
        "reference": entry.reference,
        "amount": "250.75",
        "balance_after": "1250.75",
    }


def test_withdrawal_debits_the_wallet_and_is_audited(alice):
    fund(alice, 1000_00)
    before = snapshot()

    body = created(send(client_for(alice), WITHDRAWALS, {"amount": "1000.00"}))

    entry = LedgerEntry.objects.get(pk=body["transaction"]["id"])
    assert body["balance"] == "0.00"
    assert body["transaction"] == transaction_json(entry)
    assert (entry.kind, entry.direction, entry.amount, entry.balance_after) == (
        "withdrawal",
        "debit",
        1000_00,
        0,
    )
    assert balance_of(alice) == 0
    after = snapshot()
    assert (after["ledger"], after["audit"]) == (before["ledger"] + 1, before["audit"] + 1)
    assert AuditEntry.objects.order_by("-seq").first().action == "wallet.withdrawal"


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS])
def test_a_description_over_255_characters_or_with_nul_is_400(alice, path):
    fund(alice, 1000_00)
    before = snapshot()
    client = client_for(alice)

    for description in ["x" * 256, "a\x00b", 12.5, ["x"]]:
        body = assert_problem(
            send(client, path, {"amount": "5.00", "description": description}),
            400,
            "validation_error",
        )
        assert [field for field, _ in field_codes(body)] == ["description"]
    assert snapshot() == before


def test_insufficient_funds_is_409_and_changes_nothing(alice, bob):
    fund(alice, 10_00)
    before = snapshot()
    client = client_for(alice)

    for path, body in [
        (WITHDRAWALS, {"amount": "10.01"}),
        (TRANSFERS, {"recipient": bob.quickpe_id, "amount": "10.01"}),
    ]:
        problem = assert_problem(send(client, path, body), 409, "insufficient_funds")
        assert problem["errors"] == []
    assert snapshot() == before
    # The whole balance, and not a paisa more, can go.
    assert created(send(client, WITHDRAWALS, {"amount": "10.00"}))["balance"] == "0.00"
    assert_problem(send(client, WITHDRAWALS, {"amount": "1.00"}), 409, "insufficient_funds")


# --- limits ------------------------------------------------------------------------------


def limit_error(body: dict) -> dict:
    assert len(body["errors"]) == 1
    error = dict(body["errors"][0])
    assert isinstance(error.pop("detail"), str)
    return error


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS, TRANSFERS])
def test_per_transaction_minimum_and_maximum_are_409(alice, bob, path):
    fund(alice, 100000_00)
    before = snapshot()
    client = client_for(alice)
    extra = {"recipient": bob.quickpe_id} if path == TRANSFERS else {}

    low = assert_problem(send(client, path, {**extra, "amount": "0.50"}), 409, "limit_exceeded")
    high = assert_problem(
        send(client, path, {**extra, "amount": "100000.01"}), 409, "limit_exceeded"
    )

    assert limit_error(low) == {"field": "amount", "code": "min_per_transaction", "limit": "1.00"}
    assert limit_error(high) == {
        "field": "amount",
        "code": "max_per_transaction",
        "limit": "100000.00",
        "remaining": "100000.00",
    }
    assert snapshot() == before


def test_the_per_transaction_maximum_itself_is_allowed(alice, bob):
    client = client_for(alice)

    assert created(send(client, DEPOSITS, {"amount": "100000.00"}))["balance"] == "100000.00"
    body = send(client, TRANSFERS, {"recipient": bob.quickpe_id, "amount": "100000.00"})
    assert created(body)["balance"] == "0.00"


@same_business_day
def test_daily_deposit_limit(alice):
    client = client_for(alice)
    created(send(client, DEPOSITS, {"amount": "60000"}))
    before = snapshot()

    body = assert_problem(send(client, DEPOSITS, {"amount": "50000"}), 409, "limit_exceeded")

    assert limit_error(body) == {
        "field": "amount",
        "code": "daily_deposit",
        "limit": "100000.00",
        "remaining": "40000.00",
    }
    assert snapshot() == before
    assert created(send(client, DEPOSITS, {"amount": "40000"}))["balance"] == "100000.00"
    body = assert_problem(send(client, DEPOSITS, {"amount": "1.00"}), 409, "limit_exceeded")
    assert limit_error(body)["remaining"] == "0.00"


@same_business_day
def test_daily_outgoing_limit_counts_withdrawals_and_transfers_together(alice, bob):
    fund(alice, 100000_00)
    client = client_for(alice)
    created(send(client, WITHDRAWALS, {"amount": "60000"}))
    before = snapshot()

    for path, extra in [(TRANSFERS, {"recipient": bob.quickpe_id}), (WITHDRAWALS, {})]:
        body = assert_problem(
            send(client, path, {**extra, "amount": "50000"}), 409, "limit_exceeded"
        )
        assert limit_error(body) == {
            "field": "amount",
            "code": "daily_outgoing",
            "limit": "100000.00",
            "remaining": "40000.00",
        }
    assert snapshot() == before

    created(send(client, TRANSFERS, {"recipient": bob.quickpe_id, "amount": "40000"}))
    # The limit is checked before the balance: at 0.00 the answer is still the limit.
    body = assert_problem(send(client, WITHDRAWALS, {"amount": "1.00"}), 409, "limit_exceeded")
    assert limit_error(body)["remaining"] == "0.00"
    # Receiving money is not outgoing: Bob can still send his whole allowance.
    assert created(send(client_for(bob), WITHDRAWALS, {"amount": "40000"}))["balance"] == "0.00"


def test_balance_cap(settings, alice, bob):
    settings.QUICKPE_MAX_BALANCE = 500_00
    client = client_for(alice)
    created(send(client, DEPOSITS, {"amount": "400.00"}))
    before = snapshot()

    body = assert_problem(send(client, DEPOSITS, {"amount": "200.00"}), 409, "limit_exceeded")

    assert limit_error(body) == {
        "field": "amount",
        "code": "max_balance",
        "limit": "500.00",
        "remaining": "100.00",
    }
    assert snapshot() == before
    assert created(send(client, DEPOSITS, {"amount": "100.00"}))["balance"] == "500.00"

    # A transfer that would lift the recipient over the cap never reveals their balance.
    fund(bob, 300_00)
    before = snapshot()
    body = assert_problem(
        send(client_for(bob), TRANSFERS, {"recipient": alice.quickpe_id, "amount": "1.00"}),
        409,
        "limit_exceeded",
    )
    assert limit_error(body) == {
        "field": "amount",
        "code": "recipient_max_balance",
        "limit": "500.00",
    }
    assert snapshot() == before
    # An amount above the cap itself is not a valid amount at all.
    body = assert_problem(send(client, DEPOSITS, {"amount": "500.01"}), 400, "validation_error")
    assert field_codes(body) == [("amount", "amount_too_large")]


# --- transfers ---------------------------------------------------------------------------


def test_transfer_moves_money_atomically_and_is_audited_once(alice, bob):
    fund(alice, 1000_00)
    before = snapshot()

    body = created(
        send(
            client_for(alice),
            TRANSFERS,
            {"recipient": bob.quickpe_id, "amount": "250", "note": "Dinner", "category": "food"},
        )
    )

    transfer = Transfer.objects.get(pk=body["transfer"]["id"])
    out_line = LedgerEntry.objects.get(transfer=transfer, kind="transfer_out")
    in_line = LedgerEntry.objects.get(transfer=transfer, kind="transfer_in")
    assert set(body) == {"transfer", "transaction", "balance"}
    assert body["balance"] == "750.00"
    assert body["transfer"] == {
        "id": transfer.pk,
        "reference": transfer.reference,
        "sender": {"quickpe_id": alice.quickpe_id, "name": "Alice Sharma"},
        "recipient": {"quickpe_id": bob.quickpe_id, "name": "Bob Verma"},
        "amount": "250.00",
        "note": "Dinner",
        "category": "food",
        "status": "completed",
        "created_at": api_time(transfer.created_at),
    }
    assert body["transaction"] == transaction_json(out_line)
    assert body["transaction"]["counterparty"] == {
        "quickpe_id": bob.quickpe_id,
        "name": "Bob Verma",
    }
    assert (out_line.wallet.user_id, out_line.direction, out_line.category) == (
        alice.pk,
        "debit",
        "food",
    )
    assert (in_line.wallet.user_id, in_line.direction, in_line.amount) == (bob.pk, "credit", 250_00)
    assert (in_line.counterparty_id, in_line.description) == (alice.pk, "Dinner")
    assert (balance_of(alice), balance_of(bob)) == (750_00, 250_00)
    after = snapshot()
    assert after["ledger"] == before["ledger"] + 2
    assert after["transfers"] == before["transfers"] + 1
    assert after["audit"] == before["audit"] + 1
    audit = AuditEntry.objects.order_by("-seq").first()
    assert (audit.actor_id, audit.action, audit.entity_id) == (
        alice.pk,
        "transfer.create",
        str(transfer.pk),
    )
    assert audit.data == {
        "reference": transfer.reference,
        "amount": "250.00",
        "recipient": bob.quickpe_id,
        "category": "food",
    }


def test_transfer_defaults_category_and_describes_both_sides(alice, bob):
    fund(alice, 100_00)

    body = created(send(client_for(alice), TRANSFERS, {"recipient": bob.quickpe_id, "amount": 5}))

    assert body["transfer"]["category"] == "transfer"
    assert body["transfer"]["note"] == ""
    assert body["transaction"]["description"] == "To Bob Verma"
    incoming = client_for(bob).get(TRANSACTIONS).json()["results"]
    assert [(row["kind"], row["description"], row["counterparty"]) for row in incoming] == [
        (
            "transfer_in",
            "From Alice Sharma",
            {"quickpe_id": alice.quickpe_id, "name": "Alice Sharma"},
        )
    ]


@pytest.mark.parametrize(
    "spelling",
    ["email-upper", "email-mixed", "email-padded", "id-lower", "id-padded"],
)
def test_recipient_by_email_in_any_case_or_by_quickpe_id_in_any_case(alice, bob, spelling):
    fund(alice, 100_00)
    recipient = {
        "email-upper": bob.email.upper(),
        "email-mixed": bob.email.capitalize(),
        "email-padded": f"  {bob.email} ",
        "id-lower": bob.quickpe_id.lower(),
        "id-padded": f" {bob.quickpe_id} ",
    }[spelling]

    body = created(send(client_for(alice), TRANSFERS, {"recipient": recipient, "amount": "5"}))

    assert body["transfer"]["recipient"]["quickpe_id"] == bob.quickpe_id
    assert balance_of(bob) == 5_00


@pytest.mark.parametrize(
    "recipient",
    ["QP00000000", "qp00000000", "nobody@example.com", "@", "<script>", "Bob Verma"],
)
def test_unknown_recipient_is_404(alice, bob, recipient):
    if recipient.upper() == "QP00000000":
        assert not User.objects.filter(quickpe_id="QP00000000").exists()
    fund(alice, 100_00)
    before = snapshot()

    body = assert_problem(
        send(client_for(alice), TRANSFERS, {"recipient": recipient, "amount": "5"}),
        404,
        "recipient_not_found",
    )

    assert body["errors"] == []
    assert snapshot() == before


def test_an_inactive_recipient_is_not_found(alice, bob):
    fund(alice, 100_00)
    User.objects.filter(pk=bob.pk).update(is_active=False)
    before = snapshot()

    assert_problem(
        send(client_for(alice), TRANSFERS, {"recipient": bob.quickpe_id, "amount": "5"}),
        404,
        "recipient_not_found",
    )
    assert snapshot() == before


@pytest.mark.parametrize("spelling", ["id", "id-lower", "email-upper"])
def test_self_transfer_is_400(alice, spelling):
    fund(alice, 100_00)
    recipient = {
        "id": alice.quickpe_id,
        "id-lower": alice.quickpe_id.lower(),
        "email-upper": alice.email.upper(),
    }[spelling]
    before = snapshot()

    body = assert_problem(
        send(client_for(alice), TRANSFERS, {"recipient": recipient, "amount": "5"}),
        400,
        "self_transfer",
    )

    assert body["errors"] == []
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"recipient": OMITTED, "amount": "5"}, "recipient"),
        ({"recipient": "", "amount": "5"}, "recipient"),
        ({"recipient": None, "amount": "5"}, "recipient"),
        ({"recipient": ["QP12345678"], "amount": "5"}, "recipient"),
        ({"recipient": "x" * 255, "amount": "5"}, "recipient"),
        ({"amount": "5", "category": "crypto"}, "category"),
        ({"amount": "5", "category": "FOOD"}, "category"),
        ({"amount": "5", "category": ""}, "category"),
        ({"amount": "5", "category": None}, "category"),
        ({"amount": "5", "note": "x" * 256}, "note"),
        ({"amount": "5", "note": "a\x00b"}, "note"),
    ],
)
def test_invalid_transfer_fields_are_400(alice, bob, body, field):
    fund(alice, 100_00)
    body = {"recipient": bob.quickpe_id, **body}
    if body["recipient"] is OMITTED:
        del body["recipient"]
    before = snapshot()

    problem = assert_problem(send(client_for(alice), TRANSFERS, body), 400, "validation_error")

    assert [error_field for error_field, _ in field_codes(problem)] == [field]
    assert snapshot() == before


@pytest.mark.parametrize(
    "category",
    ["transfer", "food", "transport", "shopping", "bills", "entertainment", "health", "other"],
)
def test_every_contract_category_is_accepted(alice, bob, category):
    fund(alice, 100_00)

    body = created(
        send(
            client_for(alice),
            TRANSFERS,
            {"recipient": bob.quickpe_id, "amount": "1", "category": category},
        )
    )

    assert body["transfer"]["category"] == body["transaction"]["category"] == category


def freeze(user, actor) -> None:
    wallet_status_set(user, Wallet.Status.FROZEN, actor=actor)


def test_a_frozen_wallet_can_neither_send_nor_receive_nor_move_money(alice, bob, staff):
    fund(alice, 1000_00)
    fund(bob, 1000_00)
    before_freeze = snapshot()
    freeze(alice, staff)
    before = snapshot()
    # Freezing is itself one audited change, by the staff member who did it.
    assert before["audit"] == before_freeze["audit"] + 1
    audit = AuditEntry.objects.order_by("-seq").first()
    assert (audit.actor_id, audit.action) == (staff.pk, "wallet.freeze")
    assert audit.data == {"quickpe_id": alice.quickpe_id, "reason": "Test"}

    for client, path, body in [
        (client_for(alice), DEPOSITS, {"amount": "5"}),
        (client_for(alice), WITHDRAWALS, {"amount": "5"}),
        (client_for(alice), TRANSFERS, {"recipient": bob.quickpe_id, "amount": "5"}),
        (client_for(bob), TRANSFERS, {"recipient": alice.quickpe_id, "amount": "5"}),
    ]:
        problem = assert_problem(send(client, path, body), 403, "wallet_frozen")
        assert problem["errors"] == []

    assert snapshot() == before
    assert client_for(alice).get(WALLET).json()["status"] == "frozen"
    # Reading still works while frozen.
    assert client_for(alice).get(TRANSACTIONS).status_code == 200

    wallet_status_set(alice, Wallet.Status.ACTIVE, actor=staff)
    created(send(client_for(alice), TRANSFERS, {"recipient": bob.quickpe_id, "amount": "5"}))


def test_a_frozen_recipient_is_403_for_the_sender(alice, bob, staff):
    fund(alice, 1000_00)
    freeze(bob, staff)
    before = snapshot()

    assert_problem(
        send(client_for(alice), TRANSFERS, {"recipient": bob.email, "amount": "5"}),
        403,
        "wallet_frozen",
    )
    assert snapshot() == before


# --- idempotency -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS, TRANSFERS])
def test_a_missing_or_empty_idempotency_key_is_400(alice, bob, path):
    fund(alice, 100_00)
    body = {"recipient": bob.quickpe_id, "amount": "5"} if path == TRANSFERS else {"amount": "5"}
    before, keys = snapshot(), idempotency_keys()
    client = client_for(alice)

    assert_problem(client.post(path, body, format="json"), 400, "idempotency_key_required")
    assert_problem(
        client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=""),
        400,
        "idempotency_key_required",
    )

    assert snapshot() == before
    assert idempotency_keys() == keys


@pytest.mark.parametrize(
    "key",
    ["k" * 256, "clé-1", "key\u200b", "tab\tkey", "\x7f"],
    ids=["256-chars", "non-ascii", "zero-width", "tab", "delete"],
)
def test_a_malformed_idempotency_key_is_400(alice, key):
    before, keys = snapshot(), idempotency_keys()

    assert_problem(
        send(client_for(alice), DEPOSITS, {"amount": "5"}, key=key), 400, "idempotency_key_invalid"
    )

    assert snapshot() == before
    assert idempotency_keys() == keys


def test_a_255_character_printable_key_is_accepted(alice):
    key = ("A-z0~!" * 50)[:255]

    created(send(client_for(alice), DEPOSITS, {"amount": "5"}, key=key))
    replay = send(client_for(alice), DEPOSITS, {"amount": "5"}, key=key)

    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert balance_of(alice) == 5_00


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS, TRANSFERS])
def test_a_replay_returns_the_first_answer_and_moves_nothing(alice, bob, path):
    fund(alice, 100_00)
    client = client_for(alice)
    body = {"recipient": bob.quickpe_id, "amount": "5"} if path == TRANSFERS else {"amount": "5"}
    first = send(client, path, body, key="once")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    before = snapshot()

    again = send(client, path, body, key="once")

    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert snapshot() == before
    # A different body under the same key is refused, and changes nothing either.
    reused = send(client, path, {**body, "amount": "6"}, key="once")
    assert_problem(reused, 422, "idempotency_key_reused")
    assert snapshot() == before


def test_a_refusal_is_remembered_and_replayed_as_problem_json(alice, bob):
    client = client_for(alice)
    body = {"recipient": bob.quickpe_id, "amount": "5"}
    assert_problem(send(client, TRANSFERS, body, key="broke"), 409, "insufficient_funds")
    fund(alice, 100_00)
    before = snapshot()

    again = send(client, TRANSFERS, body, key="broke")

    assert_problem(again, 409, "insufficient_funds")
    assert again["Idempotent-Replayed"] == "true"
    assert snapshot() == before


def test_a_key_still_in_flight_is_409(alice):
    """Another transaction holds the key's lock (as a first request still running would)."""
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [_advisory_lock_id(alice.pk, "busy")])
        before, keys = snapshot(), idempotency_keys()

        response = send(client_for(alice), DEPOSITS, {"amount": "5"}, key="busy")

        assert_problem(response, 409, "idempotency_key_in_use")
        assert snapshot() == before
        assert idempotency_keys() == keys
    finally:
        other.close()
    # Once the first request is over, the key can be used.
    created(send(client_for(alice), DEPOSITS, {"amount": "5"}, key="busy"))


def test_a_body_that_is_not_json_is_400_and_remembered_under_its_key(alice):
    fund(alice, 100_00)
    client = client_for(alice)
    before = snapshot()

    first = send(client, DEPOSITS, '{"amount": NaN}', key="broken")
    again = send(client, DEPOSITS, '{"amount": NaN}', key="broken")
    other = send(client, DEPOSITS, '{"amount": "5"', key="broken")

    assert_problem(first, 400, "malformed_request")
    assert_problem(again, 400, "malformed_request")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert_problem(other, 422, "idempotency_key_reused")
    assert snapshot() == before


def test_keys_are_scoped_to_the_user(alice, bob):
    created(send(client_for(alice), DEPOSITS, {"amount": "5"}, key="shared"))
    body = created(send(client_for(bob), DEPOSITS, {"amount": "7"}, key="shared"))

    assert body["balance"] == "7.00"
    assert (balance_of(alice), balance_of(bob)) == (5_00, 7_00)


# --- authentication and methods ----------------------------------------------------------


@pytest.mark.parametrize("path", [DEPOSITS, WITHDRAWALS, TRANSFERS])
def test_money_endpoints_need_authentication(alice, bob, path):
    before = snapshot()

    response = send(client_for(), path, {"recipient": bob.quickpe_id, "amount": "5"})

    assert_problem(response, 401, "not_authenticated")
    assert snapshot() == before


@pytest.mark.parametrize(
    "path", [WALLET, TRANSACTIONS, f"{TRANSACTIONS}/1", f"{TRANSFERS}/1", "/api/v1/users?search=ab"]
)
def test_reads_need_authentication(db, path):
    assert_problem(client_for().get(path), 401, "not_authenticated")


# --- transfer and transaction detail -----------------------------------------------------


def test_transfer_detail_is_for_participants_only(alice, bob, carol):
    fund(alice, 100_00)
    body = created(
        send(client_for(alice), TRANSFERS, {"recipient": bob.quickpe_id, "amount": "12.34"})
    )
    url = f"{TRANSFERS}/{body['transfer']['id']}"

    for user in (alice, bob):
        response = client_for(user).get(url)
        assert response.status_code == 200
        assert response.json() == body["transfer"]
        assert set(response.json()) == TRANSFER_KEYS
    not_found = assert_problem(client_for(carol).get(url), 404, "not_found")
    missing = assert_problem(client_for(carol).get(f"{TRANSFERS}/999999999"), 404, "not_found")
    # An outsider cannot tell someone else's transfer from one that does not exist.
    assert not_found == missing


def test_transaction_detail_is_for_the_owner_only(alice, bob):
    fund(alice, 100_00)
    body = created(send(client_for(alice), TRANSFERS, {"recipient": bob.quickpe_id, "amount": "3"}))
    alice_line = body["transaction"]
    bob_line = client_for(bob).get(TRANSACTIONS).json()["results"][0]

    response = client_for(alice).get(f"{TRANSACTIONS}/{alice_line['id']}")
    assert response.status_code == 200
    assert response.json() == alice_line
    assert set(response.json()) == TRANSACTION_KEYS
    assert response.json()["created_at"].endswith("Z")
    assert_problem(client_for(bob).get(f"{TRANSACTIONS}/{alice_line['id']}"), 404, "not_found")
    assert_problem(client_for(alice).get(f"{TRANSACTIONS}/{bob_line['id']}"), 404, "not_found")


@pytest.mark.parametrize("object_id", ["0", "99999999999999999999", "-1", "abc", "1.5"])
def test_odd_ids_are_404(alice, object_id):
    for base in (TRANSACTIONS, TRANSFERS):
        assert_problem(client_for(alice).get(f"{base}/{object_id}"), 404, "not_found")


# --- the wallet --------------------------------------------------------------------------


@same_business_day
def test_wallet_shape_and_limits_remaining_after_movements(alice, bob):
    client = client_for(alice)

    fresh = client.get(WALLET)
    assert fresh.status_code == 200
    wallet = Wallet.objects.get(user=alice)
    assert fresh.json() == {
        "quickpe_id": alice.quickpe_id,
        "balance": "0.00",
        "currency": "INR",
        "status": "active",
        "limits": {
            "min_per_transaction": "1.00",
            "max_per_transaction": "100000.00",
            "max_balance": "10000000.00",
            "daily_deposit": "100000.00",
            "daily_deposit_remaining": "100000.00",
            "daily_outgoing": "100000.00",
            "daily_outgoing_remaining": "100000.00",
        },
        "updated_at": api_time(wallet.updated_at),
    }

    created(send(client, DEPOSITS, {"amount": "1000"}))
    created(send(client, WITHDRAWALS, {"amount": "200"}))
    created(send(client, TRANSFERS, {"recipient": bob.quickpe_id, "amount": "50.50"}))

    body = client.get(WALLET).json()
    wallet.refresh_from_db()
    assert body["balance"] == "749.50"
    assert body["updated_at"] == api_time(wallet.updated_at)
    assert body["updated_at"].endswith("Z")
    assert body["limits"]["daily_deposit_remaining"] == "99000.00"
    assert body["limits"]["daily_outgoing_remaining"] == "99749.50"
    # Money received is neither a deposit nor outgoing for the recipient.
    bob_limits = client_for(bob).get(WALLET).json()
    assert bob_limits["balance"] == "50.50"
    assert bob_limits["limits"]["daily_deposit_remaining"] == "100000.00"
    assert bob_limits["limits"]["daily_outgoing_remaining"] == "100000.00"


def test_wallet_accepts_only_get(alice):
    client = client_for(alice)
    for method in (client.post, client.put, client.patch, client.delete):
        response = method(WALLET, {"balance": "1000000.00"}, format="json")
        assert_problem(response, 405, "method_not_allowed")
    assert balance_of(alice) == 0


# --- the ledger: filters, ordering, pagination -------------------------------------------


@pytest.fixture
def ledger(alice, bob, carol):
    """Alice's ledger, oldest first: deposit 1000, to Bob 250 (food, "Pizza night"), to Carol
    120.50 (transport), withdrawal 300, from Bob 75.25 ("Refund")."""
    deposit_create(user=alice, amount=1000_00, description="Salary November")
    fund(bob, 500_00)
    transfer_create(sender=alice, recipient=bob, amount=250_00, note="Pizza night", category="food")
    transfer_create(sender=alice, recipient=carol, amount=120_50, category="transport")
    withdrawal_create(user=alice, amount=300_00, description="ATM cash")
    transfer_create(sender=bob, recipient=alice, amount=75_25, note="Refund", category="other")
    return list(LedgerEntry.objects.filter(wallet__user=alice).order_by("created_at", "pk"))


def amounts(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["amount"] for row in response.json()["results"]]


def test_transaction_list_shape_and_default_order(alice, ledger):
    response = client_for(alice).get(TRANSACTIONS)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    assert (body["next"], body["previous"]) == (None, None)
    assert body["results"] == [transaction_json(entry) for entry in reversed(ledger)]
    assert all(set(row) == TRANSACTION_KEYS for row in body["results"])
    assert all(row["created_at"].endswith("Z") for row in body["results"])
    assert body["results"][0]["balance_after"] == "404.75"
    assert client_for(alice).get(WALLET).json()["balance"] == "404.75"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "deposit"}, ["1000.00"]),
        ({"kind": "transfer_out"}, ["120.50", "250.00"]),
        ({"kind": "transfer_in"}, ["75.25"]),
        ({"kind": "withdrawal"}, ["300.00"]),
        ({"kind": "reversal"}, []),
        ({"direction": "credit"}, ["75.25", "1000.00"]),
        ({"direction": "debit"}, ["300.00", "120.50", "250.00"]),
        ({"category": "food"}, ["250.00"]),
        ({"category": "transport"}, ["120.50"]),
        ({"category": "other"}, ["75.25", "300.00", "1000.00"]),
        ({"category": "health"}, []),
        ({"min_amount": "250"}, ["300.00", "250.00", "1000.00"]),
        ({"min_amount": "250.00"}, ["300.00", "250.00", "1000.00"]),
        ({"max_amount": "120.50"}, ["75.25", "120.50"]),
        ({"min_amount": "100", "max_amount": "300"}, ["300.00", "120.50", "250.00"]),
        ({"kind": "transfer_out", "category": "transport"}, ["120.50"]),
        ({"search": "pizza"}, ["250.00"]),
        ({"search": "salary"}, ["1000.00"]),
        ({"search": "Verma"}, ["75.25", "250.00"]),
        ({"search": "carol iyer"}, ["120.50"]),
        ({"search": "no such thing"}, []),
        ({"search": ""}, ["75.25", "300.00", "120.50", "250.00", "1000.00"]),
        ({"ordering": "amount"}, ["75.25", "120.50", "250.00", "300.00", "1000.00"]),
        ({"ordering": "-amount"}, ["1000.00", "300.00", "250.00", "120.50", "75.25"]),
        ({"ordering": "created_at"}, ["1000.00", "250.00", "120.50", "300.00", "75.25"]),
        ({"ordering": "-created_at"}, ["75.25", "300.00", "120.50", "250.00", "1000.00"]),
    ],
)
def test_transaction_filters(alice, ledger, params, expected):
    assert amounts(client_for(alice).get(TRANSACTIONS, params)) == expected


def test_search_by_counterparty_quickpe_id_and_reference(alice, bob, ledger):
    client = client_for(alice)
    withdrawal = ledger[3]

    assert amounts(client.get(TRANSACTIONS, {"search": bob.quickpe_id})) == ["75.25", "250.00"]
    assert amounts(client.get(TRANSACTIONS, {"search": bob.quickpe_id.lower()})) == [
        "75.25",
        "250.00",
    ]
    assert amounts(client.get(TRANSACTIONS, {"search": withdrawal.reference})) == ["300.00"]
    assert amounts(client.get(TRANSACTIONS, {"search": withdrawal.reference.lower()})) == ["300.00"]


@same_business_day
def test_date_filters_accept_dates(alice, ledger):
    client = client_for(alice)
    today = business_day()
    everything = ["75.25", "300.00", "120.50", "250.00", "1000.00"]

    assert amounts(client.get(TRANSACTIONS, {"created_after": today.isoformat()})) == everything
    tomorrow = (today + timedelta(days=1)).isoformat()
    yesterday = (today - timedelta(days=1)).isoformat()
    assert amounts(client.get(TRANSACTIONS, {"created_after": tomorrow})) == []
    # A date in created_before includes that whole day.
    assert amounts(client.get(TRANSACTIONS, {"created_before": today.isoformat()})) == everything
    assert amounts(client.get(TRANSACTIONS, {"created_before": yesterday})) == []
    both = {"created_after": yesterday, "created_before": today.isoformat()}
    assert amounts(client.get(TRANSACTIONS, both)) == everything


def test_date_filters_accept_datetimes_in_any_zone(alice, ledger):
    client = client_for(alice)
    pivot = ledger[2].created_at  # the transfer to Carol
    spellings = [
        api_time(pivot),
        pivot.astimezone(IST).isoformat(),
        pivot.astimezone(ZoneInfo("UTC")).replace(tzinfo=None).isoformat(),  # naive = UTC
    ]

    for moment in spellings:
        assert amounts(client.get(TRANSACTIONS, {"created_after": moment})) == [
            "75.25",
            "300.00",
            "120.50",
        ], moment
        # A datetime in created_before is exclusive.
        assert amounts(client.get(TRANSACTIONS, {"created_before": moment})) == [
            "250.00",
            "1000.00",
        ], moment


def test_the_list_holds_only_the_callers_lines(alice, bob, ledger):
    ids = {row["id"] for row in client_for(alice).get(TRANSACTIONS).json()["results"]}
    bob_ids = {row["id"] for row in client_for(bob).get(TRANSACTIONS).json()["results"]}

    assert ids == {entry.pk for entry in ledger}
    assert not ids & bob_ids
    assert LedgerEntry.objects.filter(pk__in=bob_ids).exclude(wallet__user=bob).count() == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_amount": "abc"}, "min_amount"),
        ({"min_amount": "-5"}, "min_amount"),
        ({"min_amount": "1e3"}, "min_amount"),
        ({"max_amount": "1.005"}, "max_amount"),
        ({"max_amount": "NaN"}, "max_amount"),
        ({"kind": "nope"}, "kind"),
        ({"kind": "DEPOSIT"}, "kind"),
        ({"direction": "up"}, "direction"),
        ({"category": "crypto"}, "category"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "22/11/2026"}, "created_after"),
        ({"created_after": "2026-13-45"}, "created_after"),
        ({"created_after": "2026-02-30"}, "created_after"),
        ({"created_after": "2026-01-01T25:00:00"}, "created_after"),
        ({"created_after": "2026-01-01T10:00:00+99:00"}, "created_after"),
        ({"created_before": "9999-12-31"}, "created_before"),
        ({"search": "a\x00b"}, "search"),
        ({"search": "x" * 101}, "search"),
        # Fields outside the contract's list are refused, never used to sort.
        ({"ordering": "wallet__user__password"}, "ordering"),
        ({"ordering": "amount,nope"}, "ordering"),
    ],
)
def test_invalid_filter_values_are_400(alice, ledger, params, field):
    body = assert_problem(client_for(alice).get(TRANSACTIONS, params), 400, "validation_error")

    assert [error_field for error_field, _ in field_codes(body)] == [field]


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "1970-01-01"]
)
def test_extreme_but_valid_dates_are_answered(alice, ledger, moment):
    after = amounts(client_for(alice).get(TRANSACTIONS, {"created_after": moment}))
    before = amounts(client_for(alice).get(TRANSACTIONS, {"created_before": moment}))

    assert sorted([*after, *before]) == sorted(["75.25", "300.00", "120.50", "250.00", "1000.00"])


def test_a_garbage_cursor_is_400_invalid_cursor(alice, ledger):
    # API.md: a cursor the server did not issue is 400 invalid_cursor (see test_hostile_input).
    response = client_for(alice).get(TRANSACTIONS, {"cursor": "garbage"})
    assert_problem(response, 400, "invalid_cursor")


def walk(client, first_url: str, params: dict) -> list[dict]:
    rows, url, pages = [], first_url, 0
    response = client.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        rows += body["results"]
        pages += 1
        assert pages < 50
        if body["next"] is None:
            return rows
        assert body["next"].startswith("http://testserver/api/v1/transactions?")
        response = client.get(body["next"])


@pytest.fixture
def many_deposits(alice):
    for rupees in range(1, 26):
        deposit_create(user=alice, amount=rupees * 100, description=f"Deposit {rupees}")
    return list(LedgerEntry.objects.filter(wallet__user=alice).order_by("-created_at", "-pk"))


def test_default_page_size_is_20_and_cursor_links_walk_every_line_once(alice, many_deposits):
    client = client_for(alice)

    first = client.get(TRANSACTIONS).json()
    assert len(first["results"]) == 20
    assert first["previous"] is None
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 5
    assert second["next"] is None
    back = client.get(second["previous"]).json()
    assert back["results"] == first["results"]

    rows = walk(client, TRANSACTIONS, {"page_size": 7})
    assert [row["id"] for row in rows] == [entry.pk for entry in many_deposits]
    assert len({row["id"] for row in rows}) == 25


def test_cursor_links_keep_the_ordering(alice, many_deposits):
    rows = walk(client_for(alice), TRANSACTIONS, {"page_size": 4, "ordering": "-amount"})

    assert [row["amount"] for row in rows] == [f"{rupees}.00" for rupees in range(25, 0, -1)]
    rows = walk(client_for(alice), TRANSACTIONS, {"page_size": 6, "ordering": "amount"})
    assert [row["amount"] for row in rows] == [f"{rupees}.00" for rupees in range(1, 26)]


def test_cursor_links_keep_the_filters(alice, many_deposits):
    rows = walk(client_for(alice), TRANSACTIONS, {"page_size": 3, "min_amount": "15"})

    assert [row["amount"] for row in rows] == [f"{rupees}.00" for rupees in range(25, 14, -1)]


@pytest.mark.parametrize("page_size", ["0", "-3", "abc", "101", "1000"])
def test_page_sizes_outside_1_to_100_are_400(alice, many_deposits, page_size):
    # The schema says 1 to 100; DRF alone would quietly fall back to the default.
    response = client_for(alice).get(TRANSACTIONS, {"page_size": page_size})

    body = assert_problem(response, 400, "validation_error")
    assert [field for field, _code in field_codes(body)] == ["page_size"]


@pytest.mark.parametrize(("page_size", "count"), [("", 20), ("1", 1)])
def test_page_size_empty_is_the_default(alice, many_deposits, page_size, count):
    response = client_for(alice).get(TRANSACTIONS, {"page_size": page_size})

    assert len(response.json()["results"]) == count


def test_page_size_is_capped_at_100(alice):
    for _ in range(101):
        deposit_create(user=alice, amount=1_00)
    client = client_for(alice)

    body = client.get(TRANSACTIONS, {"page_size": 100}).json()

    assert len(body["results"]) == 100
    assert body["next"] is not None
    assert len(client.get(body["next"]).json()["results"]) == 1
    assert len(client.get(TRANSACTIONS, {"page_size": 100}).json()["results"]) == 100


# --- money rate limit --------------------------------------------------------------------


def test_the_eleventh_deposit_in_a_minute_is_429_and_changes_nothing(settings, alice, bob):
    settings.QUICKPE_MONEY_RATE = "10/m"
    client = client_for(alice)
    for _ in range(10):
        created(send(client, DEPOSITS, {"amount": "1"}))
    before, keys = snapshot(), idempotency_keys()

    response = send(client, DEPOSITS, {"amount": "1"}, key="throttled")

    assert_problem(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert snapshot() == before
    # Refused before the view ran: the key is not spent.
    assert idempotency_keys() == keys
    # The limit is per user and per money endpoint.
    created(send(client, WITHDRAWALS, {"amount": "1"}))
    created(send(client_for(bob), DEPOSITS, {"amount": "1"}))


def test_the_eleventh_transfer_in_a_minute_is_429(settings, alice, bob):
    settings.QUICKPE_MONEY_RATE = "10/m"
    fund(alice, 100_00)
    client = client_for(alice)
    for _ in range(10):
        created(send(client, TRANSFERS, {"recipient": bob.quickpe_id, "amount": "1"}))
    before = snapshot()

    response = send(client, TRANSFERS, {"recipient": bob.quickpe_id, "amount": "1"})

    assert_problem(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert snapshot() == before
    assert (balance_of(alice), balance_of(bob)) == (90_00, 10_00)


@pytest.mark.parametrize(
    ("value", "rate"), [("10/m", "10/m"), ("off", None), (" OFF ", None), ("3/s", "3/s")]
)
def test_rate_settings_read_from_the_environment(monkeypatch, value, rate):
    monkeypatch.setenv("QUICKPE_MONEY_RATE", value)

    assert env_rate("QUICKPE_MONEY_RATE", "10/m") == rate


@pytest.mark.parametrize("value", ["ten", "10", "10/minute1", "-1/m", ""])
def test_a_bad_rate_setting_fails_loudly(monkeypatch, value):
    monkeypatch.setenv("QUICKPE_MONEY_RATE", value)

    with pytest.raises(ImproperlyConfigured):
        env_rate("QUICKPE_MONEY_RATE", "10/m")


def test_money_rate_limit_off_allows_more(alice):
    # conftest turns the limit off (None, what "off" in the environment gives): no 429 at all.
    client = client_for(alice)
    for _ in range(15):
        created(send(client, DEPOSITS, {"amount": "1"}))
    assert balance_of(alice) == 15_00


def test_the_ledger_always_adds_up(alice, bob, carol, ledger):
    for user in (alice, bob, carol):
        rows = walk(client_for(user), TRANSACTIONS, {"ordering": "created_at", "page_size": 2})
        running = 0
        for row in rows:
            paise = int(row["amount"].replace(".", ""))
            running += paise if row["direction"] == "credit" else -paise
            assert int(row["balance_after"].replace(".", "")) == running
        assert (
            f"{running // 100}.{running % 100:02d}"
            == client_for(user).get(WALLET).json()["balance"]
        )
