"""The money invariants, checked from the database after any test that moves money."""

from collections import defaultdict

from django.conf import settings
from django.db import connection
from django.db.models import Sum

from audit.services import audit_verify
from quickpe.business_day import business_day
from wallet.models import LedgerEntry, Transfer, Wallet


def assert_money_invariants() -> None:
    wallets = {wallet.pk: wallet for wallet in Wallet.objects.all()}
    lines = defaultdict(list)
    for entry in LedgerEntry.objects.order_by("pk"):
        lines[entry.wallet_id].append(entry)

    for wallet_id, wallet in wallets.items():
        assert wallet.balance >= 0
        running = 0
        for entry in lines[wallet_id]:
            running += entry.signed_amount
            assert entry.balance_after == running, f"balance_after broken at {entry.reference}"
        assert wallet.balance == running, f"wallet {wallet_id} != sum of its ledger lines"

    def total(kind: str) -> int:
        return LedgerEntry.objects.filter(kind=kind).aggregate(s=Sum("amount"))["s"] or 0

    # Conservation: money only enters by deposit and leaves by withdrawal. Transfers and
    # their reversals move it between wallets: what they take from one they give another.
    assert sum(w.balance for w in wallets.values()) == total("deposit") - total("withdrawal")
    assert total("transfer_in") == total("transfer_out")
    reversal_credits = LedgerEntry.objects.filter(kind="reversal", direction="credit")
    reversal_debits = LedgerEntry.objects.filter(kind="reversal", direction="debit")
    assert (reversal_credits.aggregate(s=Sum("amount"))["s"] or 0) == (
        reversal_debits.aggregate(s=Sum("amount"))["s"] or 0
    )
    assert not LedgerEntry.objects.filter(kind="reversal", transfer__isnull=True).exists()
    owner = {wallet.pk: wallet.user_id for wallet in wallets.values()}
    for transfer in Transfer.objects.prefetch_related("entries"):
        entries = transfer.entries.all()
        kinds = sorted(entry.kind for entry in entries if entry.kind != "reversal")
        assert kinds == ["transfer_in", "transfer_out"]
        assert all(entry.amount == transfer.amount for entry in entries)
        # A reversed transfer has exactly one compensating pair: a debit on the recipient
        # and a credit on the sender; any other transfer has none.
        reversal = sorted(
            (entry.direction, owner[entry.wallet_id])
            for entry in entries
            if entry.kind == "reversal"
        )
        if transfer.status == "reversed":
            assert reversal == [("credit", transfer.sender_id), ("debit", transfer.recipient_id)]
        else:
            assert reversal == [], f"{transfer.reference} has reversal lines but is not reversed"

    # The O(1) daily-limit counters agree with the ledger. (A reversal is a correction by
    # support, not the customers' own movement: it counts toward neither limit.)
    today = business_day()
    for wallet in wallets.values():
        if wallet.limits_day != today:
            continue
        todays = [e for e in lines[wallet.pk] if business_day(e.created_at) == today]
        deposited = sum(e.amount for e in todays if e.kind == "deposit")
        outgoing = sum(e.amount for e in todays if e.kind in ("withdrawal", "transfer_out"))
        assert (wallet.deposited_on_day, wallet.outgoing_on_day) == (deposited, outgoing)

    assert_figures_match_the_ledger()
    result = audit_verify()
    assert result.valid, result.reason


# Each figure table as kept by the triggers, and as summed from the ledger afresh.
_FIGURES = [
    (
        """SELECT wallet_id, day, kind, direction, category, amount, lines
        FROM analytics_dailyfigure""",
        """SELECT wallet_id, (created_at AT TIME ZONE %(zone)s)::date, kind, direction, category,
            SUM(amount)::bigint, COUNT(*)::integer
        FROM wallet_ledgerentry GROUP BY 1, 2, 3, 4, 5""",
    ),
    (
        """SELECT wallet_id, month, counterparty_id, amount, lines
        FROM analytics_counterpartyfigure""",
        """SELECT wallet_id, date_trunc('month', created_at AT TIME ZONE %(zone)s)::date,
            counterparty_id, SUM(amount)::bigint, COUNT(*)::integer
        FROM wallet_ledgerentry
        WHERE kind IN ('transfer_in', 'transfer_out') AND counterparty_id IS NOT NULL
        GROUP BY 1, 2, 3""",
    ),
]


def assert_figures_match_the_ledger() -> None:
    """The trigger-kept figures are exactly the ledger summed per wallet and business day (in
    the setting's zone), kind, direction and category; and per wallet, business month and
    counterparty for transfers."""
    params = {"zone": settings.QUICKPE_BUSINESS_TIME_ZONE}
    with connection.cursor() as cursor:
        for kept, summed in _FIGURES:
            for extra, missing in ((kept, summed), (summed, kept)):
                cursor.execute(f"{extra} EXCEPT {missing}", params)  # noqa: S608 - constants
                rows = cursor.fetchall()
                assert not rows, f"figures disagree with the ledger: {rows[:5]}"
