"""The hot path's hand-written SQL (quickpe/statements.py) and mini-ORM (quickpe/db.py), each
tested directly for what its header says it guarantees; and bench/transfer.sql, the raw-SQL
ceiling, checked against what an API transfer really runs."""

import json
import re
import threading
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.chain import canonical_around_seq, entry_hash
from audit.models import AuditChainHead, AuditEntry
from notifications.models import Event, EventStream, Notification
from quickpe import statements
from quickpe.db import fetch_models, insert_models, insert_statement, models_from_rows
from quickpe.unit_of_work import unit_of_work
from tests.conftest import client_for, fund, make_user
from tests.test_concurrency import run_threads
from wallet.idempotency import _advisory_lock_id
from wallet.locks import wallets_lock
from wallet.models import IdempotencyKey, LedgerEntry, User, Wallet

pytestmark = pytest.mark.django_db
TRANSFER_SQL = Path(__file__).resolve().parent.parent / "bench" / "transfer.sql"


def run(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# Idempotency guard and lookup ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_guard_is_held_by_one_transaction_and_the_row_is_found():
    alice = make_user("Alice")
    lock_id = _advisory_lock_id(alice.pk, "k")
    IdempotencyKey.objects.create(
        user=alice, key="k", fingerprint="f", response_status=201, response_body={"n": 1}
    )
    held, release, answers = threading.Event(), threading.Event(), []

    def holder(_index: int) -> None:
        with transaction.atomic():
            answers.append(run(statements.IDEMPOTENCY_GUARD_AND_LOOKUP, [lock_id, alice.pk, "k"]))
            held.set()
            release.wait(timeout=10)

    thread = threading.Thread(target=run_threads, args=(1, holder))
    thread.start()
    try:
        assert held.wait(timeout=10)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statements.IDEMPOTENCY_GUARD_AND_LOOKUP, [lock_id, alice.pk, "k"])
            columns = [column.name for column in cursor.description]
            [busy] = cursor.fetchall()
    finally:
        release.set()
        thread.join()
    [[first]] = answers
    assert first[0] is True and busy[0] is False  # one holder at a time, tried without waiting
    row = dict(zip(columns, busy, strict=True))
    assert (row["fingerprint"], row["response_body"]) == ("f", json.dumps({"n": 1}))
    with transaction.atomic():  # released with the holder's transaction
        [[free, *_]] = run(statements.IDEMPOTENCY_GUARD_AND_LOOKUP, [lock_id, alice.pk, "k"])
    assert free is True


def test_no_key_row_is_a_row_of_nulls_beside_the_guard(alice):
    [row] = run(statements.IDEMPOTENCY_GUARD_AND_LOOKUP, [1, alice.pk, "none"])
    assert row[0] is True and set(row[1:]) == {None}


# Payees and wallets ----------------------------------------------------------------------------


def test_only_active_users_are_found_as_payees(alice, bob):
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    found = fetch_models(User, statements.ACTIVE_USER_BY_EMAIL, [alice.email])
    assert [user.pk for user in found] == [alice.pk]
    assert fetch_models(User, statements.ACTIVE_USER_BY_QUICKPE_ID, [bob.quickpe_id]) == []


def test_by_email_only_a_verified_address_finds_its_payee(alice):
    alice.email_verified = False
    alice.save(update_fields=["email_verified"])
    assert fetch_models(User, statements.ACTIVE_USER_BY_EMAIL, [alice.email]) == []
    found = fetch_models(User, statements.ACTIVE_USER_BY_QUICKPE_ID, [alice.quickpe_id])
    assert [user.pk for user in found] == [alice.pk]


@pytest.mark.django_db(transaction=True)
def test_wallets_lock_in_key_order_without_blocking_lines_that_reference_them():
    alice, bob = make_user("Alice"), make_user("Bob")
    held, release, seen = threading.Event(), threading.Event(), {}

    @unit_of_work
    def hold() -> None:
        wallets = wallets_lock(user_ids=[bob.pk, alice.pk])
        seen["order"] = [wallet.pk for wallet in wallets.values()]
        held.set()
        release.wait(timeout=10)

    thread = threading.Thread(target=run_threads, args=(1, lambda _i: hold()))
    thread.start()
    try:
        assert held.wait(timeout=10)
        wallet_id = Wallet.objects.get(user=alice).pk
        with transaction.atomic():
            # A ledger line's foreign key check (FOR KEY SHARE) goes through at once...
            run("SELECT id FROM wallet_wallet WHERE id = %s FOR KEY SHARE NOWAIT", [wallet_id])
        # ...while another change's lock waits (NOWAIT: fails at once).
        with pytest.raises(Exception, match="could not obtain lock"), transaction.atomic():
            run("SELECT id FROM wallet_wallet WHERE id = %s FOR NO KEY UPDATE NOWAIT", [wallet_id])
    finally:
        release.set()
        thread.join()
    assert seen["order"] == sorted(seen["order"])


# Posting ---------------------------------------------------------------------------------------


def test_one_posting_statement_writes_the_wallets_the_transfer_and_its_lines(alice, bob):
    from wallet.services.money import transfer_create

    fund(alice, 10_00)
    with CaptureQueriesContext(connection) as queries:
        posting = transfer_create(sender=alice, recipient=bob, amount=3_00)
    [statement] = [q["sql"] for q in queries if "INSERT INTO wallet_ledgerentry" in q["sql"]]
    assert "INSERT INTO wallet_transfer" in statement and "UPDATE wallet_wallet" in statement
    debit, credit = posting.lines
    assert (debit.transfer_id, credit.transfer_id) == (posting.transfer.pk,) * 2
    assert LedgerEntry.objects.get(pk=debit.pk).balance_after == 7_00
    assert dict(Wallet.objects.filter(user__in=[alice, bob]).values_list("user", "balance")) == {
        alice.pk: 7_00,
        bob.pk: 3_00,
    }


# Audit append ----------------------------------------------------------------------------------


def test_an_audit_append_hashes_in_postgresql_exactly_as_the_chain_defines_it(alice):
    chain = 5
    head = AuditChainHead.objects.get(chain=chain)
    now = timezone.now()
    fields = {
        "chain": chain,
        "actor_id": alice.pk,
        "action": "test.append",
        "entity_type": "user",
        "entity_id": str(alice.pk),
        "data": {"note": "नमस्ते 👋", "amount": "1.00"},
        "ip": "",
        "user_agent": "",
        "created_at": now,
    }
    before, after = canonical_around_seq(**fields)
    [(seq, prev_hash, digest)] = run(
        statements.AUDIT_APPEND,
        [chain, alice.pk, "test.append", "user", str(alice.pk), json.dumps(fields["data"]), "", ""]
        + [now, before, after],
    )
    entry = AuditEntry.objects.get(seq=seq)
    assert prev_hash == head.last_hash and entry.hash == digest
    assert entry_hash(prev_hash=prev_hash, seq=seq, **fields) == digest
    head.refresh_from_db()
    assert (head.last_seq, head.last_hash) == (seq, digest)


def test_an_audit_append_to_a_missing_head_returns_no_row(alice):
    AuditChainHead.objects.filter(chain=3).delete()
    params = [3, None, "a", "b", "", "{}", "", "", timezone.now(), "", ""]
    assert run(statements.AUDIT_APPEND, params) == []


# Notifications and events ----------------------------------------------------------------------


def test_each_new_notification_carries_its_users_unread_count_after_it(alice, bob):
    Notification.objects.create(user=alice, kind="security", title="old")
    Notification.objects.create(user=alice, kind="security", title="read", read_at=timezone.now())
    added = [
        Notification(user=alice, kind="security", title="one"),
        Notification(user=bob, kind="security", title="two"),
        Notification(user=alice, kind="security", title="three"),
    ]
    insert, params = insert_statement(added)
    rows = run(statements.NOTIFICATIONS_INSERT.format(insert=insert), params)
    # Alice had one unread, and gets two more in this statement: each of hers says 3.
    assert [count for _id, count in rows] == [3, 1, 3]


def test_an_emit_numbers_each_users_events_without_gaps_in_the_order_given(alice, bob):
    EventStream.objects.update_or_create(user=bob, defaults={"last_seq": 7})
    EventStream.objects.filter(user=alice).delete()  # a user's first events make the stream
    Event.objects.filter(user__in=[alice, bob]).delete()
    events = [
        {"user_id": bob.pk, "before_last": 1, "type": "b:first", "data": {}},
        {"user_id": bob.pk, "before_last": 0, "type": "b:second", "data": {"x": 1}},
        {"user_id": alice.pk, "before_last": 0, "type": "a:only", "data": {}},
    ]
    last = dict(run(statements.EVENTS_EMIT, [json.dumps(events), timezone.now()]))
    assert last == {alice.pk: 1, bob.pk: 9}
    assert list(Event.objects.filter(user=bob).order_by("seq").values_list("seq", "type")) == [
        (8, "b:first"),
        (9, "b:second"),
    ]
    assert Event.objects.get(user=alice).seq == 1


# The mini-ORM ----------------------------------------------------------------------------------


def test_only_given_users_whose_stream_is_past_their_position_come_back(alice, bob):
    carol, dave = make_user("Carol"), make_user("Dave")  # every sign-up opens a stream
    EventStream.objects.filter(user=dave).delete()
    last = dict(EventStream.objects.values_list("user_id", "last_seq"))

    rows = run(
        statements.STREAMS_BEHIND,
        [json.dumps({alice.pk: last[alice.pk] - 1, bob.pk: last[bob.pk], dave.pk: 0})],
    )

    # Carol is behind too, but not asked about; Bob is not behind; Dave has no stream.
    assert rows == [(alice.pk, last[alice.pk])]
    assert last[carol.pk] > 0


def test_fetched_models_equal_the_orms_whatever_the_column_order(alice):
    [fetched] = fetch_models(User, "SELECT * FROM wallet_user WHERE id = %s", [alice.pk])
    orm = User.objects.get(pk=alice.pk)
    fields = [field.attname for field in User._meta.concrete_fields]
    assert [getattr(fetched, name) for name in fields] == [getattr(orm, name) for name in fields]
    assert not fetched._state.adding
    # Columns in another order, with extra ones: matched by name.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 42 AS extra, w.* FROM wallet_wallet AS w WHERE user_id = %s", [alice.pk]
        )
        columns = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    [wallet] = models_from_rows(Wallet, list(reversed(columns)), [row[::-1] for row in rows])
    assert wallet == Wallet.objects.get(user=alice) and wallet.balance == 0


def test_inserted_models_get_defaults_auto_now_json_and_their_keys(alice):
    before = timezone.now()
    [notification] = insert_models(
        [Notification(user=alice, kind="security", title="t", data={"नाम": [1, "two"]})]
    )
    stored = Notification.objects.get(pk=notification.pk)
    assert stored.data == {"नाम": [1, "two"]}
    assert stored.read_at is None and stored.created_at >= before
    assert not notification._state.adding


def test_an_insert_statement_takes_an_expression_for_a_column(alice):
    insert, params = insert_statement(
        [Notification(user=alice, kind="security", title="ignored")],
        expressions={"title": "'forty' || 'two'"},
    )
    [(key,)] = run(f"{insert} RETURNING id", params)
    assert Notification.objects.get(pk=key).title == "fortytwo"


# bench/transfer.sql against the API ------------------------------------------------------------

_TOKEN = re.compile(
    r"pg_try_advisory_xact_lock|RELEASE SAVEPOINT|SAVEPOINT|nextval|"
    r"INSERT INTO (\w+)|(?<!DO )(?<!KEY )UPDATE (\w+)|"
    r"FROM (\w+)(?:(?!FROM )[^;])*?FOR NO KEY UPDATE|FROM (\w+)(?:(?!FROM )[^;])*?FOR UPDATE"
)


def _tokens(sql: str) -> list[str]:
    """What a statement does, in order: locks (advisory, row: by table and mode), savepoints,
    sequence draws, inserts and updates by table. Reads are left out."""
    found = []
    for match in _TOKEN.finditer(" ".join(sql.split())):
        text = match.group(0)
        if match.group(1):
            found.append(f"insert {match.group(1)}")
        elif match.group(2):
            found.append(f"update {match.group(2)}")
        elif match.group(3):
            found.append(f"lock no key {match.group(3)}")
        elif match.group(4):
            found.append(f"lock {match.group(4)}")
        else:
            found.append(text.split()[0].lower() if "SAVEPOINT" in text else text)
    return found


def test_the_raw_sql_ceiling_runs_what_an_api_transfer_runs(alice, bob):
    """bench/transfer.sql and POST /transfers: the same locks, savepoints, sequence draws,
    inserts and updates, table by table, in the same order (the benchmark's ratio compares
    like with like)."""
    fund(alice, 10_00)
    api = client_for(alice)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(
            "/api/v1/transfers",
            {"recipient": bob.quickpe_id, "amount": "1.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="compare",
        )
    assert response.status_code == 201
    sqls = [query["sql"] for query in queries]
    start = next(i for i, sql in enumerate(sqls) if "pg_try_advisory_xact_lock" in sql)
    end = next(i for i, sql in enumerate(sqls) if "INSERT INTO wallet_idempotencykey" in sql)
    api_tokens = [token for sql in sqls[start : end + 1] for token in _tokens(sql)]

    script = re.sub(r"--[^\n]*", "", TRANSFER_SQL.read_text())
    body = script[script.index("BEGIN;") + len("BEGIN;") : script.index("COMMIT;")]
    statements_run = re.split(r";|\\gset", body)
    bench_tokens = [token for sql in statements_run for token in _tokens(sql)]
    assert bench_tokens == api_tokens
    assert api_tokens[:3] == ["pg_try_advisory_xact_lock", "savepoint", "lock no key wallet_wallet"]
