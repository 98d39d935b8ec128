"""What support staff do to accounts: freeze and unfreeze wallets, deactivate and reactivate
users, reverse transfers and send password resets.

Every action here needs the staff member's permission and a reason, never targets the staff
member's own account, wallet or transfers (``_require_permission``), records an audit entry
with the staff member as actor (the reason in its data, never shown to the customer) and tells
the customer, in the one transaction of the change. Lock order, as everywhere: business rows
(wallets, or a user's pending money requests and then the user row), then the staff member's
audit chain head, then event streams (one ``events_emit`` per transaction). Money is never
edited: a reversal is a new movement.
"""

import math
from functools import partial

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from audit.services import audit_append
from notifications.models import Notification
from notifications.services import events_emit, notifications_create, security_notification
from quickpe.errors import InsufficientFunds, InvalidState, NotAllowed, QuickPeError, RateLimited
from quickpe.money import format_inr, format_paise
from quickpe.throttling import wait_for
from quickpe.unit_of_work import unit_of_work
from wallet import limits
from wallet.locks import money_requests_lock_pending, transfer_lock, user_lock, wallets_lock
from wallet.models import Category, LedgerEntry, Transfer, User, Wallet
from wallet.services.posting import Leg, Posting, post
from wallet.services.requests import money_requests_cancel_for_deactivation
from wallet.services.sessions import sessions_revoke_all
from wallet.services.users import password_save


class ReasonRequired(QuickPeError):
    status, code = 400, "reason_required"
    default_detail = "Give a reason: it is recorded in the audit log."


def _required(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired.on_field("reason")
    return reason


def _require_permission(actor: User, permission: str, *, on: list[int]) -> None:
    """The admin checks this too; a service that moves money or locks people out checks again
    so that no other caller can skip it. ``on`` is the user ids the action touches: no one
    acts on their own account, wallet or transfer (a colleague must: four eyes)."""
    if not (actor.is_active and actor.is_staff and actor.has_perm(permission)):
        raise NotAllowed()
    if actor.pk in on:
        raise NotAllowed(
            "You cannot act on your own account, wallet or a transfer you took part in."
        )


# Wallets --------------------------------------------------------------------------------------


@unit_of_work
def _wallet_status_set(
    *, wallet: Wallet, status: str, actor: User, reason: str, notice: tuple[str, str], request
) -> Wallet:
    reason = _required(reason)
    _require_permission(actor, "wallet.freeze_wallet", on=[wallet.user_id])
    user = wallet.user
    locked = wallets_lock(user_ids=[user.pk])[user.pk]
    if locked.status == status:
        raise InvalidState(f"The wallet is already {status}.")
    locked.status = status
    locked.updated_at = timezone.now()
    locked.save(update_fields=["status", "updated_at"])
    entry = audit_append(
        actor=actor,
        action="wallet.freeze" if status == Wallet.Status.FROZEN else "wallet.unfreeze",
        entity_type="wallet",
        entity_id=locked.pk,
        data={"quickpe_id": user.quickpe_id, "reason": reason},
        request=request,
    )
    title, body = notice
    user_id, event = security_notification(user=user, title=title, body=body)
    events_emit({user_id: [event]}, audit=[entry])
    return locked


def wallet_freeze(*, wallet: Wallet, actor: User, reason: str, request=None) -> Wallet:
    """Stop all money in and out of a wallet (transfers, deposits, withdrawals, paying
    requests). Keeps: only an active wallet freezes; audited with the reason; the owner gets a
    ``security`` notification. Locks: the wallet, the actor's audit chain head, the streams."""
    return _wallet_status_set(
        wallet=wallet,
        status=Wallet.Status.FROZEN,
        actor=actor,
        reason=reason,
        notice=(
            "Your wallet was frozen",
            "Money cannot move in or out of your wallet for now. Contact QuickPe support.",
        ),
        request=request,
    )


def wallet_unfreeze(*, wallet: Wallet, actor: User, reason: str, request=None) -> Wallet:
    """Let money move again. Keeps, locks and tells what ``wallet_freeze`` does."""
    return _wallet_status_set(
        wallet=wallet,
        status=Wallet.Status.ACTIVE,
        actor=actor,
        reason=reason,
        notice=("Your wallet is active again", "You can send, receive and add money again."),
        request=request,
    )


# Users ----------------------------------------------------------------------------------------


@unit_of_work
def _user_active_set(
    *, user: User, is_active: bool, actor: User, reason: str, notice: tuple[str, str], request
) -> User:
    reason = _required(reason)
    _require_permission(actor, "wallet.deactivate_user", on=[user.pk])
    # Request rows come before the user row in the lock order (wallet.locks).
    money_requests = [] if is_active else money_requests_lock_pending(user=user)
    locked = user_lock(user=user)
    if locked.is_superuser and not actor.is_superuser:
        raise NotAllowed("Only a superuser can change a superuser's access.")
    if locked.is_active == is_active:
        raise InvalidState(f"The account is already {'active' if is_active else 'inactive'}.")
    locked.is_active = is_active
    locked.save(update_fields=["is_active"])
    data = {"quickpe_id": locked.quickpe_id, "reason": reason}
    cancelled, events = [], {}
    if not is_active:
        data["revoked_tokens"] = sessions_revoke_all(user=locked)
        cancelled, events = money_requests_cancel_for_deactivation(
            user=locked, money_requests=money_requests, actor=actor, request=request
        )
    entry = audit_append(
        actor=actor,
        action="admin.user_reactivate" if is_active else "admin.user_deactivate",
        entity_type="user",
        entity_id=locked.pk,
        data=data,
        request=request,
    )
    title, body = notice
    user_id, event = security_notification(user=locked, title=title, body=body)
    events.setdefault(user_id, []).append(event)
    events_emit(events, audit=[*cancelled, entry])
    return locked


def user_deactivate(*, user: User, actor: User, reason: str, request=None) -> User:
    """Close an account's access: it can no longer sign in, every device session is revoked
    and every refresh token blacklisted (access tokens stop at once, see README "device
    sessions"). Its money stays where it is; its pending money requests, both ways, are
    cancelled (audited, the other party told), so none is paid into or out of a closed
    account. Keeps: only a superuser deactivates a superuser. Locks: the user's pending money
    requests, the user row, its device sessions, the actor's audit chain head, the streams."""
    return _user_active_set(
        user=user,
        is_active=False,
        actor=actor,
        reason=reason,
        notice=(
            "Your account was deactivated",
            "You were signed out on every device. Contact QuickPe support.",
        ),
        request=request,
    )


def user_reactivate(*, user: User, actor: User, reason: str, request=None) -> User:
    """Let a deactivated account sign in again. Keeps and locks what ``user_deactivate`` does."""
    return _user_active_set(
        user=user,
        is_active=True,
        actor=actor,
        reason=reason,
        notice=("Your account is active again", "You can sign in to QuickPe again."),
        request=request,
    )


# Passwords ------------------------------------------------------------------------------------


def password_reset_send(*, user: User, actor: User, reason: str, request) -> None:
    """Email the user a one-time link to choose a new password (Django's token: it stops
    working once the password changes, or after PASSWORD_RESET_TIMEOUT). The link is built
    from the host of the staff member's ``request``. Audited, and the user gets a ``security``
    notification. The email leaves after commit: no network I/O while the chain head is
    locked, and no email for a change that rolled back. Keeps: active accounts only; at most
    QUICKPE_SUPPORT_RESET_RATE emails per user (``RateLimited``). Locks:
    the actor's audit chain head, the user's stream."""
    reason = _required(reason)
    _require_permission(actor, "wallet.send_password_reset", on=[user.pk])
    if not user.is_active:
        raise InvalidState("The account is deactivated; reactivate it first.")
    wait = wait_for("support-reset", str(user.pk), settings.QUICKPE_SUPPORT_RESET_RATE)
    if wait is not None:
        raise RateLimited(
            f"A reset link was sent to this user recently; try again in {math.ceil(wait / 60)} min."
        )
    path = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    context = {"user": user, "link": request.build_absolute_uri(path)}
    subject = render_to_string("registration/support_password_reset_subject.txt", context)
    body = render_to_string("registration/support_password_reset_email.txt", context)
    _password_reset_record(
        user=user, actor=actor, reason=reason, email=(subject.strip(), body), request=request
    )


@unit_of_work
def _password_reset_record(*, user: User, actor: User, reason: str, email, request) -> None:
    """Audit the reset link, tell the user, and send the email once this commits."""
    entry = audit_append(
        actor=actor,
        action="admin.password_reset_send",
        entity_type="user",
        entity_id=user.pk,
        data={"quickpe_id": user.quickpe_id, "email": user.email, "reason": reason},
        request=request,
    )
    user_id, event = security_notification(
        user=user,
        title="We sent you a password reset link",
        body="QuickPe support emailed you a link to choose a new password. If you did not "
        "ask for it, ignore the email: your password stays as it is.",
    )
    events_emit({user_id: [event]}, audit=[entry])
    transaction.on_commit(partial(send_mail, *email, None, [user.email]))


def password_reset_complete(*, user: User, password: str, request=None) -> None:
    """Set the password chosen through a reset link (already checked by the reset form's
    validators) and sign every device out: sessions revoked, refresh tokens blacklisted.
    Audited as the user's own change, with a ``security`` notification. The hash is made
    before the unit of work: hashing holds no locks."""
    user.set_password(password)
    password_save(
        user=user,
        action="user.password_reset",
        notice=(
            "Your password was reset",
            "Every device was signed out. If this was not you, contact QuickPe support.",
        ),
        request=request,
    )


# Transfers ------------------------------------------------------------------------------------


@unit_of_work
def transfer_reverse(*, transfer: Transfer, actor: User, reason: str, request=None) -> Posting:
    """Send a completed transfer's money back: a new movement from the original recipient to
    the original sender, two ledger lines of kind ``reversal`` (a debit on the recipient, a
    credit on the sender) linked to the transfer, whose status becomes ``reversed``. No money
    row is edited.

    Keeps: a transfer is reversed at most once (checked on the locked row; a unique index on
    the reversal lines backs it); the recipient still holds the amount (else
    ``InsufficientFunds``, nothing changes); the sender's balance cap; no one reverses a
    transfer they took part in. A frozen wallet does not stop it: freezing the recipient is
    how support holds disputed money until it is sent back. Daily limits and their counters
    are not touched: this is a correction, not the customers' spending.
    Two audit entries, both with the staff member as actor: ``transfer.reverse`` (the
    movement) and ``admin.transfer_reverse`` (the decision and its reason). Both parties get
    ``balance:update``, ``transaction:new`` and ``notification:new``, as for a transfer.
    Locks: both wallets (``wallets_lock``, primary-key order, one query), the transfer row,
    the actor's audit chain head, the event streams."""
    reason = _required(reason)
    _require_permission(
        actor, "wallet.reverse_transfer", on=[transfer.sender_id, transfer.recipient_id]
    )
    wallets = wallets_lock(user_ids=[transfer.sender_id, transfer.recipient_id])
    locked = transfer_lock(transfer_id=transfer.pk)
    if locked.status == Transfer.Status.REVERSED:
        raise InvalidState("This transfer was already reversed.")
    source, target = wallets[locked.recipient_id], wallets[locked.sender_id]
    if source.balance < locked.amount:
        raise InsufficientFunds("The recipient no longer has the money to send back.")
    limits.check_balance_cap(target, locked.amount, is_own_wallet=False)
    sender, recipient = locked.sender, locked.recipient
    locked.status = Transfer.Status.REVERSED
    locked.save(update_fields=["status"])
    posting = post(
        amount=locked.amount,
        legs=[
            Leg(
                wallet=source,
                direction=LedgerEntry.Direction.DEBIT,
                kind=LedgerEntry.Kind.REVERSAL,
                description=f"Reversal of {locked.reference} from {sender.get_full_name()}",
                counterparty=sender,
            ),
            Leg(
                wallet=target,
                direction=LedgerEntry.Direction.CREDIT,
                kind=LedgerEntry.Kind.REVERSAL,
                description=f"Reversal of {locked.reference} to {recipient.get_full_name()}",
                counterparty=recipient,
            ),
        ],
        category=locked.category or Category.TRANSFER,
        now=timezone.now(),
        actor=actor,
        action="transfer.reverse",
        audit_data=lambda lines: {
            "reference": locked.reference,
            "amount": format_paise(locked.amount),
            "from": recipient.quickpe_id,
            "to": sender.quickpe_id,
            "debit": lines[0].reference,
            "credit": lines[1].reference,
        },
        request=request,
        movement_kind=LedgerEntry.Kind.REVERSAL,
        transfer=locked,
    )
    debit, credit = posting.lines
    decision = audit_append(
        actor=actor,
        action="admin.transfer_reverse",
        entity_type="transfer",
        entity_id=locked.pk,
        data={"reference": locked.reference, "reason": reason},
        request=request,
    )
    amount = format_inr(locked.amount)
    notices = notifications_create(
        [
            Notification(
                user=sender,
                kind=Notification.Kind.TRANSFER_RECEIVED,
                title=f"{amount} returned to you",
                body=f"QuickPe support reversed your transfer {locked.reference} to "
                f"{recipient.get_full_name()}.",
                data={
                    "transfer_id": locked.pk,
                    "reference": locked.reference,
                    "transaction_id": credit.pk,
                },
            ),
            Notification(
                user=recipient,
                kind=Notification.Kind.TRANSFER_SENT,
                title=f"{amount} sent back",
                body=f"QuickPe support reversed the transfer {locked.reference} from "
                f"{sender.get_full_name()}.",
                data={
                    "transfer_id": locked.pk,
                    "reference": locked.reference,
                    "transaction_id": debit.pk,
                },
            ),
        ]
    )
    events_emit(posting.events(notices), audit=[posting.audit_entry, decision])
    return posting
