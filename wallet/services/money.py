"""Money movements: deposits, withdrawals and transfers.

Every function here changes balances only on wallet rows it has locked with
``wallets_lock`` (SELECT ... FOR UPDATE in primary-key order, one query), writes one ledger
line per wallet touched and one audit entry, all inside the caller's transaction. Callers own
the outermost transaction (``wallet.idempotency`` wraps it with the idempotency key and the
retry on deadlock/serialization failure), which is why these use ``atomic()`` and not
``atomic(durable=True)``: the key must commit in the same transaction as the movement.
They also pass ``savepoint=False``: a refusal here rolls back the caller's whole transaction
(``wallet.idempotency`` then stores the refusal in a new one), and a savepoint would only cost
two round trips on every movement.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import audit_append
from notifications.models import Notification
from notifications.services import events_emit, notifications_create
from quickpe.business_day import business_day
from quickpe.db import fetch_models, insert_statement, keys_assign
from quickpe.errors import InsufficientFunds, RecipientNotFound, SelfTransfer, WalletFrozen
from quickpe.metrics import movement_committed
from quickpe.money import format_inr, format_paise
from wallet import limits
from wallet.models import Category, LedgerEntry, Transfer, User, Wallet
from wallet.references import new_reference
from wallet.representations import transaction_data

# Hand-written SQL for the statements every movement runs (see quickpe.db.fetch_models).
_LOCK_WALLETS = "SELECT * FROM wallet_wallet WHERE user_id IN ({}) ORDER BY id FOR UPDATE"
_ACTIVE_USER_BY_EMAIL = "SELECT * FROM wallet_user WHERE email = %s AND is_active"
_ACTIVE_USER_BY_QUICKPE_ID = "SELECT * FROM wallet_user WHERE quickpe_id = %s AND is_active"


@dataclass(frozen=True)
class Movement:
    entry: LedgerEntry
    wallet: Wallet
    transfer: Transfer | None = None


def wallets_lock(*, user_ids: list[int]) -> dict[int, Wallet]:
    """Lock the wallets of ``user_ids`` in primary-key order, in one query, and return them
    keyed by user id. One fixed order means two opposite transfers (A->B, B->A) queue on the
    same first row instead of deadlocking."""
    # One placeholder per id: an array parameter costs psycopg more to quote than the query.
    placeholders = ", ".join(["%s"] * len(user_ids))
    wallets = fetch_models(Wallet, _LOCK_WALLETS.format(placeholders), list(user_ids))
    return {wallet.user_id: wallet for wallet in wallets}


def _line(
    wallet: Wallet,
    *,
    kind: str,
    amount: int,
    now,
    category: str = Category.TRANSFER,
    description: str = "",
    counterparty: User | None = None,
    transfer: Transfer | None = None,
) -> LedgerEntry:
    """Apply ``amount`` to a locked wallet in memory and return its (unsaved) ledger line,
    with ``balance_after``. ``_write`` then saves wallets and lines together."""
    is_credit = kind in (LedgerEntry.Kind.DEPOSIT, LedgerEntry.Kind.TRANSFER_IN)
    wallet.balance += amount if is_credit else -amount
    wallet.updated_at = now
    return LedgerEntry(
        wallet=wallet,
        kind=kind,
        direction=LedgerEntry.Direction.CREDIT if is_credit else LedgerEntry.Direction.DEBIT,
        amount=amount,
        balance_after=wallet.balance,
        category=category,
        description=description,
        counterparty=counterparty,
        transfer=transfer,
        reference=new_reference("TXN"),
        created_at=now,
    )


def _write(
    wallets: list[Wallet],
    lines: list[LedgerEntry],
    *,
    kind: str | None = None,
    transfer: Transfer | None = None,
) -> list[LedgerEntry]:
    """Save the locked wallets, their ledger lines and the (unsaved) ``transfer`` they belong
    to, if any, in one statement. Once the transaction commits, the movement is logged and
    counted as ``kind`` (by default the kind of its first line: deposit, withdrawal, reversal)."""
    rows = ", ".join(
        ["(%s::bigint, %s::bigint, %s::timestamptz, %s::date, %s::bigint, %s::bigint)"]
        * len(wallets)
    )
    # Django's bulk_update builds a CASE per field and row, which costs more CPU than the round
    # trip it saves; and the UPDATE, the transfer and the lines share one round trip as CTEs
    # (each runs once, referenced or not). Only placeholders are interpolated.
    update = (
        "UPDATE wallet_wallet AS w SET balance = v.balance, updated_at = v.updated_at,"  # noqa: S608
        " limits_day = v.limits_day, deposited_on_day = v.deposited, outgoing_on_day = v.outgoing"
        f" FROM (VALUES {rows}) AS v(id, balance, updated_at, limits_day, deposited, outgoing)"
        " WHERE w.id = v.id"
    )
    ctes, params = [f"moved AS ({update})"], []
    if transfer is not None:
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
        lines, expressions={"transfer_id": "(SELECT id FROM transfer)"} if transfer else None
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {', '.join(ctes)} {insert} RETURNING id, transfer_id", params + line_params
        )
        keys = cursor.fetchall()
    saved = keys_assign(lines, [key for key, _ in keys])
    if transfer is not None:
        keys_assign([transfer], [keys[0][1]])
        for line in saved:
            line.transfer = transfer  # the id the database gave it, and the instance
    first = saved[0]
    transaction.on_commit(
        partial(
            movement_committed,
            kind=kind or first.kind,
            reference=first.transfer.reference if first.transfer else first.reference,
            amount=first.amount,
            wallets=[wallet.pk for wallet in wallets],
        )
    )
    return saved


def _movement_events(notices, *lines: tuple[int, LedgerEntry]) -> dict[int, list]:
    """Each party's events for a movement, in the order clients apply them: the new balance,
    the new ledger line, then the notification."""
    events = {
        user_id: [
            (
                "balance:update",
                {"balance": format_paise(entry.balance_after), "transaction_id": entry.pk},
            ),
            ("transaction:new", {"transaction": transaction_data(entry)}),
        ]
        for user_id, entry in lines
    }
    for user_id, event in notices:
        events[user_id].append(event)
    return events


def _ensure_active(*wallets: Wallet) -> None:
    if any(wallet.is_frozen for wallet in wallets):
        raise WalletFrozen()


def _own_wallet_movement(
    *,
    user: User,
    kind: str,
    amount: int,
    description: str,
    rules: Callable[[Wallet, date], None],
    request,
    action: str = "",
) -> Movement:
    """Money in or out of one user's own wallet: lock it, refuse if frozen, apply ``rules``
    (the movement's limits and counters) to the locked row, write the line, audit."""
    limits.check_amount(amount)
    with transaction.atomic(savepoint=False):
        wallet = wallets_lock(user_ids=[user.pk])[user.pk]
        _ensure_active(wallet)
        now = timezone.now()
        rules(wallet, business_day(now))
        line = _line(
            wallet,
            kind=kind,
            amount=amount,
            now=now,
            category=Category.OTHER,
            description=description,
        )
        [entry] = _write([wallet], [line])
        audit_entry = audit_append(
            actor=user,
            action=action or f"wallet.{kind}",
            entity_type="ledger_entry",
            entity_id=entry.pk,
            data={
                "reference": entry.reference,
                "amount": format_paise(amount),
                "balance_after": format_paise(entry.balance_after),
            },
            request=request,
        )
        verb = "Added" if kind == LedgerEntry.Kind.DEPOSIT else "Withdrew"
        notices = notifications_create(
            [
                Notification(
                    user=user,
                    kind=kind,
                    title=f"{verb} {format_inr(amount)}",
                    body=f"Balance {format_inr(wallet.balance)}",
                    data={"transaction_id": entry.pk, "reference": entry.reference},
                )
            ]
        )
        events_emit(_movement_events(notices, (user.pk, entry)), audit=[audit_entry])
    return Movement(entry=entry, wallet=wallet)


def deposit_create(*, user: User, amount: int, description: str = "", request=None) -> Movement:
    """Add money to the user's wallet. Keeps: per-transaction and daily deposit limits, the
    balance cap, no movement on a frozen wallet. Locks: the user's wallet."""

    def rules(wallet: Wallet, today: date) -> None:
        limits.check_deposit(wallet, amount, today)
        limits.record(wallet, today, deposited=amount)

    return _own_wallet_movement(
        user=user,
        kind=LedgerEntry.Kind.DEPOSIT,
        amount=amount,
        description=description or "Added money",
        rules=rules,
        request=request,
    )


def withdrawal_create(*, user: User, amount: int, description: str = "", request=None) -> Movement:
    """Take money out of the user's wallet. Keeps: balance >= 0, per-transaction and daily
    outgoing limits, no movement on a frozen wallet. Locks: the user's wallet."""

    def rules(wallet: Wallet, today: date) -> None:
        limits.check_outgoing(wallet, amount, today)
        if wallet.balance < amount:
            raise InsufficientFunds()
        limits.record(wallet, today, outgoing=amount)

    return _own_wallet_movement(
        user=user,
        kind=LedgerEntry.Kind.WITHDRAWAL,
        amount=amount,
        description=description or "Withdrawal to bank",
        rules=rules,
        request=request,
    )


SIGNUP_BONUS_ACTION = "wallet.signup_bonus"


class _AlreadyCredited(Exception):
    pass


def signup_bonus_credit(*, user: User) -> Movement | None:
    """Credit the configured signup bonus: an ordinary deposit (limits, events, notification),
    audited as ``wallet.signup_bonus``. At most once per user, however often it is called (a
    Celery redelivery): the audit log, append-only, is checked under the wallet lock."""
    amount = settings.QUICKPE_SIGNUP_BONUS
    if not amount:
        return None

    def rules(wallet: Wallet, today: date) -> None:
        if AuditEntry.objects.filter(actor_id=user.pk, action=SIGNUP_BONUS_ACTION).exists():
            raise _AlreadyCredited
        limits.check_deposit(wallet, amount, today)
        limits.record(wallet, today, deposited=amount)

    try:
        # Its own savepoint: "already credited" is an expected outcome, and must not leave a
        # caller's transaction unusable (the movement itself runs without one).
        with transaction.atomic():
            return _own_wallet_movement(
                user=user,
                kind=LedgerEntry.Kind.DEPOSIT,
                amount=amount,
                description="Welcome bonus",
                rules=rules,
                request=None,
                action=SIGNUP_BONUS_ACTION,
            )
    except _AlreadyCredited:
        return None


def active_user_find(*, identifier: str) -> User | None:
    """A QuickPe ID (any case) or an email address -> that active user, or None."""
    identifier = identifier.strip()
    if "@" in identifier:
        found = fetch_models(User, _ACTIVE_USER_BY_EMAIL, [identifier.lower()])
    else:
        found = fetch_models(User, _ACTIVE_USER_BY_QUICKPE_ID, [identifier.upper()])
    return found[0] if found else None


def recipient_resolve(*, identifier: str) -> User:
    recipient = active_user_find(identifier=identifier)
    if recipient is None:
        raise RecipientNotFound()
    return recipient


@dataclass(frozen=True)
class AppliedTransfer:
    """A transfer written but not yet announced: the caller adds notifications and emits."""

    movement: Movement
    credit: LedgerEntry
    audit_entry: AuditEntry

    def events(self, notices) -> dict[int, list]:
        transfer = self.movement.transfer
        return _movement_events(
            notices,
            (transfer.sender_id, self.movement.entry),
            (transfer.recipient_id, self.credit),
        )


def transfer_apply(
    *,
    sender: User,
    recipient: User,
    amount: int,
    note: str = "",
    category: str = Category.TRANSFER,
    request=None,
    movement_kind: str = "transfer",
) -> AppliedTransfer:
    """The money part of a transfer, for ``transfer_create`` and services that pay something
    with a transfer (money requests): both balances, both ledger lines and the audit entry, in
    the caller's transaction. Emits nothing, so the caller announces its whole change at once.
    Keeps: no self-transfer, neither wallet frozen, sender balance >= 0, per-transaction and
    daily outgoing limits, the recipient's balance cap. Locks: both wallets, in primary-key
    order, in one query, then the sender's audit chain head. ``movement_kind`` names it in logs
    and metrics, as the caller's refusals are named (``money_request_pay``)."""
    assert connection.in_atomic_block, "a transfer commits with the change it belongs to"
    if sender.pk == recipient.pk:
        raise SelfTransfer()
    limits.check_amount(amount)
    wallets = wallets_lock(user_ids=[sender.pk, recipient.pk])
    source, target = wallets[sender.pk], wallets[recipient.pk]
    _ensure_active(source, target)
    now = timezone.now()
    today = business_day(now)
    limits.check_outgoing(source, amount, today)
    if source.balance < amount:
        raise InsufficientFunds()
    limits.check_balance_cap(target, amount, is_own_wallet=False)
    transfer = Transfer(
        reference=new_reference("TRF"),
        sender=sender,
        recipient=recipient,
        amount=amount,
        note=note,
        category=category,
        created_at=now,
    )
    limits.record(source, today, outgoing=amount)
    debit, credit = _write(
        [source, target],
        [
            _line(
                source,
                kind=LedgerEntry.Kind.TRANSFER_OUT,
                amount=amount,
                now=now,
                category=category,
                description=note or f"To {recipient.get_full_name()}",
                counterparty=recipient,
                transfer=transfer,
            ),
            _line(
                target,
                kind=LedgerEntry.Kind.TRANSFER_IN,
                amount=amount,
                now=now,
                category=category,
                description=note or f"From {sender.get_full_name()}",
                counterparty=sender,
                transfer=transfer,
            ),
        ],
        kind=movement_kind,
        transfer=transfer,
    )
    audit_entry = audit_append(
        actor=sender,
        action="transfer.create",
        entity_type="transfer",
        entity_id=transfer.pk,
        data={
            "reference": transfer.reference,
            "amount": format_paise(amount),
            "recipient": recipient.quickpe_id,
            "category": category,
        },
        request=request,
    )
    return AppliedTransfer(
        movement=Movement(entry=debit, wallet=source, transfer=transfer),
        credit=credit,
        audit_entry=audit_entry,
    )


def transfer_sent_notification(transfer: Transfer) -> Notification:
    return Notification(
        user=transfer.sender,
        kind=Notification.Kind.TRANSFER_SENT,
        title=f"You sent {format_inr(transfer.amount)} to {transfer.recipient.get_full_name()}",
        body=transfer.note,
        data={"transfer_id": transfer.pk, "reference": transfer.reference},
    )


def transfer_create(
    *,
    sender: User,
    recipient: User,
    amount: int,
    note: str = "",
    category: str = Category.TRANSFER,
    request=None,
) -> Movement:
    """Move ``amount`` from sender to recipient: both balances, both ledger lines, the audit
    entry, both notifications and both parties' events commit together or not at all. Keeps
    and locks what ``transfer_apply`` does."""
    with transaction.atomic(savepoint=False):
        applied = transfer_apply(
            sender=sender,
            recipient=recipient,
            amount=amount,
            note=note,
            category=category,
            request=request,
        )
        transfer = applied.movement.transfer
        notices = notifications_create(
            [
                transfer_sent_notification(transfer),
                Notification(
                    user=recipient,
                    kind=Notification.Kind.TRANSFER_RECEIVED,
                    title=f"{sender.get_full_name()} sent you {format_inr(amount)}",
                    body=note,
                    data={"transfer_id": transfer.pk, "reference": transfer.reference},
                ),
            ]
        )
        events_emit(applied.events(notices), audit=[applied.audit_entry])
    return applied.movement


def wallet_set_status(*, wallet: Wallet, status: str, actor: User, reason: str = "", request=None):
    """Freeze or unfreeze a wallet (support staff). Locks: that wallet."""
    with transaction.atomic(savepoint=False):
        locked = wallets_lock(user_ids=[wallet.user_id])[wallet.user_id]
        if locked.status == status:
            return locked
        locked.status = status
        locked.updated_at = timezone.now()
        locked.save(update_fields=["status", "updated_at"])
        audit_entry = audit_append(
            actor=actor,
            action="wallet.freeze" if status == Wallet.Status.FROZEN else "wallet.unfreeze",
            entity_type="wallet",
            entity_id=locked.pk,
            data={"quickpe_id": wallet.user.quickpe_id, "reason": reason},
            request=request,
        )
        events_emit({}, audit=[audit_entry])
    return locked
