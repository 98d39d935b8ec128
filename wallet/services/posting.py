"""The one posting function: every movement of money (deposit, withdrawal, transfer, request
payment, reversal) writes its ledger legs, its wallets, its transfer and its audit entry here.

A piece of a change: it runs in the caller's unit of work and opens no transaction. The caller
has locked the wallets (``wallet.locks.wallets_lock``) and checked its rules; ``post`` applies
the amount to each locked wallet, so every line's ``balance_after`` is the wallet's balance
after it, and the ``balance >= 0`` constraint is the last line of defence if a rule was missed.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.db import connection, transaction

from audit.models import AuditEntry
from audit.services import audit_append
from quickpe import statements
from quickpe.db import insert_statement, keys_assign
from quickpe.metrics import movement_committed
from quickpe.money import format_paise
from quickpe.text import fit
from quickpe.unit_of_work import require_unit
from wallet.models import LedgerEntry, Transfer, User, Wallet
from wallet.references import new_reference
from wallet.representations import transaction_data


@dataclass(frozen=True)
class Leg:
    """One side of a movement: a locked wallet, which way the amount goes, and its line."""

    wallet: Wallet
    direction: str  # LedgerEntry.Direction
    kind: str  # LedgerEntry.Kind
    description: str  # composed from names and notes: fitted to the column
    counterparty: User | None = None


@dataclass(frozen=True)
class Posting:
    """What a movement wrote: a ledger line per leg (in the legs' order), the transfer it
    belongs to (if any) and its audit entry. ``entry`` and ``wallet`` are the first leg's:
    the line and wallet of the user who asked for the movement."""

    lines: tuple[LedgerEntry, ...]
    transfer: Transfer | None
    audit_entry: AuditEntry

    @property
    def entry(self) -> LedgerEntry:
        return self.lines[0]

    @property
    def wallet(self) -> Wallet:
        return self.lines[0].wallet

    def events(self, notices) -> dict[int, list]:
        """Each party's events, in the order clients apply them: the new balance, the new
        ledger line, then its notifications (``notices``: ``notifications_create``'s)."""
        events = {
            line.wallet.user_id: [
                (
                    "balance:update",
                    {"balance": format_paise(line.balance_after), "transaction_id": line.pk},
                ),
                ("transaction:new", {"transaction": transaction_data(line)}),
            ]
            for line in self.lines
        }
        for user_id, event in notices:
            events[user_id].append(event)
        return events


def post(
    *,
    amount: int,
    legs: list[Leg],
    category: str,
    now: datetime,
    actor: User,
    action: str,
    audit_data: Callable[[list[LedgerEntry]], dict],
    request,
    movement_kind: str,
    transfer: Transfer | None = None,
) -> Posting:
    """Apply ``amount`` to each leg's locked wallet, write the wallets, the transfer (if new)
    and one ledger line per leg in one statement, then the audit entry: ``action`` by
    ``actor`` on the transfer (else the first line), with ``audit_data(lines)``. Once the
    transaction commits, the movement is logged and counted as ``movement_kind``.
    Locks: the actor's audit chain head (the caller has locked the wallets)."""
    require_unit("a posting")
    lines = [
        LedgerEntry(
            wallet=leg.wallet,
            kind=leg.kind,
            direction=leg.direction,
            amount=amount,
            balance_after=_apply(leg.wallet, leg.direction, amount, now),
            category=category,
            description=fit(LedgerEntry, "description", leg.description),
            counterparty=leg.counterparty,
            transfer=transfer,
            reference=new_reference("TXN"),
            created_at=now,
        )
        for leg in legs
    ]
    _write([leg.wallet for leg in legs], lines, transfer)
    entity_type, entity_id = (
        ("transfer", transfer.pk) if transfer else ("ledger_entry", lines[0].pk)
    )
    audit_entry = audit_append(
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        data=audit_data(lines),
        request=request,
    )
    transaction.on_commit(
        partial(
            movement_committed,
            kind=movement_kind,
            reference=transfer.reference if transfer else lines[0].reference,
            amount=amount,
            wallets=[leg.wallet.pk for leg in legs],
        )
    )
    return Posting(lines=tuple(lines), transfer=transfer, audit_entry=audit_entry)


def _apply(wallet: Wallet, direction: str, amount: int, now: datetime) -> int:
    wallet.balance += amount if direction == LedgerEntry.Direction.CREDIT else -amount
    wallet.updated_at = now
    return wallet.balance


def _write(wallets: list[Wallet], lines: list[LedgerEntry], transfer: Transfer | None) -> None:
    rows = ", ".join([statements.POSTING_WALLET_VALUES] * len(wallets))
    ctes = [f"moved AS ({statements.POSTING_WALLETS_UPDATE.format(rows=rows)})"]
    params: list = []
    is_new_transfer = transfer is not None and transfer._state.adding
    if is_new_transfer:
        insert, params = insert_statement([transfer])
        ctes.insert(0, f"transfer AS ({insert} RETURNING id)")
    params += [
        value
        for wallet in wallets
        for value in (
            wallet.pk,
            wallet.balance,
            wallet.updated_at,
            wallet.limits_day,
            wallet.deposited_on_day,
            wallet.outgoing_on_day,
        )
    ]
    insert, line_params = insert_statement(
        lines, expressions={"transfer_id": "(SELECT id FROM transfer)"} if is_new_transfer else None
    )
    with connection.cursor() as cursor:
        cursor.execute(
            statements.POSTING.format(ctes=", ".join(ctes), lines_insert=insert),
            params + line_params,
        )
        keys = cursor.fetchall()
    keys_assign(lines, [key for key, _ in keys])
    if is_new_transfer:
        keys_assign([transfer], [keys[0][1]])
        for line in lines:
            line.transfer = transfer  # the id the database gave it, and the instance
