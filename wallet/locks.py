"""Row locks, and the one order every change takes them in.

Every change locks what it needs in this order, never backwards, so two changes that need the
same rows queue on the first of them instead of deadlocking:

    1. money request rows      ``money_request_lock`` (the expiry job: SKIP LOCKED, by deadline;
                               a deactivation: the user's pending ones, in primary-key order)
    2. the user row            ``user_lock`` (sessions, access changes)
    3. device session rows     ``session_lock`` (refresh token rotation)
    4. wallets                 ``wallets_lock`` (all of a change's, in primary-key order, at once)
    5. the transfer row        ``transfer_lock`` (a reversal)
    6. the audit chain head    ``audit.services.audit_append`` (one chain per transaction)
    7. event streams           ``notifications.services.events_emit`` (once, in user-id order)

``quickpe.unit_of_work`` asserts it: each function here claims its place (a lock earlier in
the order after a later one fails), and the audit chain and the events emit claim theirs.
Rows are locked ``FOR NO KEY UPDATE``: nothing here changes a key, and the weaker lock lets
inserts that reference the row (a ledger line, a notification) check their foreign key
without waiting for the change to commit.
"""

from django.db.models import Q

from quickpe import statements
from quickpe.db import fetch_models
from quickpe.errors import NotFound
from quickpe.unit_of_work import claim_lock
from wallet.models import DeviceSession, MoneyRequest, Transfer, User, Wallet

MONEY_REQUEST, USER, SESSION, WALLETS, TRANSFER = 1, 2, 3, 4, 5


def money_request_lock(*, money_request_id: int, user: User) -> MoneyRequest:
    """Lock a money request ``user`` takes part in, with both parties loaded; anyone else's
    is ``NotFound`` (never tell who takes part in what)."""
    claim_lock(MONEY_REQUEST, "money request")
    found = (
        MoneyRequest.objects.select_for_update(of=("self",), no_key=True)
        .select_related("requester", "payer")
        .filter(Q(payer=user) | Q(requester=user), pk=money_request_id)
        .first()
    )
    if found is None:
        raise NotFound("No such money request.")
    return found


def money_requests_lock_expired(*, now, limit: int) -> list[MoneyRequest]:
    """Lock up to ``limit`` pending requests past their deadline, oldest first, skipping any
    a user is changing right now (they read as expired meanwhile; the next run takes them)."""
    claim_lock(MONEY_REQUEST, "money requests")
    return list(
        MoneyRequest.objects.select_for_update(of=("self",), skip_locked=True, no_key=True)
        .select_related("requester", "payer")
        .filter(status=MoneyRequest.Status.PENDING, expires_at__lte=now)
        .order_by("expires_at", "pk")[:limit]
    )


def money_requests_lock_pending(*, user: User) -> list[MoneyRequest]:
    """Lock every pending request ``user`` takes part in (either side), in primary-key order,
    in one query, with both parties loaded. Comes before the user row: a deactivation closes
    them and then locks the user."""
    claim_lock(MONEY_REQUEST, "money requests")
    return list(
        MoneyRequest.objects.select_for_update(of=("self",), no_key=True)
        .select_related("requester", "payer")
        .filter(Q(payer=user) | Q(requester=user), status=MoneyRequest.Status.PENDING)
        .order_by("pk")
    )


def user_lock(*, user: User) -> User:
    """Lock the user's row (serialises a user's sessions and access changes) and return it
    fresh from the database."""
    claim_lock(USER, "user")
    return User.objects.select_for_update(no_key=True).get(pk=user.pk)


def session_lock(*, session_id: int, **conditions) -> DeviceSession | None:
    """Lock one device session matching ``conditions``, or None."""
    claim_lock(SESSION, "device session")
    return (
        DeviceSession.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk=session_id, **conditions)
        .first()
    )


def wallets_lock(*, user_ids: list[int]) -> dict[int, Wallet]:
    """Lock the wallets of ``user_ids`` in primary-key order, in one query, and return them
    keyed by user id. One fixed order means two opposite transfers (A->B, B->A) queue on the
    same first row instead of deadlocking."""
    claim_lock(WALLETS, "wallets")
    placeholders = ", ".join(["%s"] * len(user_ids))
    wallets = fetch_models(Wallet, statements.WALLETS_LOCK.format(placeholders), list(user_ids))
    return {wallet.user_id: wallet for wallet in wallets}


def transfer_lock(*, transfer_id: int) -> Transfer:
    """Lock a transfer's row (its status), with both parties loaded."""
    claim_lock(TRANSFER, "transfer")
    return (
        Transfer.objects.select_for_update(of=("self",), no_key=True)
        .select_related("sender", "recipient")
        .get(pk=transfer_id)
    )
