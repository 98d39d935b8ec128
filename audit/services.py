"""Appending to the audit log. Every state change calls ``audit_append`` inside its unit of
work (``quickpe.unit_of_work``), so the entry commits (or rolls back) with the change it
records."""

import json

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.chain import (
    MAX_CHAINS,
    VERIFY_COLUMNS,
    VerifyResult,
    canonical_around_seq,
    verify_entries,
)
from audit.masking import mask_data
from audit.models import AuditChainHead, AuditEntry
from quickpe import statements
from quickpe.formats import timestamp
from quickpe.request_meta import client_ip, user_agent
from quickpe.unit_of_work import claim_audit_chain


def chain_for(actor_id: int | None) -> int:
    """Entries of one actor share a chain; actor-less entries (failed sign-ins) use chain 0."""
    return (actor_id or 0) % settings.QUICKPE_AUDIT_CHAINS


def audit_append(
    *,
    actor,
    action: str,
    entity_type: str,
    entity_id: object = "",
    data: dict | None = None,
    request=None,
) -> AuditEntry:
    """Append one entry to the actor's chain.

    A piece of a change: runs in the caller's unit of work. Locks that chain's head row until
    the caller commits; callers take their business locks (wallets) first and append to one
    chain only, so the lock order is always business rows -> chain head (``wallet.locks``)
    and two writers cannot deadlock on it.
    """
    actor_id = actor.pk if actor is not None else None
    chain = chain_for(actor_id)
    claim_audit_chain(chain)
    fields = {
        "chain": chain,
        "actor_id": actor_id,
        "action": action,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "data": mask_data(data or {}),
        "ip": (client_ip(request) or "") if request is not None else "",
        "user_agent": user_agent(request) if request is not None else "",
        # Truncated to what PostgreSQL stores, so the hash recomputes from the stored row.
        "created_at": timezone.now(),
    }
    before, after = canonical_around_seq(**fields)
    with connection.cursor() as cursor:
        cursor.execute(
            statements.AUDIT_APPEND,
            [
                chain,
                actor_id,
                action,
                fields["entity_type"],
                fields["entity_id"],
                json.dumps(fields["data"]),
                fields["ip"],
                fields["user_agent"],
                fields["created_at"],
                before,
                after,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError(f"audit chain head {chain} is missing; run migrations")
    seq, prev_hash, digest = row
    entry = AuditEntry(**fields, seq=seq, prev_hash=prev_hash, hash=digest)
    entry._state.adding = False
    return entry


def entry_data(entry: AuditEntry) -> dict:
    """The public shape of an audit entry (REST ``/audit`` and the ``audit:new`` event)."""
    return {
        "seq": entry.seq,
        "action": entry.action,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "data": entry.data,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "created_at": timestamp(entry.created_at),
        "hash": entry.hash,
    }


def audit_verify(*, chunk_size: int = 5000) -> VerifyResult:
    """Verify every chain, streaming entries through a server-side cursor (bounded memory)."""
    owns_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if owns_transaction:
            # One snapshot for heads and entries, so concurrent appends cannot look like
            # tampering. (Inside a caller's transaction, the caller's isolation applies.)
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        heads = {
            head.chain: (head.last_seq, head.last_hash) for head in AuditChainHead.objects.all()
        }
        rows = AuditEntry.objects.order_by("seq").values_list(*VERIFY_COLUMNS)
        return verify_entries(rows.iterator(chunk_size=chunk_size), heads, chains=MAX_CHAINS)
