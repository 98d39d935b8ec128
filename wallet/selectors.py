"""Reads worth naming."""

from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Concat
from django.utils import timezone

from wallet.models import LedgerEntry, MoneyRequest, Transfer, User

SEARCH_LIMIT = 20


def users_search(*, query: str, exclude: User) -> list[User]:
    """Active customers matching a name, a QuickPe ID or an exact verified email (an address
    nobody proved finds no one); never ``exclude`` (the caller) and never staff accounts (whom
    customers have no reason to find or pay)."""
    matches = (
        Q(full_name__icontains=query)
        | Q(quickpe_id__istartswith=query)
        | Q(email=query.lower(), email_verified=True)
    )
    return list(
        User.objects.filter(is_active=True, is_staff=False)
        .annotate(full_name=Concat("first_name", Value(" "), "last_name"))
        .filter(matches)
        .exclude(pk=exclude.pk)
        .order_by("first_name", "last_name", "pk")[:SEARCH_LIMIT]
    )


def transactions_for(*, user: User) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(wallet__user=user).select_related("counterparty")


def transfers_for(*, user: User) -> QuerySet[Transfer]:
    """Transfers the user took part in, as sender or recipient."""
    return Transfer.objects.filter(Q(sender=user) | Q(recipient=user)).select_related(
        "sender", "recipient"
    )


def money_requests_for(
    *, user: User, role: str | None = None, status: str | None = None, now=None
) -> QuerySet[MoneyRequest]:
    """Requests the user takes part in (``role``: incoming = asked of them, outgoing = theirs),
    by the status users see: a pending request past its deadline counts as expired."""
    now = now or timezone.now()
    if role == "incoming":
        found = MoneyRequest.objects.filter(payer=user)
    elif role == "outgoing":
        found = MoneyRequest.objects.filter(requester=user)
    else:
        found = MoneyRequest.objects.filter(Q(payer=user) | Q(requester=user))
    pending = MoneyRequest.Status.PENDING
    if status == pending:
        found = found.filter(status=pending, expires_at__gt=now)
    elif status == MoneyRequest.Status.EXPIRED:
        found = found.filter(Q(status=status) | Q(status=pending, expires_at__lte=now))
    elif status:
        found = found.filter(status=status)
    return found.select_related("requester", "payer")
