"""Plain-language findings from a user's ledger, computed at request time.

Each finding is made only when its data exists, and the list is ordered by priority (high
first), then by the order of ``KINDS``. "Spending" is outgoing money: every debit line, as in
``/analytics/categories``. "The last 30 days" is the analytics default period: today and the 29
days before it, in Asia/Kolkata.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection

from analytics import selectors
from quickpe.business_day import business_day, day_end, day_start
from quickpe.money import format_inr
from wallet.models import Category, LedgerEntry, User

KINDS = (
    "unusual_activity",
    "spending_change",
    "top_category",
    "largest_transaction",
    "top_counterparty",
)
PRIORITIES = ("high", "medium", "low")
RECENT_DAYS = 30
# Unusual activity: a debit in the last UNUSUAL_RECENT_DAYS of at least UNUSUAL_MULTIPLE times
# the median of the last UNUSUAL_BASELINE_PAYMENTS debits in the UNUSUAL_BASELINE_DAYS before
# them (the median, so one past outlier does not hide the next), given at least
# UNUSUAL_MIN_BASELINE debits to judge by, and of at least UNUSUAL_FLOOR paise so small sums
# never look alarming. Counting payments rather than days bounds the work: a busy wallet's 90
# days can hold hundreds of thousands of lines, its last 500 are read backwards from the index
# and stop there.
UNUSUAL_RECENT_DAYS = 7
UNUSUAL_BASELINE_DAYS = 90
UNUSUAL_BASELINE_PAYMENTS = 500
UNUSUAL_MULTIPLE = 5
UNUSUAL_MIN_BASELINE = 5
UNUSUAL_FLOOR = 1_000_00
# A month-on-month change at least this large (percent) is high priority.
NOTABLE_CHANGE_PERCENT = 50
# Periods are half-open; "so far this month" includes the present instant.
MOMENT = timedelta(microseconds=1)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

DESCRIPTION = (
    "Plain-language findings from your ledger, most important first; a finding appears only "
    "when there is data for it. Priority `high`, `medium` or `low`. Kinds: "
    "`unusual_activity` (high): a payment in the last 7 days of at least 5 times the median of "
    "your last 500 payments in the 90 days before them (with at least 5 payments to compare "
    "and at least ₹1,000.00); `spending_change` (high when the change is 50% or more, else "
    "medium): money out so far this calendar month against the same stretch of last month "
    "(Asia/Kolkata months); `top_category` (medium): where most money went in the last 30 days; "
    "`largest_transaction` (low): your largest ledger line in the last 30 days; "
    "`top_counterparty` (low): who you moved the most money with in the last 30 days. Money "
    "out (spending, payments) means every debit line, as in `/analytics/categories`; the last "
    "30 days means today and the 29 days before it in Asia/Kolkata."
)

_BASELINE = """
    SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY amount), COUNT(*)
    FROM (
        SELECT amount
        FROM wallet_ledgerentry
        WHERE wallet_id = %(wallet)s AND created_at >= %(start)s AND created_at < %(end)s
            AND direction = 'debit'
        ORDER BY created_at DESC
        LIMIT %(payments)s
    ) AS latest
"""


@dataclass(frozen=True)
class Insight:
    kind: str
    title: str
    message: str
    priority: str


def _day(moment: datetime) -> str:
    day = business_day(moment)
    return f"{day.day} {MONTHS[day.month - 1]}"


def _percent(part: int, whole: int) -> int:
    """``part / whole`` as a whole percentage, rounded half-up."""
    return selectors.divide_half_up(part * 100, whole)


def _spending_change(wallet: int, now: datetime) -> Insight | None:
    today = business_day(now)
    this_month = day_start(today.replace(day=1))
    previous = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    last_month = day_start(previous)
    # The same stretch of last month: as long as this month has run so far, but never past
    # its end (31 March is compared with all of February).
    same_point = min(last_month + (now - this_month), this_month)
    spent = selectors.money_out_for(wallet=wallet, start=this_month, end=now + MOMENT)
    spent_before = selectors.money_out_for(wallet=wallet, start=last_month, end=same_point)
    if spent == 0 and spent_before == 0:
        return None
    month, before = MONTHS[today.month - 1], MONTHS[previous.month - 1]
    if spent_before == 0:
        message = (
            f"You have spent {format_inr(spent)} so far in {month}; by this point in "
            f"{before} you had spent nothing."
        )
        return Insight("spending_change", f"Spending in {month}", message, "medium")
    if spent == 0:
        message = (
            f"You have not spent anything yet in {month}; by this point in {before} you had "
            f"spent {format_inr(spent_before)}."
        )
        return Insight("spending_change", f"Spending in {month}", message, "medium")
    change = _percent(abs(spent - spent_before), spent_before)
    if change == 0:
        comparison = "about the same as"
    else:
        comparison = f"{change}% {'more' if spent > spent_before else 'less'} than"
    message = (
        f"You have spent {format_inr(spent)} so far in {month}, {comparison} by this point in "
        f"{before} ({format_inr(spent_before)})."
    )
    priority = "high" if change >= NOTABLE_CHANGE_PERCENT else "medium"
    return Insight("spending_change", f"Spending in {month}", message, priority)


def _line_phrase(entry: LedgerEntry) -> str:
    amount = format_inr(entry.amount)
    party = entry.counterparty.get_full_name() if entry.counterparty else ""
    if entry.kind == LedgerEntry.Kind.TRANSFER_OUT:
        return f"{amount} sent to {party}"
    if entry.kind == LedgerEntry.Kind.TRANSFER_IN:
        return f"{amount} received from {party}"
    if entry.kind == LedgerEntry.Kind.DEPOSIT:
        return f"{amount} added to your wallet"
    if entry.kind == LedgerEntry.Kind.WITHDRAWAL:
        return f"{amount} withdrawn"
    return f"a reversal of {amount}"


def _sentence_start(text: str) -> str:
    return text[:1].upper() + text[1:]


def _own_lines(wallet: int, start: datetime, end: datetime):
    return LedgerEntry.objects.filter(wallet_id=wallet, created_at__gte=start, created_at__lt=end)


def _largest(lines) -> LedgerEntry | None:
    """The largest line, most recent first on a tie. The id is found from the covering index
    alone; only that one line is then read with its counterparty (joining the counterparty
    before sorting read one user row per line)."""
    found = lines.order_by("-amount", "-created_at", "-id").values_list("pk", flat=True)[:1]
    if not found:
        return None
    return LedgerEntry.objects.select_related("counterparty").get(pk=found[0])


def _largest_transaction(wallet: int, start: datetime, end: datetime) -> Insight | None:
    entry = _largest(_own_lines(wallet, start, end))
    if entry is None:
        return None
    message = (
        f"Your largest transaction in the last {RECENT_DAYS} days was "
        f"{_line_phrase(entry)} on {_day(entry.created_at)}."
    )
    return Insight("largest_transaction", "Largest transaction", message, "low")


def _top_category(user: User, start: datetime, end: datetime) -> Insight | None:
    rows = selectors.categories_for(user=user, start=start, end=end)
    if not rows:
        return None
    top = rows[0]
    label = Category(top.category).label
    percent = (Decimal(top.share) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    message = (
        f"{label} was where most of your money went in the last {RECENT_DAYS} days: "
        f"{format_inr(top.amount)}, {percent}% of your spending."
    )
    return Insight("top_category", f"Top category: {label}", message, "medium")


def _top_counterparty(user: User, start: datetime, end: datetime) -> Insight | None:
    found = selectors.top_counterparties_for(user=user, start=start, end=end, limit=1)
    if not found:
        return None
    top = found[0]
    transfers = "transfer" if top.count == 1 else "transfers"
    message = (
        f"You moved the most money with {top.name} ({top.quickpe_id}) in the last "
        f"{RECENT_DAYS} days: {format_inr(top.amount)} across {top.count} {transfers}."
    )
    return Insight("top_counterparty", f"Top contact: {top.name}", message, "low")


def _unusual_activity(wallet: int, now: datetime) -> Insight | None:
    recent = now - timedelta(days=UNUSUAL_RECENT_DAYS)
    baseline_start = recent - timedelta(days=UNUSUAL_BASELINE_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(
            _BASELINE,
            {
                "wallet": wallet,
                "start": baseline_start,
                "end": recent,
                "payments": UNUSUAL_BASELINE_PAYMENTS,
            },
        )
        median, debits = cursor.fetchone()
    if debits < UNUSUAL_MIN_BASELINE:
        return None
    threshold = max(median * UNUSUAL_MULTIPLE, UNUSUAL_FLOOR)
    unusual = _own_lines(wallet, recent, now).filter(
        direction=LedgerEntry.Direction.DEBIT, amount__gte=threshold
    )
    entry = _largest(unusual)
    if entry is None:
        return None
    others = unusual.count() - 1
    times = entry.amount // median
    message = (
        f"{_sentence_start(_line_phrase(entry))} on {_day(entry.created_at)} is "
        f"{times} times your typical payment ({format_inr(median)}, the median of your "
        f"payments before the last {UNUSUAL_RECENT_DAYS} days)."
    )
    if others:
        message += f" {others} more unusually large {'payment' if others == 1 else 'payments'}"
        message += f" in the last {UNUSUAL_RECENT_DAYS} days."
    return Insight("unusual_activity", "Unusual payment", message, "high")


def insights_for(*, user: User, now: datetime) -> list[Insight]:
    """The user's findings as of ``now``, most important first."""
    end = day_end(business_day(now))
    start = end - timedelta(days=RECENT_DAYS)
    wallet = selectors.wallet_id_of(user)
    found = [
        _unusual_activity(wallet, now),
        _spending_change(wallet, now),
        _top_category(user, start, end),
        _largest_transaction(wallet, start, end),
        _top_counterparty(user, start, end),
    ]
    return sorted(
        (insight for insight in found if insight is not None),
        key=lambda insight: (PRIORITIES.index(insight.priority), KINDS.index(insight.kind)),
    )
