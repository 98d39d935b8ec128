"""Money movements: deposits, withdrawals and transfers.

Each is a unit of work: it locks the wallets it moves money between (``wallet.locks``), checks
its rules on the locked rows, and posts through ``posting.post`` (balances, ledger lines, the
transfer, the audit entry), then writes its notifications and emits every party's events, all
in one transaction. Called by the idempotency wrapper, it joins the key's transaction.
"""

from collections.abc import Callable
from datetime import date

from django.conf import settings
from django.utils import timezone

from audit.models import AuditEntry
from notifications.models import Notification
from notifications.services import events_emit, notifications_create
from quickpe import statements
from quickpe.business_day import business_day
from quickpe.db import fetch_models
from quickpe.errors import InsufficientFunds, RecipientNotFound, SelfTransfer, WalletFrozen
from quickpe.money import format_inr, format_paise
from quickpe.text import fit
from quickpe.unit_of_work import require_unit, unit_of_work
from wallet import limits
from wallet.locks import wallets_lock
from wallet.models import Category, LedgerEntry, Transfer, User, Wallet
from wallet.references import new_reference
from wallet.services.posting import Leg, Posting, post


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
) -> Posting:
    """Money in or out of one user's own wallet: lock it, refuse if frozen, apply ``rules``
    (the movement's limits and counters) to the locked row, post the line, notify, emit."""
    limits.check_amount(amount)
    wallet = wallets_lock(user_ids=[user.pk])[user.pk]
    _ensure_active(wallet)
    now = timezone.now()
    rules(wallet, business_day(now))
    is_deposit = kind == LedgerEntry.Kind.DEPOSIT
    direction = LedgerEntry.Direction.CREDIT if is_deposit else LedgerEntry.Direction.DEBIT
    posting = post(
        amount=amount,
        legs=[Leg(wallet=wallet, direction=direction, kind=kind, description=description)],
        category=Category.OTHER,
        now=now,
        actor=user,
        action=action or f"wallet.{kind}",
        audit_data=lambda lines: {
            "reference": lines[0].reference,
            "amount": format_paise(amount),
            "balance_after": format_paise(lines[0].balance_after),
        },
        request=request,
        movement_kind=kind,
    )
    notices = notifications_create(
        [
            Notification(
                user=user,
                kind=kind,
                title=f"{'Added' if is_deposit else 'Withdrew'} {format_inr(amount)}",
                body=f"Balance {format_inr(wallet.balance)}",
                data={"transaction_id": posting.entry.pk, "reference": posting.entry.reference},
            )
        ]
    )
    events_emit(posting.events(notices), audit=[posting.audit_entry])
    return posting


@unit_of_work
def deposit_create(*, user: User, amount: int, description: str = "", request=None) -> Posting:
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


@unit_of_work
def withdrawal_create(*, user: User, amount: int, description: str = "", request=None) -> Posting:
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


@unit_of_work
def _signup_bonus_post(*, user: User, amount: int) -> Posting:
    def rules(wallet: Wallet, today: date) -> None:
        if AuditEntry.objects.filter(actor_id=user.pk, action=SIGNUP_BONUS_ACTION).exists():
            raise _AlreadyCredited
        limits.check_deposit(wallet, amount, today)
        limits.record(wallet, today, deposited=amount)

    return _own_wallet_movement(
        user=user,
        kind=LedgerEntry.Kind.DEPOSIT,
        amount=amount,
        description="Welcome bonus",
        rules=rules,
        request=None,
        action=SIGNUP_BONUS_ACTION,
    )


def signup_bonus_credit(*, user: User) -> Posting | None:
    """Credit the configured signup bonus: an ordinary deposit (limits, events, notification),
    audited as ``wallet.signup_bonus``. At most once per user, however often it is called (a
    Celery redelivery): the audit log, append-only, is checked under the wallet lock."""
    amount = settings.QUICKPE_SIGNUP_BONUS
    if not amount:
        return None
    try:
        return _signup_bonus_post(user=user, amount=amount)
    except _AlreadyCredited:
        return None


def active_user_find(*, identifier: str) -> User | None:
    """A QuickPe ID (any case) or a verified email address -> that active user, or None: an
    address its owner has not verified finds no one, exactly as an unknown one."""
    identifier = identifier.strip()
    if "@" in identifier:
        found = fetch_models(User, statements.ACTIVE_USER_BY_EMAIL, [identifier.lower()])
    else:
        found = fetch_models(User, statements.ACTIVE_USER_BY_QUICKPE_ID, [identifier.upper()])
    return found[0] if found else None


def recipient_resolve(*, identifier: str) -> User:
    recipient = active_user_find(identifier=identifier)
    if recipient is None:
        raise RecipientNotFound()
    return recipient


def transfer_post(
    *,
    sender: User,
    recipient: User,
    amount: int,
    note: str = "",
    category: str = Category.TRANSFER,
    request=None,
    movement_kind: str = "transfer",
) -> Posting:
    """The money part of a transfer, for ``transfer_create`` and changes that pay something
    with a transfer (``money_request_pay``): a piece of the caller's unit of work, which adds
    its notifications and emits. Keeps: no self-transfer, neither wallet frozen, sender
    balance >= 0, per-transaction and daily outgoing limits, the recipient's balance cap.
    Locks: both wallets, then the sender's audit chain head. ``movement_kind`` names it in
    logs and metrics, as the caller's refusals are named."""
    require_unit("a transfer")
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
    limits.record(source, today, outgoing=amount)
    transfer = Transfer(
        reference=new_reference("TRF"),
        sender=sender,
        recipient=recipient,
        amount=amount,
        note=fit(Transfer, "note", note),
        category=category,
        created_at=now,
    )
    return post(
        amount=amount,
        legs=[
            Leg(
                wallet=source,
                direction=LedgerEntry.Direction.DEBIT,
                kind=LedgerEntry.Kind.TRANSFER_OUT,
                description=note or f"To {recipient.get_full_name()}",
                counterparty=recipient,
            ),
            Leg(
                wallet=target,
                direction=LedgerEntry.Direction.CREDIT,
                kind=LedgerEntry.Kind.TRANSFER_IN,
                description=note or f"From {sender.get_full_name()}",
                counterparty=sender,
            ),
        ],
        category=category,
        now=now,
        actor=sender,
        action="transfer.create",
        audit_data=lambda _lines: {
            "reference": transfer.reference,
            "amount": format_paise(amount),
            "recipient": recipient.quickpe_id,
            "category": category,
        },
        request=request,
        movement_kind=movement_kind,
        transfer=transfer,
    )


def transfer_sent_notification(transfer: Transfer) -> Notification:
    return Notification(
        user=transfer.sender,
        kind=Notification.Kind.TRANSFER_SENT,
        title=f"You sent {format_inr(transfer.amount)} to {transfer.recipient.get_full_name()}",
        body=transfer.note,
        data={"transfer_id": transfer.pk, "reference": transfer.reference},
    )


@unit_of_work
def transfer_create(
    *,
    sender: User,
    recipient: User,
    amount: int,
    note: str = "",
    category: str = Category.TRANSFER,
    request=None,
) -> Posting:
    """Move ``amount`` from sender to recipient: both balances, both ledger lines, the audit
    entry, both notifications and both parties' events commit together or not at all. Keeps
    and locks what ``transfer_post`` does."""
    posting = transfer_post(
        sender=sender,
        recipient=recipient,
        amount=amount,
        note=note,
        category=category,
        request=request,
    )
    transfer = posting.transfer
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
    events_emit(posting.events(notices), audit=[posting.audit_entry])
    return posting
