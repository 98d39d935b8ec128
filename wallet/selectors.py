"""Reads worth naming."""

from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Concat

from wallet.models import LedgerEntry, Transfer, User

SEARCH_LIMIT = 20


def users_search(*, query: str, exclude: User) -> list[User]:
    """Users matching a name, a QuickPe ID or an exact email; never ``exclude`` (the caller)."""
    matches = (
        Q(full_name__icontains=query) | Q(quickpe_id__istartswith=query) | Q(email=query.lower())
    )
    return list(
        User.objects.filter(is_active=True)
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
