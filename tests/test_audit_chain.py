"""The audit log is append-only in the database, and verification catches any tampering done
with the triggers disabled: an edit, a deletion (middle or tail), an insertion, a reorder."""

import hashlib
import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit.chain import VERIFY_COLUMNS, canonical_around_seq, entry_hash
from audit.models import AuditChainHead, AuditEntry
from audit.services import audit_verify, chain_for
from tests.conftest import client_for, fund, make_user
from tests.test_admin import staff_in
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(settings):
    """A few users on different chains, each with several entries."""
    settings.QUICKPE_AUDIT_CHAINS = 4
    users = [make_user(f"Audited{i}") for i in range(4)]
    for user in users:
        fund(user, 100_00)
        fund(user, 50_00)
    assert len({chain_for(user.pk) for user in users}) > 1
    assert audit_verify().valid
    return users


def run_verify() -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, err.getvalue()
    return 0, out.getvalue()


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


class TriggersOff:
    """Tampering as a database superuser would: with the append-only triggers disabled."""

    def __enter__(self):
        sql("SET session_replication_role = replica")  # superuser: user triggers stop firing

    def __exit__(self, *exc):
        sql("SET session_replication_role = origin")


def entries_of_chain(chain: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(chain=chain).order_by("seq"))


def test_an_untouched_chain_verifies(history):
    code, output = run_verify()
    assert code == 0
    assert f"{AuditEntry.objects.count()} entries" in output


def test_update_and_delete_are_refused_by_the_database(history):
    entry = AuditEntry.objects.order_by("seq").first()
    with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(action="forged")
    with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    line = LedgerEntry.objects.first()
    with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
        LedgerEntry.objects.filter(pk=line.pk).update(amount=1)
    with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
        LedgerEntry.objects.filter(pk=line.pk).delete()


def test_an_edit_is_named(history):
    target = AuditEntry.objects.filter(action="wallet.deposit").order_by("seq")[2]
    with TriggersOff():
        sql(
            """UPDATE audit_auditentry SET data = jsonb_set(data, '{amount}', '"1.00"')
               WHERE seq = %s""",
            [target.seq],
        )
    code, message = run_verify()
    assert code == 1
    assert f"#{target.seq}" in message and "altered" in message


def test_a_deletion_in_the_middle_is_named_at_the_next_entry_of_its_chain(history):
    chain = chain_for(history[0].pk)
    victim, follower = entries_of_chain(chain)[1:3]
    with TriggersOff():
        sql("DELETE FROM audit_auditentry WHERE seq = %s", [victim.seq])
    code, message = run_verify()
    assert code == 1
    assert f"#{follower.seq}" in message


def test_a_deletion_at_the_end_of_a_chain_is_caught_by_its_head(history):
    chain = chain_for(history[0].pk)
    last = entries_of_chain(chain)[-1]
    with TriggersOff():
        sql("DELETE FROM audit_auditentry WHERE seq = %s", [last.seq])
    code, message = run_verify()
    assert code == 1
    assert f"#{last.seq}" in message and "head" in message


def _forge(chain: int, seq: int, before: AuditEntry, *, correct_hash: bool) -> None:
    fields = {
        "seq": seq,
        "chain": chain,
        "actor_id": None,
        "action": "wallet.deposit",
        "entity_type": "ledger_entry",
        "entity_id": "999",
        "data": {"amount": "5000.00"},
        "ip": "",
        "user_agent": "",
        "prev_hash": before.hash,
        "created_at": before.created_at,
    }
    digest = entry_hash(**fields) if correct_hash else "f" * 64
    with TriggersOff():
        AuditEntry.objects.bulk_create([AuditEntry(**fields, hash=digest)])


@pytest.fixture
def gap(history):
    """Free seq values between existing entries (as rolled-back transactions leave)."""
    user = history[0]
    sql(
        "SELECT setval(pg_get_serial_sequence('audit_auditentry', 'seq'), "
        "(SELECT max(seq) FROM audit_auditentry) + 5)"
    )
    fund(user, 1_00)
    chain = chain_for(user.pk)
    after = entries_of_chain(chain)[-1]
    before = entries_of_chain(chain)[-2]
    return chain, before, after


def test_an_inserted_entry_with_a_made_up_hash_is_named(gap):
    chain, before, after = gap
    forged_seq = after.seq - 2
    _forge(chain, forged_seq, before, correct_hash=False)
    code, message = run_verify()
    assert code == 1
    assert f"#{forged_seq}" in message


def test_an_inserted_entry_with_a_recomputed_hash_breaks_the_next_link(gap):
    chain, before, after = gap
    _forge(chain, after.seq - 2, before, correct_hash=True)
    code, message = run_verify()
    assert code == 1
    assert f"#{after.seq}" in message


def test_a_reorder_is_named(history):
    chain = chain_for(history[1].pk)
    first, second = entries_of_chain(chain)[1:3]
    with TriggersOff():
        # Swap the two entries' positions (seq) through a free value.
        sql("UPDATE audit_auditentry SET seq = -1 WHERE seq = %s", [first.seq])
        sql("UPDATE audit_auditentry SET seq = %s WHERE seq = %s", [first.seq, second.seq])
        sql("UPDATE audit_auditentry SET seq = %s WHERE seq = -1", [second.seq])
    code, message = run_verify()
    assert code == 1
    assert f"#{first.seq}" in message


def test_a_rewritten_head_is_caught(history):
    AuditChainHead.objects.filter(chain=chain_for(history[2].pk)).update(last_hash="0" * 64)
    code, message = run_verify()
    assert code == 1
    assert "head" in message


def test_verify_endpoint_is_for_compliance_and_reports_the_first_bad_entry(history):
    staff, _browser = staff_in("compliance")
    assert client_for(history[0]).get("/api/v1/audit/verify").status_code == 403
    response = client_for(staff).get("/api/v1/audit/verify")
    body = response.json()
    assert response.status_code == 200
    assert body["valid"] is True and body["first_invalid_seq"] is None
    last = AuditEntry.objects.order_by("-seq").first()
    assert body["head"] == {"seq": last.seq, "hash": last.hash}
    assert body["checked"] == AuditEntry.objects.count()

    target = AuditEntry.objects.order_by("seq")[3]
    with TriggersOff():
        sql("UPDATE audit_auditentry SET ip = '10.0.0.1' WHERE seq = %s", [target.seq])
    body = client_for(staff).get("/api/v1/audit/verify").json()
    assert body["valid"] is False
    assert body["first_invalid_seq"] == target.seq


def test_entries_record_actor_request_and_masked_pii(api):
    response = api.post(
        "/api/v1/auth/signup",
        {
            "email": "Priya.Nair@Example.com",
            "password": "a-long-test-passphrase",
            "first_name": "Priya",
            "last_name": "Nair",
        },
        format="json",
        HTTP_USER_AGENT="pytest-browser/1.0",
        REMOTE_ADDR="203.0.113.7",
    )
    assert response.status_code == 201
    entry = AuditEntry.objects.get(action="user.signup", actor__email="priya.nair@example.com")
    assert entry.data["email"] == "pr***@example.com"
    assert "priya.nair@example.com" not in str(entry.data)
    assert (entry.ip, entry.user_agent) == ("203.0.113.7", "pytest-browser/1.0")
    assert len(entry.hash) == 64 and entry.prev_hash


def test_a_user_sees_only_their_own_audit_entries(alice, bob):
    fund(alice, 10_00)
    fund(bob, 20_00)
    body = client_for(alice).get("/api/v1/audit").json()
    actions = [item["action"] for item in body["results"]]
    assert actions == ["wallet.deposit", "user.signup"]
    seqs = {item["seq"] for item in body["results"]}
    assert seqs == set(AuditEntry.objects.filter(actor=alice).values_list("seq", flat=True))


def test_a_whole_chain_removed_with_its_head_is_caught(history):
    chain = chain_for(history[0].pk)
    with TriggersOff():
        sql("DELETE FROM audit_auditentry WHERE chain = %s", [chain])
    AuditChainHead.objects.filter(chain=chain).delete()
    code, message = run_verify()
    assert code == 1
    assert "missing" in message


@pytest.mark.parametrize(
    "data, user_agent",
    [
        ({"amount": "1.00", "note": "chai ☕ for Priyā", "nested": {"seq": 7, "z": [1, None]}}, ""),
        ({}, 'Mozilla/5.0 "quoted" \\ back\tslash \u2028 line'),
        ({"seq": "x", "user_agent": "inside data"}, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
    ],
)
def test_the_hash_format_is_the_canonical_json_of_the_whole_entry(data, user_agent):
    """Entries already stored were hashed over ``json.dumps(entry, sort_keys=True, ...)``; the
    two halves PostgreSQL joins around the seq must give exactly that text, or every existing
    chain would stop verifying."""
    fields = {
        "chain": 3,
        "actor_id": 42,
        "action": "transfer.create",
        "entity_type": "transfer",
        "entity_id": "17",
        "data": data,
        "ip": "2001:db8::1",
        "user_agent": user_agent,
        "created_at": datetime(2026, 12, 7, 10, 30, 1, 123456, tzinfo=UTC),
    }
    whole = {**fields, "seq": 12345, "actor": fields["actor_id"]}
    del whole["actor_id"]
    whole["created_at"] = fields["created_at"].isoformat()
    canonical = json.dumps(whole, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    before, after = canonical_around_seq(**fields)
    assert before + "12345" + after == canonical
    prev = "ab" * 32
    assert (
        entry_hash(prev_hash=prev, seq=12345, **fields)
        == hashlib.sha256((prev + canonical).encode()).hexdigest()
    )


def test_postgresql_hashes_an_appended_entry_as_python_does(alice):
    """audit_append lets the database hash; the verifier recomputes in Python."""
    fund(alice, 1_00)
    entry = AuditEntry.objects.filter(actor_id=alice.pk).latest("seq")
    fields = {column: getattr(entry, column) for column in VERIFY_COLUMNS if column != "hash"}
    assert entry.hash == entry_hash(**fields)
