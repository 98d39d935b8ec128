"""Analytics reads: figures computed from the ledger at request time, in the database.

Nothing here is cached or pre-aggregated, so every figure equals the ledger (and therefore
``/transactions``) to the paisa. A period is a half-open range of instants ``[start, end)``;
calendar buckets are Asia/Kolkata days, ISO weeks (starting Monday) and months. Each query
reads one wallet's lines in a time range through ``analytics_ledger_wallet_figures`` (migration
0002), a covering index on (wallet, created_at): an index-only range scan that does not visit
the table. The cost is linear in the lines read: about 20-30 ms per 80,000 lines on the
2-CPU bench machine, so a year of a 1,000,000-line wallet takes several hundred (see
bench/analytics.py).

Definitions, shared by the API's documentation:

- sent / received / deposited / withdrawn: the sums of ``transfer_out``, ``transfer_in``,
  ``deposit`` and ``withdrawal`` lines. ``reversal`` lines count in ``net`` and ``count`` only.
- net: credits minus debits; count: ledger lines.
- outgoing (categories, spending): every debit line.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection

from analytics.models import Export
from wallet.models import User, Wallet

TOP_COUNTERPARTIES = 5
SHARE_PLACES = 4
INTERVALS = ("day", "week", "month")

# One wallet's lines in a period. The wallet is a constant in each statement (see wallet_id_of).
_OWN_LINES = """
    wallet_id = %(wallet)s AND created_at >= %(start)s AND created_at < %(end)s
"""

# One scan, one snapshot: the grouping set () gives the period's totals, (counterparty_id) the
# figures per counterparty, so the totals and the top counterparties always agree.
_SUMMARY = f"""
    WITH figures AS (
        SELECT
            GROUPING(counterparty_id) = 1 AS is_total,
            counterparty_id,
            COALESCE(SUM(amount) FILTER (WHERE kind = 'transfer_out'), 0)::bigint AS sent,
            COUNT(*) FILTER (WHERE kind = 'transfer_out') AS sent_count,
            COALESCE(SUM(amount) FILTER (WHERE kind = 'transfer_in'), 0)::bigint AS received,
            COALESCE(SUM(amount) FILTER (WHERE kind = 'deposit'), 0)::bigint AS deposited,
            COALESCE(SUM(amount) FILTER (WHERE kind = 'withdrawal'), 0)::bigint AS withdrawn,
            COALESCE(SUM(CASE WHEN direction = 'credit' THEN amount ELSE -amount END), 0)::bigint
                AS net,
            COUNT(*) AS count,
            COALESCE(SUM(amount) FILTER (WHERE kind IN ('transfer_in', 'transfer_out')), 0)::bigint
                AS party_amount,
            COUNT(*) FILTER (WHERE kind IN ('transfer_in', 'transfer_out')) AS party_count
        FROM wallet_ledgerentry
        WHERE {_OWN_LINES}
        GROUP BY GROUPING SETS ((), (counterparty_id))
        HAVING GROUPING(counterparty_id) = 1 OR (
            counterparty_id IS NOT NULL
            AND COUNT(*) FILTER (WHERE kind IN ('transfer_in', 'transfer_out')) > 0
        )
        ORDER BY is_total DESC, party_amount DESC, party_count DESC, counterparty_id
        LIMIT {TOP_COUNTERPARTIES + 1}
    )
    SELECT figures.*, party.quickpe_id, party.first_name, party.last_name
    FROM figures LEFT JOIN wallet_user AS party ON party.id = figures.counterparty_id
    ORDER BY is_total DESC, party_amount DESC, party_count DESC, counterparty_id
"""  # noqa: S608 - constants only; values travel as parameters

# Lines are summed per bucket first (one index range scan), then laid on the calendar made by
# generate_series, so buckets without lines are there too, as zeros. The unit is one of
# INTERVALS, checked before it gets here.
_TIMESERIES = f"""
    WITH lines AS (
        SELECT
            date_trunc(%(unit)s, created_at AT TIME ZONE %(zone)s) AS start,
            SUM(amount) FILTER (WHERE kind = 'transfer_out') AS sent,
            SUM(amount) FILTER (WHERE kind = 'transfer_in') AS received,
            SUM(amount) FILTER (WHERE kind = 'deposit') AS deposited,
            SUM(amount) FILTER (WHERE kind = 'withdrawal') AS withdrawn,
            COUNT(*) AS count
        FROM wallet_ledgerentry
        WHERE {_OWN_LINES}
        GROUP BY 1
    )
    SELECT
        calendar.start::date,
        COALESCE(lines.sent, 0)::bigint,
        COALESCE(lines.received, 0)::bigint,
        COALESCE(lines.deposited, 0)::bigint,
        COALESCE(lines.withdrawn, 0)::bigint,
        COALESCE(lines.count, 0)
    FROM generate_series(
        date_trunc(%(unit)s, %(start)s::timestamptz AT TIME ZONE %(zone)s),
        date_trunc(
            %(unit)s, (%(end)s::timestamptz - interval '1 microsecond') AT TIME ZONE %(zone)s
        ),
        ('1 ' || %(unit)s)::interval
    ) AS calendar(start)
    LEFT JOIN lines USING (start)
    ORDER BY calendar.start
"""  # noqa: S608 - constants only; values travel as parameters

# The same ranking as the summary's, alone, for callers that need no totals.
_TOP_COUNTERPARTIES = f"""
    SELECT party.quickpe_id, party.first_name, party.last_name, top.amount, top.count
    FROM (
        SELECT counterparty_id, SUM(amount)::bigint AS amount, COUNT(*) AS count
        FROM wallet_ledgerentry
        WHERE {_OWN_LINES} AND kind IN ('transfer_in', 'transfer_out')
            AND counterparty_id IS NOT NULL
        GROUP BY counterparty_id
        ORDER BY amount DESC, count DESC, counterparty_id
        LIMIT %(limit)s
    ) AS top
    JOIN wallet_user AS party ON party.id = top.counterparty_id
    ORDER BY top.amount DESC, top.count DESC, top.counterparty_id
"""  # noqa: S608 - constants only; values travel as parameters

_CATEGORIES = f"""
    SELECT category, SUM(amount)::bigint AS amount, COUNT(*) AS count
    FROM wallet_ledgerentry
    WHERE {_OWN_LINES} AND direction = 'debit'
    GROUP BY category
    ORDER BY amount DESC, count DESC, category
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


def _period(user: User, start: datetime, end: datetime) -> dict:
    return {"wallet": wallet_id_of(user), "start": start, "end": end}


def divide_half_up(total: int, parts: int) -> int:
    """``total / parts`` rounded half-up to an integer (paise); 0 when there are no parts."""
    if parts == 0:
        return 0
    quotient, remainder = divmod(total, parts)
    return quotient + (1 if 2 * remainder >= parts else 0)


def summary_for(*, user: User, start: datetime, end: datetime) -> Summary:
    """Totals of the user's ledger lines in ``[start, end)`` and their top counterparties (by
    money sent to and received from them, then by number of transfers)."""
    totals, *parties = _rows(_SUMMARY, _period(user, start, end))
    columns = dict(zip(_SUMMARY_COLUMNS, totals, strict=True))
    top = []
    for row in parties:
        party = dict(zip(_SUMMARY_COLUMNS, row, strict=True))
        name = f"{party['first_name']} {party['last_name']}".strip()
        top.append(
            Counterparty(
                quickpe_id=party["quickpe_id"],
                name=name,
                amount=party["party_amount"],
                count=party["party_count"],
            )
        )
    return Summary(
        start=start,
        end=end,
        sent=columns["sent"],
        received=columns["received"],
        deposited=columns["deposited"],
        withdrawn=columns["withdrawn"],
        net=columns["net"],
        count=columns["count"],
        average_sent=divide_half_up(columns["sent"], columns["sent_count"]),
        top_counterparties=top,
    )


_SUMMARY_COLUMNS = (
    "is_total",
    "counterparty_id",
    "sent",
    "sent_count",
    "received",
    "deposited",
    "withdrawn",
    "net",
    "count",
    "party_amount",
    "party_count",
    "quickpe_id",
    "first_name",
    "last_name",
)


def top_counterparties_for(
    *, user: User, start: datetime, end: datetime, limit: int = TOP_COUNTERPARTIES
) -> list[Counterparty]:
    """Who the user moved the most money with in ``[start, end)``, ranked as in the summary."""
    rows = _rows(_TOP_COUNTERPARTIES, {**_period(user, start, end), "limit": limit})
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
    zone = ZoneInfo(settings.QUICKPE_BUSINESS_TIME_ZONE)
    first = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
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
    params = {
        **_period(user, start, end),
        "unit": interval,
        "zone": settings.QUICKPE_BUSINESS_TIME_ZONE,
    }
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


def categories_for(*, user: User, start: datetime, end: datetime) -> list[CategoryShare]:
    """Outgoing money (every debit line) in ``[start, end)`` per category, largest first, with
    each category's share of the total; empty when nothing went out."""
    rows = _rows(_CATEGORIES, _period(user, start, end))
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
