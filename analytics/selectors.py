"""Analytics reads: figures computed in the database at request time.

A period is a half-open range of instants ``[start, end)``; calendar buckets are Asia/Kolkata
days, ISO weeks (starting Monday) and months. Totals, buckets and categories read the whole
business days inside a period from ``DailyFigure`` (the ledger summed per wallet, day, kind,
direction and category by a trigger, in the same transaction as the lines); the top
counterparties read whole months from ``CounterpartyFigure`` (per wallet, month and
counterparty). The cut ends of a period come from the ledger lines themselves, through
``analytics_ledger_wallet_figures`` (migration 0002), a covering index on (wallet, created_at).
So every figure equals the ledger (and therefore ``/transactions``) to the paisa, and its cost
grows with the days in the period, not the lines: a year of a 1,000,000-line wallet reads a few
thousand daily figures (see bench/analytics.py).

Definitions, shared by the API's documentation:

- sent / received / deposited / withdrawn: the sums of ``transfer_out``, ``transfer_in``,
  ``deposit`` and ``withdrawal`` lines. ``reversal`` lines count in ``net`` and ``count`` only.
- net: credits minus debits; count: ledger lines.
- outgoing (categories, spending): every debit line.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import connection

from analytics.models import Export
from quickpe.business_day import business_day, business_zone, day_start
from wallet.models import User, Wallet

TOP_COUNTERPARTIES = 5
SHARE_PLACES = 4
INTERVALS = ("day", "week", "month")

# One wallet's movements in a period, as (day, kind, direction, category, amount, lines): its
# daily figures for the whole business days, its ledger lines (one each) for the cut days at
# the ends. The queries below sum these, so COUNT(*) is SUM(lines). The wallet is a constant in
# each statement (see wallet_id_of); the ranges come from _period.
_LINES = """
    lines AS (
        SELECT day, kind, direction, category, amount, lines
        FROM analytics_dailyfigure
        WHERE wallet_id = %(wallet)s AND day >= %(first_day)s AND day < %(end_day)s
        UNION ALL
        SELECT (created_at AT TIME ZONE %(zone)s)::date, kind, direction, category, amount, 1
        FROM wallet_ledgerentry
        WHERE wallet_id = %(wallet)s AND created_at >= %(start)s AND created_at < %(head_end)s
        UNION ALL
        SELECT (created_at AT TIME ZONE %(zone)s)::date, kind, direction, category, amount, 1
        FROM wallet_ledgerentry
        WHERE wallet_id = %(wallet)s AND created_at >= %(tail_start)s AND created_at < %(end)s
    )
"""

# The same for money moved with each counterparty (transfers sent and received), as
# (counterparty_id, amount, lines): counterparty figures for the months of _month_plan, plus
# the lines it adds, minus the lines it takes away (as negative amounts and counts).
_PARTY_RANGE = """
        UNION ALL
        SELECT counterparty_id, {sign}amount, {sign}1
        FROM wallet_ledgerentry
        WHERE wallet_id = %(wallet)s
            AND created_at >= %({name}_from)s AND created_at < %({name}_to)s
            AND kind IN ('transfer_in', 'transfer_out') AND counterparty_id IS NOT NULL
"""
_PARTY_LINES = f"""
    party_lines AS (
        SELECT counterparty_id, amount, lines
        FROM analytics_counterpartyfigure
        WHERE wallet_id = %(wallet)s AND month >= %(first_month)s AND month < %(end_month)s
        {_PARTY_RANGE.format(sign="", name="add_head")}
        {_PARTY_RANGE.format(sign="", name="add_tail")}
        {_PARTY_RANGE.format(sign="-", name="take_head")}
        {_PARTY_RANGE.format(sign="-", name="take_tail")}
    )
"""  # noqa: S608 - constants only; values travel as parameters

# The top counterparties: by money moved with them, then by number of transfers.
_TOP = """
    top AS (
        SELECT counterparty_id, SUM(amount)::bigint AS amount, SUM(lines)::bigint AS count
        FROM party_lines
        GROUP BY counterparty_id
        HAVING SUM(lines) > 0
        ORDER BY amount DESC, count DESC, counterparty_id
        LIMIT %(limit)s
    )
"""

# One statement, one snapshot, so the totals and the top counterparties always agree: the
# totals row first (position 0), then one row per counterparty in rank order.
_SUMMARY = f"""
    WITH {_LINES}, {_PARTY_LINES}, {_TOP}, totals AS (
        SELECT
            COALESCE(SUM(amount) FILTER (WHERE kind = 'transfer_out'), 0)::bigint AS sent,
            COALESCE(SUM(lines) FILTER (WHERE kind = 'transfer_out'), 0)::bigint AS sent_count,
            COALESCE(SUM(amount) FILTER (WHERE kind = 'transfer_in'), 0)::bigint AS received,
            COALESCE(SUM(amount) FILTER (WHERE kind = 'deposit'), 0)::bigint AS deposited,
            COALESCE(SUM(amount) FILTER (WHERE kind = 'withdrawal'), 0)::bigint AS withdrawn,
            COALESCE(SUM(CASE WHEN direction = 'credit' THEN amount ELSE -amount END), 0)::bigint
                AS net,
            COALESCE(SUM(lines), 0)::bigint AS count
        FROM lines
    )
    SELECT 0::bigint AS position, sent, sent_count, received, deposited, withdrawn, net, count,
        NULL AS quickpe_id, NULL AS first_name, NULL AS last_name
    FROM totals
    UNION ALL
    SELECT
        ROW_NUMBER() OVER (ORDER BY top.amount DESC, top.count DESC, top.counterparty_id),
        top.amount, top.count, 0, 0, 0, 0, 0, party.quickpe_id, party.first_name, party.last_name
    FROM top JOIN wallet_user AS party ON party.id = top.counterparty_id
    ORDER BY position
"""  # noqa: S608 - constants only; values travel as parameters

# Movements are summed per bucket first, then laid on the calendar made by generate_series, so
# buckets without lines are there too, as zeros. The unit is one of INTERVALS, checked before
# it gets here. (``day`` is a business date: as a timestamp without zone, date_trunc never
# meets the session's zone.)
_TIMESERIES = f"""
    WITH {_LINES}, buckets AS (
        SELECT
            date_trunc(%(unit)s, day::timestamp) AS start,
            SUM(amount) FILTER (WHERE kind = 'transfer_out') AS sent,
            SUM(amount) FILTER (WHERE kind = 'transfer_in') AS received,
            SUM(amount) FILTER (WHERE kind = 'deposit') AS deposited,
            SUM(amount) FILTER (WHERE kind = 'withdrawal') AS withdrawn,
            SUM(lines) AS count
        FROM lines
        GROUP BY 1
    )
    SELECT
        calendar.start::date,
        COALESCE(buckets.sent, 0)::bigint,
        COALESCE(buckets.received, 0)::bigint,
        COALESCE(buckets.deposited, 0)::bigint,
        COALESCE(buckets.withdrawn, 0)::bigint,
        COALESCE(buckets.count, 0)::bigint
    FROM generate_series(
        date_trunc(%(unit)s, %(start)s::timestamptz AT TIME ZONE %(zone)s),
        date_trunc(
            %(unit)s, (%(end)s::timestamptz - interval '1 microsecond') AT TIME ZONE %(zone)s
        ),
        ('1 ' || %(unit)s)::interval
    ) AS calendar(start)
    LEFT JOIN buckets USING (start)
    ORDER BY calendar.start
"""  # noqa: S608 - constants only; values travel as parameters

# The same ranking as the summary's, alone, for callers that need no totals.
_TOP_COUNTERPARTIES = f"""
    WITH {_PARTY_LINES}, {_TOP}
    SELECT party.quickpe_id, party.first_name, party.last_name, top.amount, top.count
    FROM top JOIN wallet_user AS party ON party.id = top.counterparty_id
    ORDER BY top.amount DESC, top.count DESC, top.counterparty_id
"""  # noqa: S608 - constants only; values travel as parameters

_CATEGORIES = f"""
    WITH {_LINES}
    SELECT category, SUM(amount)::bigint AS amount, SUM(lines) AS count
    FROM lines
    WHERE direction = 'debit'
    GROUP BY category
    ORDER BY amount DESC, count DESC, category
"""  # noqa: S608 - constants only; values travel as parameters

_MONEY_OUT = f"""
    WITH {_LINES}
    SELECT COALESCE(SUM(amount), 0)::bigint FROM lines WHERE direction = 'debit'
"""  # noqa: S608 - constants only; values travel as parameters


@dataclass(frozen=True)
class Counterparty:
    quickpe_id: str
    name: str
    amount: int
    count: int


@dataclass(frozen=True)
class Summary:
    start: datetime
    end: datetime
    sent: int
    received: int
    deposited: int
    withdrawn: int
    net: int
    count: int
    average_sent: int
    top_counterparties: list[Counterparty]


@dataclass(frozen=True)
class Bucket:
    start: date
    sent: int
    received: int
    deposited: int
    withdrawn: int
    count: int


@dataclass(frozen=True)
class CategoryShare:
    category: str
    amount: int
    count: int
    share: str  # exact decimal, SHARE_PLACES places


def _rows(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def wallet_id_of(user: User) -> int:
    """The user's wallet id. Queries name it as a constant rather than a sub-select, so that
    the planner reads this wallet's statistics: for a wallet with a long history it then
    plans hash aggregates that fit in memory instead of guessing a few rows and sorting (which
    spilled to disk at 80,000 lines in bench/analytics.py)."""
    return Wallet.objects.values_list("pk", flat=True).get(user=user)


def _month_bounds(moment: datetime) -> tuple[date, datetime, datetime] | None:
    """The business month holding ``moment``: its first day, its first and its next month's
    first instant; None at the calendar's ends (year 1, year 9999), where it cannot be had."""
    first = business_day(moment).replace(day=1)
    try:
        following = (first + timedelta(days=32)).replace(day=1)
        return first, day_start(first), day_start(following)
    except (OverflowError, ValueError):
        return None


def _month_plan(start: datetime, end: datetime) -> dict:
    """How to sum a period's counterparties from monthly figures: the months
    ``[first_month, end_month)`` whole, plus the lines of ``add_head`` and ``add_tail``, minus
    those of ``take_head`` and ``take_tail``. A month cut by the period is read as its lines
    inside the period, or as the whole month minus its lines outside, whichever is shorter:
    so at most half a month of lines at each end, whatever the period."""
    plan = {
        f"{name}_{edge}": end
        for name in ("add_head", "add_tail", "take_head", "take_tail")
        for edge in ("from", "to")
    }
    head, tail = _month_bounds(start), _month_bounds(end - timedelta(microseconds=1))
    if head is None or tail is None:  # the calendar's ends: lines only
        month = date(2000, 1, 1)
        return {**plan, "first_month": month, "end_month": month, "add_head_from": start}
    (head_month, head_start, head_end), (tail_month, tail_start, tail_end) = head, tail
    if head_month == tail_month:  # inside one month
        if end - start <= (start - head_start) + (tail_end - end):
            return {
                **plan,
                "first_month": head_month,
                "end_month": head_month,
                "add_head_from": start,
            }
        return {
            **plan,
            "first_month": head_month,
            "end_month": tail_end.date(),
            "take_head_from": head_start,
            "take_head_to": start,
            "take_tail_from": end,
            "take_tail_to": tail_end,
        }
    if start - head_start <= head_end - start:
        plan.update(first_month=head_month, take_head_from=head_start, take_head_to=start)
    else:
        plan.update(first_month=head_end.date(), add_head_from=start, add_head_to=head_end)
    if tail_end - end <= end - tail_start:
        plan.update(end_month=tail_end.date(), take_tail_from=end, take_tail_to=tail_end)
    else:
        plan.update(end_month=tail_month, add_tail_from=tail_start, add_tail_to=end)
    return plan


def _period(wallet: int, start: datetime, end: datetime, *, limit: int = TOP_COUNTERPARTIES):
    """The parameters of _LINES and _PARTY_LINES: the whole business days
    ``[first_day, end_day)`` inside ``[start, end)`` read from the daily figures, the instants
    before and after them line by line; and the counterparties' _month_plan."""
    first_day, end_day = business_day(start), business_day(end)
    if day_start(first_day) < start:
        first_day += timedelta(days=1)
    head_end, tail_start = (
        (day_start(first_day), day_start(end_day)) if first_day < end_day else (end, end)
    )
    return {
        "wallet": wallet,
        "zone": business_zone().key,
        "limit": limit,
        "start": start,
        "end": end,
        "first_day": first_day,
        "end_day": end_day,
        "head_end": head_end,
        "tail_start": tail_start,
        **_month_plan(start, end),
    }


def divide_half_up(total: int, parts: int) -> int:
    """``total / parts`` rounded half-up to an integer (paise); 0 when there are no parts."""
    if parts == 0:
        return 0
    quotient, remainder = divmod(total, parts)
    return quotient + (1 if 2 * remainder >= parts else 0)


def summary_for(*, user: User, start: datetime, end: datetime) -> Summary:
    """Totals of the user's ledger lines in ``[start, end)`` and their top counterparties (by
    money sent to and received from them, then by number of transfers)."""
    totals, *parties = _rows(_SUMMARY, _period(wallet_id_of(user), start, end))
    _position, sent, sent_count, received, deposited, withdrawn, net, count, *_ = totals
    top = [
        Counterparty(
            quickpe_id=quickpe_id,
            name=f"{first_name} {last_name}".strip(),
            amount=amount,
            count=transfers,
        )
        for _position, amount, transfers, *_zeros, quickpe_id, first_name, last_name in parties
    ]
    return Summary(
        start=start,
        end=end,
        sent=sent,
        received=received,
        deposited=deposited,
        withdrawn=withdrawn,
        net=net,
        count=count,
        average_sent=divide_half_up(sent, sent_count),
        top_counterparties=top,
    )


def top_counterparties_for(
    *, user: User, start: datetime, end: datetime, limit: int = TOP_COUNTERPARTIES
) -> list[Counterparty]:
    """Who the user moved the most money with in ``[start, end)``, ranked as in the summary."""
    rows = _rows(_TOP_COUNTERPARTIES, _period(wallet_id_of(user), start, end, limit=limit))
    return [
        Counterparty(
            quickpe_id=quickpe_id,
            name=f"{first_name} {last_name}".strip(),
            amount=amount,
            count=count,
        )
        for quickpe_id, first_name, last_name, amount, count in rows
    ]


def bucket_count(*, start: datetime, end: datetime, interval: str) -> int:
    """How many calendar buckets of ``interval`` the period ``[start, end)`` touches, computed
    before querying so an absurd range is refused without asking the database."""
    if end <= start:
        return 0
    first = business_day(start)
    last = business_day(end - timedelta(microseconds=1))
    if interval == "day":
        return (last - first).days + 1
    if interval == "week":
        mondays = last - timedelta(days=last.weekday()), first - timedelta(days=first.weekday())
        return (mondays[0] - mondays[1]).days // 7 + 1
    if interval == "month":
        return (last.year - first.year) * 12 + last.month - first.month + 1
    raise ValueError(interval)


def timeseries_for(*, user: User, start: datetime, end: datetime, interval: str) -> list[Bucket]:
    """The period's figures per Asia/Kolkata day, ISO week or month, every bucket included.
    The first and last buckets may be cut by the period: they count only lines inside it."""
    if interval not in INTERVALS:
        raise ValueError(interval)
    params = {**_period(wallet_id_of(user), start, end), "unit": interval}
    return [Bucket(*row) for row in _rows(_TIMESERIES, params)]


def shares(amounts: list[int], *, places: int = SHARE_PLACES) -> list[str]:
    """Each amount's share of the total, rounded to ``places`` decimals so that the shares add
    up to exactly 1 (largest remainder: round every share down, then give the units left over
    to the largest remainders, earlier items first on a tie)."""
    total = sum(amounts)
    if total == 0:
        return []
    scale = 10**places
    floors = [amount * scale // total for amount in amounts]
    remainders = [amount * scale % total for amount in amounts]
    left_over = scale - sum(floors)
    by_remainder = sorted(range(len(amounts)), key=lambda index: (-remainders[index], index))
    for index in by_remainder[:left_over]:
        floors[index] += 1
    return [f"{units // scale}.{units % scale:0{places}d}" for units in floors]


def money_out_for(*, wallet: int, start: datetime, end: datetime) -> int:
    """Every debit line's amount in ``[start, end)``, summed (spending, as in categories), for
    the wallet ``wallet_id_of`` gave (insights ask for several periods of one wallet)."""
    [(total,)] = _rows(_MONEY_OUT, _period(wallet, start, end))
    return total


def categories_for(*, user: User, start: datetime, end: datetime) -> list[CategoryShare]:
    """Outgoing money (every debit line) in ``[start, end)`` per category, largest first, with
    each category's share of the total; empty when nothing went out."""
    rows = _rows(_CATEGORIES, _period(wallet_id_of(user), start, end))
    parts = shares([amount for _category, amount, _count in rows])
    return [
        CategoryShare(category=category, amount=amount, count=count, share=share)
        for (category, amount, count), share in zip(rows, parts, strict=True)
    ]


# Staff figures over every wallet. Only the last 30 days are read, through the BRIN index on
# created_at (migration 0002); lines are summed per wallet first (a hash aggregate), which also
# counts the active wallets without a sort. A movement counts once: a transfer is its
# transfer_out line.
_KPI_LEDGER = """
    WITH wallets AS (
        SELECT
            COUNT(*) FILTER (WHERE created_at >= %(day_ago)s AND kind <> 'transfer_in')
                AS movements_day,
            SUM(amount) FILTER (WHERE created_at >= %(day_ago)s AND kind <> 'transfer_in')
                AS volume_day,
            SUM(amount) FILTER (WHERE kind <> 'transfer_in') AS volume_month,
            SUM(amount) FILTER (WHERE kind = 'transfer_out') AS transferred,
            COUNT(*) FILTER (WHERE kind = 'transfer_out') AS transfers
        FROM wallet_ledgerentry
        WHERE created_at >= %(month_ago)s AND created_at <= %(now)s
        GROUP BY wallet_id
    )
    SELECT
        COUNT(*),
        COALESCE(SUM(movements_day), 0)::bigint,
        COALESCE(SUM(volume_day), 0)::bigint,
        COALESCE(SUM(volume_month), 0)::bigint,
        COALESCE(SUM(transferred), 0)::bigint,
        COALESCE(SUM(transfers), 0)::bigint
    FROM wallets
"""


@dataclass(frozen=True)
class Kpi:
    users_total: int
    users_active_30d: int
    wallets_frozen: int
    transactions_24h: int
    volume_24h: int
    volume_30d: int
    average_transfer_30d: int
    exports_24h: int


def kpi_figures(*, now: datetime) -> Kpi:
    """System-wide figures for staff, over the rolling 24 hours and 30 days before ``now``."""
    day_ago, month_ago = now - timedelta(hours=24), now - timedelta(days=30)
    [(active, transactions, volume_day, volume_month, transferred, transfers)] = _rows(
        _KPI_LEDGER, {"now": now, "day_ago": day_ago, "month_ago": month_ago}
    )
    return Kpi(
        users_total=User.objects.count(),
        users_active_30d=active,
        wallets_frozen=Wallet.objects.filter(status=Wallet.Status.FROZEN).count(),
        transactions_24h=transactions,
        volume_24h=volume_day,
        volume_30d=volume_month,
        average_transfer_30d=divide_half_up(transferred, transfers),
        exports_24h=Export.objects.filter(created_at__gte=day_ago, created_at__lte=now).count(),
    )
