"""Money requests: ask someone to pay you; they pay or decline, you cancel, or it expires.

Every change is a unit of work that locks the request's row first (a payment then locks the
wallets), so two changes of one request queue and the second sees the first's outcome:
``money_request_pay`` moves money once however many times it is called at the same moment.
Lock order (``wallet.locks``): request rows, wallets, audit chain head, event streams.
A deactivated account's pending requests are cancelled by the deactivation (support's
``user_deactivate``), and a request with a deactivated party is never paid.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from audit.services import audit_append
from notifications.models import Notification
from notifications.services import events_emit, notifications_create
from quickpe.errors import InvalidState, NotAllowed, QuickPeError, WalletFrozen
from quickpe.money import format_inr, format_paise
from quickpe.text import fit
from quickpe.unit_of_work import unit_of_work
from wallet import limits
from wallet.locks import money_request_lock, money_requests_lock_expired
from wallet.models import MoneyRequest, Transfer, User, Wallet
from wallet.representations import money_request_data
from wallet.services.money import active_user_find, transfer_post, transfer_sent_notification
from wallet.services.posting import Posting

EXPIRY_BATCH = 200


class PayerNotFound(QuickPeError):
    status, code = 404, "payer_not_found"
    default_detail = "No active QuickPe user has that QuickPe ID or email."


class PartyDeactivated(QuickPeError):
    status, code = 409, "account_deactivated"
    default_detail = "One of the two accounts of this request is deactivated; it cannot be paid."


class SelfRequest(QuickPeError):
    status, code = 400, "self_request"
    default_detail = "You cannot request money from yourself."


def _update_events(money_request: MoneyRequest, now) -> dict[int, list]:
    """``money_request:update`` for both parties."""
    event = ("money_request:update", {"money_request": money_request_data(money_request, now=now)})
    return {money_request.requester_id: [event], money_request.payer_id: [event]}


def _merge(*event_maps: dict[int, list]) -> dict[int, list]:
    merged: dict[int, list] = {}
    for events in event_maps:
        for user_id, items in events.items():
            merged.setdefault(user_id, []).extend(items)
    return merged


def _notices_by_user(notices) -> dict[int, list]:
    return _merge(*({user_id: [event]} for user_id, event in notices))


def _audit(money_request: MoneyRequest, *, actor: User | None, action: str, request=None):
    return audit_append(
        actor=actor,
        action=f"money_request.{action}",
        entity_type="money_request",
        entity_id=money_request.pk,
        data={
            "amount": format_paise(money_request.amount),
            "requester": money_request.requester.quickpe_id,
            "payer": money_request.payer.quickpe_id,
            "status": money_request.status,
        },
        request=request,
    )


def payer_resolve(*, identifier: str) -> User:
    payer = active_user_find(identifier=identifier)
    if payer is None:
        raise PayerNotFound.on_field("payer")
    return payer


@unit_of_work
def money_request_create(
    *, requester: User, payer: User, amount: int, note: str = "", request=None
) -> MoneyRequest:
    """Ask ``payer`` for ``amount``. Keeps: not to oneself, the per-transaction limits (a
    request that could never be paid is refused now), the requester's wallet not frozen.
    Notifies the payer; both parties get ``money_request:update``."""
    if requester.pk == payer.pk:
        raise SelfRequest.on_field("payer")
    limits.check_amount(amount)
    if Wallet.objects.filter(user=requester, status=Wallet.Status.FROZEN).exists():
        raise WalletFrozen()
    now = timezone.now()
    money_request = MoneyRequest.objects.create(
        requester=requester,
        payer=payer,
        amount=amount,
        note=fit(MoneyRequest, "note", note),
        created_at=now,
        expires_at=now + timedelta(days=settings.QUICKPE_MONEY_REQUEST_DAYS),
    )
    entry = _audit(money_request, actor=requester, action="create", request=request)
    notices = notifications_create(
        [
            Notification(
                user=payer,
                kind=Notification.Kind.MONEY_REQUEST,
                title=f"{requester.get_full_name()} requests {format_inr(amount)}",
                body=money_request.note,
                data={"money_request_id": money_request.pk},
            )
        ]
    )
    events_emit(
        _merge(_update_events(money_request, now), _notices_by_user(notices)), audit=[entry]
    )
    return money_request


def _require(money_request: MoneyRequest, *, user: User, role: str, now) -> None:
    if getattr(money_request, f"{role}_id") != user.pk:
        raise NotAllowed(f"Only the {role} can do this.")
    status = money_request.current_status(now)
    if status != MoneyRequest.Status.PENDING:
        raise InvalidState(f"This request is {status}; only a pending request can change.")


def _resolve(money_request: MoneyRequest, status: str, now, transfer: Transfer | None = None):
    money_request.status = status
    money_request.resolved_at = now
    money_request.transfer = transfer
    money_request.save(update_fields=["status", "resolved_at", "transfer"])


@unit_of_work
def money_request_pay(
    *, user: User, money_request_id: int, request=None
) -> tuple[MoneyRequest, Posting]:
    """The payer pays a pending request: a transfer under every transfer rule (limits, frozen
    wallets, funds) and the request marked ``paid`` with it. Keeps: both parties' accounts
    active (``PartyDeactivated``; read after the request's lock, so a deactivation that
    committed first is seen). Locks: the request, then what ``transfer_post`` locks."""
    money_request = money_request_lock(money_request_id=money_request_id, user=user)
    now = timezone.now()
    _require(money_request, user=user, role="payer", now=now)
    parties = [money_request.requester_id, money_request.payer_id]
    if User.objects.filter(pk__in=parties, is_active=False).exists():
        raise PartyDeactivated()
    requester = money_request.requester
    posting = transfer_post(
        sender=user,
        recipient=requester,
        amount=money_request.amount,
        note=money_request.note or f"Request from {requester.get_full_name()}",
        request=request,
        movement_kind="money_request_pay",
    )
    _resolve(money_request, MoneyRequest.Status.PAID, now, posting.transfer)
    entry = _audit(money_request, actor=user, action="pay", request=request)
    notices = notifications_create(
        [
            transfer_sent_notification(posting.transfer),
            Notification(
                user=requester,
                kind=Notification.Kind.MONEY_REQUEST_PAID,
                title=f"{user.get_full_name()} paid your request of "
                f"{format_inr(money_request.amount)}",
                body=money_request.note,
                data={"money_request_id": money_request.pk, "transfer_id": posting.transfer.pk},
            ),
        ]
    )
    events_emit(
        _merge(posting.events(notices), _update_events(money_request, now)),
        audit=[posting.audit_entry, entry],
    )
    return money_request, posting


@unit_of_work
def _close(*, user: User, money_request_id: int, role: str, status: str, notice, request):
    """Decline or cancel: the one party allowed turns a pending request into ``status`` and
    the other party is told. Locks: the request, then the audit chain head."""
    money_request = money_request_lock(money_request_id=money_request_id, user=user)
    now = timezone.now()
    _require(money_request, user=user, role=role, now=now)
    _resolve(money_request, status, now)
    entry = _audit(money_request, actor=user, action=status, request=request)
    notices = notifications_create([notice(money_request)])
    events_emit(
        _merge(_update_events(money_request, now), _notices_by_user(notices)), audit=[entry]
    )
    return money_request


def money_request_decline(*, user: User, money_request_id: int, request=None) -> MoneyRequest:
    """The payer declines a pending request; the requester is notified."""
    return _close(
        user=user,
        money_request_id=money_request_id,
        role="payer",
        status=MoneyRequest.Status.DECLINED,
        notice=lambda money_request: Notification(
            user=money_request.requester,
            kind=Notification.Kind.MONEY_REQUEST_DECLINED,
            title=f"{user.get_full_name()} declined your request of "
            f"{format_inr(money_request.amount)}",
            body=money_request.note,
            data={"money_request_id": money_request.pk},
        ),
        request=request,
    )


def money_request_cancel(*, user: User, money_request_id: int, request=None) -> MoneyRequest:
    """The requester withdraws a pending request; the payer is notified."""
    return _close(
        user=user,
        money_request_id=money_request_id,
        role="requester",
        status=MoneyRequest.Status.CANCELLED,
        notice=lambda money_request: Notification(
            user=money_request.payer,
            kind=Notification.Kind.MONEY_REQUEST,
            title=f"{user.get_full_name()} cancelled their request of "
            f"{format_inr(money_request.amount)}",
            body=money_request.note,
            data={"money_request_id": money_request.pk},
        ),
        request=request,
    )


def money_requests_cancel_for_deactivation(
    *, user: User, money_requests: list[MoneyRequest], actor: User, request=None
) -> tuple[list, dict[int, list]]:
    """Cancel the pending requests of ``user``, whose account support is closing (locked with
    ``money_requests_lock_pending``, before the user row): a closed account is never paid nor
    pays. Each is audited as a cancellation with the staff member as actor; the other party
    is notified and both get ``money_request:update``.
    A piece of the deactivation's unit of work: returns the audit entries and the events for
    its one emit."""
    now = timezone.now()
    entries, events, notifications = [], [], []
    for money_request in money_requests:
        _resolve(money_request, MoneyRequest.Status.CANCELLED, now)
        entries.append(
            _audit(
                money_request, actor=actor, action=MoneyRequest.Status.CANCELLED, request=request
            )
        )
        events.append(_update_events(money_request, now))
        amount = format_inr(money_request.amount)
        if money_request.requester_id == user.pk:
            other = money_request.payer
            title = f"{user.get_full_name()}'s request of {amount} was cancelled"
        else:
            other = money_request.requester
            title = f"Your request of {amount} to {user.get_full_name()} was cancelled"
        notifications.append(
            Notification(
                user=other,
                kind=Notification.Kind.MONEY_REQUEST,
                title=title,
                body="The other account was closed, so this request can no longer be paid.",
                data={"money_request_id": money_request.pk},
            )
        )
    notices = notifications_create(notifications) if notifications else []
    return entries, _merge(*events, _notices_by_user(notices))


def money_requests_expire(*, now=None) -> int:
    """Write down the expiry of pending requests past their deadline, a batch per unit of
    work, telling both parties. Requests a user is changing right now are skipped and picked
    up next run; meanwhile they already read as expired. Returns how many expired."""
    now = now or timezone.now()
    expired = 0
    while True:
        batch = _expire_batch(now=now)
        expired += batch
        if batch < EXPIRY_BATCH:
            return expired


@unit_of_work
def _expire_batch(*, now) -> int:
    """Expire up to EXPIRY_BATCH requests. Locks: the requests (SKIP LOCKED), the audit chain
    of actor-less entries, the event streams of every party."""
    batch = money_requests_lock_expired(now=now, limit=EXPIRY_BATCH)
    if not batch:
        return 0
    entries, events, notifications = [], [], []
    for money_request in batch:
        _resolve(money_request, MoneyRequest.Status.EXPIRED, money_request.expires_at)
        entries.append(_audit(money_request, actor=None, action="expire"))
        events.append(_update_events(money_request, now))
        notifications.append(
            Notification(
                user=money_request.requester,
                kind=Notification.Kind.MONEY_REQUEST,
                title=f"Your request of {format_inr(money_request.amount)} to "
                f"{money_request.payer.get_full_name()} expired",
                body=money_request.note,
                data={"money_request_id": money_request.pk},
            )
        )
    notices = notifications_create(notifications)
    events_emit(_merge(*events, _notices_by_user(notices)), audit=entries)
    return len(batch)
