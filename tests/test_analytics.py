"""Analytics endpoints: figures equal the ledger as `/transactions` shows it, to the paisa.

Lines are made through the money services, then moved to chosen instants (the ledger refuses
UPDATE, so the test lifts its append-only trigger for that one statement): both sides of an
Asia/Kolkata midnight (18:29 and 18:31 UTC), a Sunday/Monday boundary, month ends. Each figure is
checked twice: against exact expected values, and against sums over the `/transactions` pages
for the same period.
"""

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pgtrigger
import pytest
from django.db.models import Sum
from django.utils import timezone

from analytics import insights, selectors
from analytics.models import Export
from quickpe.money import format_inr, format_paise
from tests.conftest import (
    assert_problem,
    client_for,
    make_user,
    same_business_day,
    snapshot,
    wallet_status_set,
)
from tests.test_admin import staff_in
from wallet.models import LedgerEntry, User, Wallet
from wallet.services.money import (
    deposit_create,
    transfer_create,
    withdrawal_create,
)

IST = ZoneInfo("Asia/Kolkata")
SUMMARY = "/api/v1/analytics/summary"
TIMESERIES = "/api/v1/analytics/timeseries"
CATEGORIES = "/api/v1/analytics/categories"
INSIGHTS = "/api/v1/analytics/insights"
KPI = "/api/v1/analytics/kpi"
TRANSACTIONS = "/api/v1/transactions"
ZERO_FIGURES = {"sent": "0.00", "received": "0.00", "deposited": "0.00", "withdrawn": "0.00"}


@pytest.fixture(autouse=True)
def _roomy_limits(settings):
    # Tests put many movements on one real day; the daily limits are not what is tested here.
    settings.QUICKPE_DAILY_DEPOSIT_LIMIT = 10**12
    settings.QUICKPE_DAILY_OUTGOING_LIMIT = 10**12
    settings.QUICKPE_MAX_PER_TRANSACTION = 10**10
    settings.QUICKPE_MAX_BALANCE = 10**13


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def ist(*parts) -> datetime:
    return datetime(*parts, tzinfo=IST)


def wire(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def move(entries, moment: datetime) -> None:
    ids = [entry.pk for entry in entries]
    with pgtrigger.ignore("wallet.LedgerEntry:wallet_ledgerentry_append_only"):
        assert LedgerEntry.objects.filter(pk__in=ids).update(created_at=moment) == len(ids)


def deposit(user: User, paise: int, at: datetime) -> LedgerEntry:
    entry = deposit_create(user=user, amount=paise).entry
    move([entry], at)
    return entry


def withdraw(user: User, paise: int, at: datetime) -> LedgerEntry:
    entry = withdrawal_create(user=user, amount=paise).entry
    move([entry], at)
    return entry


def send(sender: User, recipient: User, paise: int, at: datetime, category="transfer"):
    """A transfer at ``at``; returns (the sender's line, the recipient's line)."""
    movement = transfer_create(sender=sender, recipient=recipient, amount=paise, category=category)
    credit = LedgerEntry.objects.get(transfer=movement.transfer, kind="transfer_in")
    move([movement.entry, credit], at)
    return movement.entry, credit


def reversal(user: User, paise: int, direction: str, at: datetime) -> LedgerEntry:
    """A reversal line as a correction would write it (the ledger accepts them; analytics must
    count them in net and count only)."""
    wallet = Wallet.objects.get(user=user)
    return LedgerEntry.objects.create(
        wallet=wallet,
        kind="reversal",
        direction=direction,
        amount=paise,
        balance_after=wallet.balance,
        category="other",
        reference=f"TXNREV{LedgerEntry.objects.count():010d}",
        created_at=at,
    )


def paise(amount: str) -> int:
    return int(Decimal(amount) * 100)


def ledger_pages(client, **filters) -> list[dict]:
    """Every line `/transactions` lists for ``filters``, following the cursor."""
    response = client.get(TRANSACTIONS, {**filters, "page_size": 100})
    lines = []
    while True:
        assert response.status_code == 200, response.content
        page = response.json()
        lines += page["results"]
        if not page["next"]:
            return lines
        response = client.get(page["next"])


def figures_from_transactions(client, **filters) -> dict:
    """The summary figures, computed the way a client of `/transactions` would."""
    sums = Counter()
    lines = ledger_pages(client, **filters)
    for line in lines:
        sums[line["kind"]] += paise(line["amount"])
        sums[line["direction"]] += paise(line["amount"])
    return {
        "sent": sums["transfer_out"],
        "received": sums["transfer_in"],
        "deposited": sums["deposit"],
        "withdrawn": sums["withdrawal"],
        "net": sums["credit"] - sums["debit"],
        "count": len(lines),
    }


def as_paise(figures: dict) -> dict:
    return {
        key: value if key == "count" else paise(value)
        for key, value in figures.items()
        if key in ("sent", "received", "deposited", "withdrawn", "net", "count")
    }


@pytest.fixture
def people(db):
    alice, bob, carol = make_user("Alice", "Sharma"), make_user("Bob", "Verma"), make_user("Carol")
    for person in (alice, bob, carol):
        deposit(person, 10_000_000_00, utc(2025, 1, 1))
    return alice, bob, carol


# --- summary ------------------------------------------------------------------------------


def test_summary_splits_lines_at_the_kolkata_midnight_like_transactions(people):
    alice, bob, carol = people
    # 2026-03-04 18:29 UTC is 23:59 on 4 March in Kolkata; 18:31 UTC is 00:01 on 5 March.
    send(alice, bob, 100_00, utc(2026, 3, 4, 18, 29), "food")
    send(alice, carol, 250_50, utc(2026, 3, 4, 18, 31), "food")
    send(bob, alice, 40_00, utc(2026, 3, 5, 12, 0))
    deposit(alice, 1_000_00, utc(2026, 3, 5, 18, 29, 59))
    withdraw(alice, 300_00, utc(2026, 3, 5, 18, 30))  # 00:00 on 6 March: outside
    client = client_for(alice)

    response = client.get(SUMMARY, {"from": "2026-03-05", "to": "2026-03-05"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "from": "2026-03-04T18:30:00.000000Z",
        "to": "2026-03-05T18:30:00.000000Z",
        "sent": "250.50",
        "received": "40.00",
        "deposited": "1000.00",
        "withdrawn": "0.00",
        "net": "789.50",
        "count": 3,
        "average_sent": "250.50",
        "top_counterparties": [
            {"quickpe_id": carol.quickpe_id, "name": "Carol User", "amount": "250.50", "count": 1},
            {"quickpe_id": bob.quickpe_id, "name": "Bob Verma", "amount": "40.00", "count": 1},
        ],
    }
    expected = figures_from_transactions(
        client, created_after="2026-03-05", created_before="2026-03-05"
    )
    assert as_paise(body) == expected


def test_summary_datetime_bounds_are_inclusive_then_exclusive(people):
    alice, bob, _carol = people
    start, end = utc(2026, 5, 1, 10, 0), utc(2026, 5, 1, 11, 0)
    send(alice, bob, 1_00, start - timedelta(microseconds=1))
    send(alice, bob, 2_00, start)
    send(alice, bob, 4_00, end - timedelta(microseconds=1))
    send(alice, bob, 8_00, end)
    client = client_for(alice)

    body = client.get(SUMMARY, {"from": wire(start), "to": wire(end)}).json()

    assert (body["sent"], body["count"], body["from"], body["to"]) == (
        "6.00",
        2,
        wire(start),
        wire(end),
    )
    assert as_paise(body) == figures_from_transactions(
        client, created_after=wire(start), created_before=wire(end)
    )
    # A datetime without a zone is UTC, as in /transactions.
    naive = client.get(SUMMARY, {"from": "2026-05-01T10:00:00", "to": "2026-05-01T11:00:00"})
    assert naive.json()["sent"] == "6.00"


def test_summary_average_top_counterparties_and_reversals(people):
    alice, bob, carol = people
    others = [make_user("Party", str(number)) for number in range(5)]
    day = ist(2026, 6, 10, 12, 0)
    send(alice, bob, 100_00, day)
    send(alice, bob, 100_01, day)  # average of 100.00 and 100.01 is 100.005: half-up 100.01
    send(carol, alice, 150_00, day)
    send(alice, carol, 50_00, day)  # carol: 200.00 over 2 transfers, bob 200.01 over 2
    for number, other in enumerate(others):
        deposit(other, 1_000_00, day)
        send(other, alice, (number + 1) * 10_00, day)
    withdraw(alice, 70_00, day)
    reversal(alice, 30_00, "debit", day)
    reversal(alice, 5_00, "credit", day)
    client = client_for(alice)

    body = client.get(SUMMARY, {"from": "2026-06-10", "to": "2026-06-10"}).json()

    assert {key: body[key] for key in ("sent", "received", "withdrawn", "count")} == {
        "sent": "250.01",
        "received": "300.00",  # 150 + 10 + 20 + 30 + 40 + 50
        "withdrawn": "70.00",
        "count": 12,  # 3 sent, 6 received, 1 withdrawal, 2 reversals
    }
    # Reversals move net (-30 + 5) but neither sent nor received.
    assert body["net"] == "-45.01"  # 300.00 + 5.00 - 250.01 - 70.00 - 30.00
    assert body["average_sent"] == "83.34"  # 250.01 / 3 = 83.3366...
    assert [(p["quickpe_id"], p["amount"], p["count"]) for p in body["top_counterparties"]] == [
        (bob.quickpe_id, "200.01", 2),
        (carol.quickpe_id, "200.00", 2),
        (others[4].quickpe_id, "50.00", 1),
        (others[3].quickpe_id, "40.00", 1),
        (others[2].quickpe_id, "30.00", 1),
    ]
    assert as_paise(body) == figures_from_transactions(
        client, created_after="2026-06-10", created_before="2026-06-10"
    )
    # The ranking alone (insights use it) is the summary's.
    alone = selectors.top_counterparties_for(
        user=alice, start=ist(2026, 6, 10), end=ist(2026, 6, 11)
    )
    assert [(p.quickpe_id, p.name, p.amount, p.count) for p in alone] == [
        (p["quickpe_id"], p["name"], paise(p["amount"]), p["count"])
        for p in body["top_counterparties"]
    ]


def test_average_sent_rounds_half_up_to_the_paisa():
    assert selectors.divide_half_up(20001, 2) == 10001  # 100.005 -> 100.01
    assert selectors.divide_half_up(20003, 3) == 6668  # 66.676... -> 66.68
    assert selectors.divide_half_up(10, 4) == 3  # 0.025 -> 0.03
    assert selectors.divide_half_up(9, 4) == 2  # 0.0225 -> 0.02
    assert selectors.divide_half_up(500, 0) == 0


def test_summary_without_lines_is_zeros(people):
    alice, _bob, _carol = people
    body = client_for(alice).get(SUMMARY, {"from": "2024-01-01", "to": "2024-12-31"}).json()
    assert body == {
        "from": "2023-12-31T18:30:00.000000Z",
        "to": "2024-12-31T18:30:00.000000Z",
        **ZERO_FIGURES,
        "net": "0.00",
        "count": 0,
        "average_sent": "0.00",
        "top_counterparties": [],
    }


def test_another_users_lines_are_never_counted(people):
    alice, bob, carol = people
    day = utc(2026, 7, 1, 6, 0)
    send(alice, bob, 10_00, day, "food")
    send(bob, carol, 999_00, day, "bills")
    deposit(bob, 5_000_00, day)
    withdraw(carol, 77_00, day)
    query = {"from": "2026-07-01", "to": "2026-07-01"}
    client = client_for(alice)

    summary = client.get(SUMMARY, query).json()
    series = client.get(TIMESERIES, {**query, "interval": "day"}).json()
    categories = client.get(CATEGORIES, query).json()

    assert (summary["sent"], summary["received"], summary["count"]) == ("10.00", "0.00", 1)
    assert [p["quickpe_id"] for p in summary["top_counterparties"]] == [bob.quickpe_id]
    assert series["buckets"] == [
        {"start": "2026-07-01", **ZERO_FIGURES, "sent": "10.00", "count": 1}
    ]
    assert categories == [{"category": "food", "amount": "10.00", "count": 1, "share": "1.0000"}]


@same_business_day
def test_defaults_are_the_last_30_kolkata_days_today_included(people):
    alice, bob, _carol = people
    today = timezone.now().astimezone(IST).date()
    first_day = ist(today.year, today.month, today.day) - timedelta(days=29)
    send(alice, bob, 1_00, first_day - timedelta(microseconds=1))  # 30 days ago: outside
    send(alice, bob, 2_00, first_day)
    send(alice, bob, 4_00, timezone.now() - timedelta(seconds=1))
    client = client_for(alice)

    body = client.get(SUMMARY).json()
    series = client.get(TIMESERIES).json()

    assert (body["from"], body["to"]) == (wire(first_day), wire(first_day + timedelta(days=30)))
    assert (body["sent"], body["count"]) == ("6.00", 2)
    assert series["interval"] == "day"
    assert len(series["buckets"]) == 30
    assert (series["buckets"][0]["start"], series["buckets"][-1]["start"]) == (
        first_day.date().isoformat(),
        today.isoformat(),
    )
    assert series["buckets"][0]["sent"] == "2.00"
    # Only `to`: the 30 days that end with it.
    only_to = client.get(SUMMARY, {"to": "2026-02-28"}).json()
    assert (only_to["from"], only_to["to"]) == (
        "2026-01-29T18:30:00.000000Z",
        "2026-02-28T18:30:00.000000Z",
    )


# --- timeseries ---------------------------------------------------------------------------


def assert_buckets_equal_transactions(client, body: dict, start: datetime, end: datetime):
    """Each bucket equals `/transactions` over the part of the period it covers."""
    for bucket in body["buckets"]:
        first = date.fromisoformat(bucket["start"])
        if body["interval"] == "day":
            following = first + timedelta(days=1)
        elif body["interval"] == "week":
            following = first + timedelta(days=7)
        else:
            following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        low = max(start, ist(first.year, first.month, first.day))
        high = min(end, ist(following.year, following.month, following.day))
        expected = figures_from_transactions(
            client, created_after=wire(low), created_before=wire(high)
        )
        del expected["net"]
        assert as_paise(bucket) == expected, bucket


def test_timeseries_days_cross_midnight_and_keep_empty_days(people):
    alice, bob, _carol = people
    send(alice, bob, 100_00, utc(2026, 3, 4, 18, 29))  # 4 March IST
    send(alice, bob, 200_00, utc(2026, 3, 4, 18, 31))  # 5 March IST
    send(bob, alice, 30_00, utc(2026, 3, 7, 18, 29))  # 7 March IST
    deposit(alice, 5_00, utc(2026, 3, 7, 18, 30))  # 8 March IST
    client = client_for(alice)

    body = client.get(TIMESERIES, {"from": "2026-03-04", "to": "2026-03-08"}).json()

    assert body == {
        "interval": "day",
        "buckets": [
            {"start": "2026-03-04", **ZERO_FIGURES, "sent": "100.00", "count": 1},
            {"start": "2026-03-05", **ZERO_FIGURES, "sent": "200.00", "count": 1},
            {"start": "2026-03-06", **ZERO_FIGURES, "count": 0},
            {"start": "2026-03-07", **ZERO_FIGURES, "received": "30.00", "count": 1},
            {"start": "2026-03-08", **ZERO_FIGURES, "deposited": "5.00", "count": 1},
        ],
    }
    assert_buckets_equal_transactions(client, body, ist(2026, 3, 4), ist(2026, 3, 9))


def test_timeseries_weeks_start_on_monday_in_kolkata(people):
    alice, bob, _carol = people
    # Sunday 2026-03-08 23:59 IST and Monday 2026-03-09 00:01 IST.
    send(alice, bob, 10_00, ist(2026, 3, 8, 23, 59))
    send(alice, bob, 20_00, ist(2026, 3, 9, 0, 1))
    withdraw(alice, 40_00, ist(2026, 3, 22, 23, 59, 59))  # last second of a Sunday
    client = client_for(alice)
    start, end = ist(2026, 3, 4, 12, 0), ist(2026, 3, 25)  # Wednesday noon to Wednesday

    body = client.get(
        TIMESERIES, {"from": wire(start), "to": "2026-03-24", "interval": "week"}
    ).json()

    assert body == {
        "interval": "week",
        "buckets": [
            {"start": "2026-03-02", **ZERO_FIGURES, "sent": "10.00", "count": 1},
            {"start": "2026-03-09", **ZERO_FIGURES, "sent": "20.00", "count": 1},
            {"start": "2026-03-16", **ZERO_FIGURES, "withdrawn": "40.00", "count": 1},
            {"start": "2026-03-23", **ZERO_FIGURES, "count": 0},
        ],
    }
    assert_buckets_equal_transactions(client, body, start, end)


def test_timeseries_months_cut_at_kolkata_month_ends(people):
    alice, bob, _carol = people
    send(alice, bob, 1_00, ist(2026, 1, 31, 23, 59))  # January in Kolkata...
    send(alice, bob, 2_00, utc(2026, 1, 31, 18, 31))  # ...and 00:01 on 1 February there
    send(bob, alice, 4_00, ist(2026, 2, 28, 23, 59, 59))
    deposit(alice, 8_00, ist(2026, 4, 1, 0, 0))
    deposit(alice, 16_00, ist(2026, 4, 30, 12, 0))  # after `to`: not counted
    client = client_for(alice)
    start, end = ist(2026, 1, 1), ist(2026, 4, 15)

    body = client.get(
        TIMESERIES, {"from": "2026-01-01", "to": "2026-04-14", "interval": "month"}
    ).json()

    assert body == {
        "interval": "month",
        "buckets": [
            {"start": "2026-01-01", **ZERO_FIGURES, "sent": "1.00", "count": 1},
            {
                "start": "2026-02-01",
                **ZERO_FIGURES,
                "sent": "2.00",
                "received": "4.00",
                "count": 2,
            },
            {"start": "2026-03-01", **ZERO_FIGURES, "count": 0},
            {"start": "2026-04-01", **ZERO_FIGURES, "deposited": "8.00", "count": 1},
        ],
    }
    assert_buckets_equal_transactions(client, body, start, end)


def test_timeseries_one_bucket_for_a_short_period_inside_a_day(people):
    alice, bob, _carol = people
    send(alice, bob, 3_00, utc(2026, 8, 1, 5, 0))
    start, end = utc(2026, 8, 1, 4, 0), utc(2026, 8, 1, 6, 0)
    body = client_for(alice).get(TIMESERIES, {"from": wire(start), "to": wire(end)}).json()
    assert body["buckets"] == [{"start": "2026-08-01", **ZERO_FIGURES, "sent": "3.00", "count": 1}]


def test_bucket_count_matches_the_buckets_returned(people):
    alice, _bob, _carol = people
    client = client_for(alice)
    cases = [
        ("2026-01-01", "2026-12-31", "day", 365),
        ("2026-01-01", "2026-12-31", "week", 53),  # Mon 29 Dec 2025 .. Mon 28 Dec 2026
        ("2026-01-01", "2026-12-31", "month", 12),
        ("2024-02-29", "2024-03-01", "day", 2),
    ]
    for start, end, interval, expected in cases:
        body = client.get(TIMESERIES, {"from": start, "to": end, "interval": interval}).json()
        assert len(body["buckets"]) == expected
        bounds = {"start": ist(*map(int, start.split("-"))), "interval": interval}
        end_day = date.fromisoformat(end) + timedelta(days=1)
        bounds["end"] = ist(end_day.year, end_day.month, end_day.day)
        assert selectors.bucket_count(**bounds) == expected


# --- categories ---------------------------------------------------------------------------


def test_categories_are_outgoing_only_and_shares_sum_to_exactly_one(people):
    alice, bob, carol = people
    day = ist(2026, 9, 15, 9, 0)
    send(alice, bob, 100_00, day, "food")
    send(alice, carol, 100_00, day, "bills")
    send(alice, bob, 50_00, day, "shopping")
    withdraw(alice, 50_00, day)  # withdrawals are outgoing, category "other"
    send(bob, alice, 10_000_00, day, "health")  # incoming: not a category of alice's
    deposit(alice, 500_00, day)
    client = client_for(alice)

    body = client.get(CATEGORIES, {"from": "2026-09-15", "to": "2026-09-15"}).json()

    assert body == [
        {"category": "bills", "amount": "100.00", "count": 1, "share": "0.3333"},
        {"category": "food", "amount": "100.00", "count": 1, "share": "0.3333"},
        {"category": "other", "amount": "50.00", "count": 1, "share": "0.1667"},
        {"category": "shopping", "amount": "50.00", "count": 1, "share": "0.1667"},
    ]
    assert sum(Decimal(row["share"]) for row in body) == 1
    debits = ledger_pages(
        client, created_after="2026-09-15", created_before="2026-09-15", direction="debit"
    )
    by_category = Counter()
    for line in debits:
        by_category[line["category"]] += paise(line["amount"])
    assert {row["category"]: paise(row["amount"]) for row in body} == by_category


def test_category_shares_use_largest_remainder():
    assert selectors.shares([1, 1, 1]) == ["0.3334", "0.3333", "0.3333"]
    assert selectors.shares([2, 1, 1, 1, 1, 1, 1]) == [
        "0.2500",
        "0.1250",
        "0.1250",
        "0.1250",
        "0.1250",
        "0.1250",
        "0.1250",
    ]
    # 0.66667, 0.16667, 0.16667: floors 6666 + 1666 + 1666 leave two units; the remainders
    # tie, so the earlier (larger) items get them.
    assert selectors.shares([4, 1, 1]) == ["0.6667", "0.1667", "0.1666"]
    # 0.7142857, 0.1428571 x2: floors 7142 + 1428 + 1428 leave two units; remainders
    # 0.857 (first) and 0.571 (others): the first and then the second get one.
    assert selectors.shares([5, 1, 1]) == ["0.7143", "0.1429", "0.1428"]
    assert selectors.shares([10**15, 1]) == ["1.0000", "0.0000"]
    assert selectors.shares([7]) == ["1.0000"]
    assert selectors.shares([]) == []
    for amounts in ([3, 3, 3, 3, 3, 3, 7], [1] * 7, [999_999, 1, 1, 1], [17, 29, 31, 43]):
        assert sum(Decimal(share) for share in selectors.shares(amounts)) == 1


def test_categories_empty_when_nothing_went_out(people):
    alice, bob, _carol = people
    send(bob, alice, 10_00, ist(2026, 9, 1, 10, 0))
    body = client_for(alice).get(CATEGORIES, {"from": "2026-09-01", "to": "2026-09-01"}).json()
    assert body == []


# --- hostile input ------------------------------------------------------------------------

BAD_QUERIES = [
    ({"from": "2026-13-45"}, "from", "invalid"),
    ({"from": "2026-02-30"}, "from", "invalid"),
    ({"to": "yesterday"}, "to", "invalid"),
    ({"from": "22/11/2026"}, "from", "invalid"),
    ({"to": "2026-11-22T25:00:00Z"}, "to", "invalid"),
    ({"to": "9999-12-31"}, "to", "invalid"),  # its end of day is past year 9999
    ({"from": "2026-11-22T10:00:00+99:00"}, "from", "invalid"),
    ({"from": "2026-01-01" * 10}, "from", "max_length"),
    ({"from": "2026-11\x00-22"}, "from", "null_characters_not_allowed"),
    ({"from": "0001-01-01"}, "from", "out_of_range"),  # 0000-12-31 in UTC
    ({"to": "9999-12-31T23:59:59Z"}, "to", "out_of_range"),  # year 10000 in Kolkata
    ({"from": "2026-11-10", "to": "2026-11-09"}, "to", "invalid_period"),
    ({"from": "2026-11-10T10:00:00Z", "to": "2026-11-10T10:00:00Z"}, "to", "invalid_period"),
    ({"from": "2026-11-10T10:00:01Z", "to": "2026-11-10T10:00:00Z"}, "to", "invalid_period"),
]


@pytest.mark.parametrize("path", [SUMMARY, TIMESERIES, CATEGORIES])
@pytest.mark.parametrize(("query", "field", "code"), BAD_QUERIES)
def test_bad_periods_are_400_problems(people, path, query, field, code):
    alice, _bob, _carol = people
    before = snapshot()
    body = assert_problem(client_for(alice).get(path, query), 400, "validation_error")
    assert [(error["field"], error["code"]) for error in body["errors"]] == [(field, code)]
    assert snapshot() == before


@pytest.mark.parametrize("interval", ["year", "hour", "DAY", " day", "day;drop table"])
def test_unknown_interval_is_400(people, interval):
    alice, _bob, _carol = people
    response = client_for(alice).get(TIMESERIES, {"interval": interval})
    body = assert_problem(response, 400, "validation_error")
    assert [(error["field"], error["code"]) for error in body["errors"]] == [
        ("interval", "invalid_choice")
    ]


@pytest.mark.parametrize(
    ("query", "buckets"),
    [
        ({"from": "2020-01-01", "to": "2022-12-31", "interval": "day"}, 1096),
        ({"from": "0001-01-02", "interval": "day"}, None),
        ({"from": "0001-01-02", "to": "9999-12-30", "interval": "week"}, None),
        ({"from": "1800-01-01", "to": "2026-01-01", "interval": "month"}, 2713),
    ],
)
def test_too_many_buckets_is_400(people, query, buckets):
    alice, _bob, _carol = people
    body = assert_problem(client_for(alice).get(TIMESERIES, query), 400, "validation_error")
    [error] = body["errors"]
    assert (error["field"], error["code"]) == (None, "too_many_buckets")
    assert "at most 1000" in error["detail"]
    if buckets:
        assert f"spans {buckets} " in error["detail"]


def test_the_most_buckets_allowed_is_fine(people):
    alice, _bob, _carol = people
    body = client_for(alice).get(TIMESERIES, {"from": "2024-01-01", "to": "2026-09-26"}).json()
    assert len(body["buckets"]) == 1000


def test_huge_ranges_are_fine_where_there_are_no_buckets(people):
    alice, bob, _carol = people
    send(alice, bob, 12_34, utc(2026, 1, 1))
    client = client_for(alice)
    for query, sent in (
        ({"from": "0001-01-02", "to": "9999-12-30"}, "12.34"),
        ({"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T18:29:59.999999Z"}, "12.34"),
        ({"to": "0001-02-01"}, "0.00"),
        ({"to": "0001-01-20"}, "0.00"),  # the default `from` stops at 0001-01-01 UTC
    ):
        summary = client.get(SUMMARY, query)
        assert summary.status_code == 200, (query, summary.content)
        assert summary.json()["sent"] == sent
        categories = client.get(CATEGORIES, query)
        assert categories.status_code == 200, (query, categories.content)
        assert len(categories.json()) == (1 if sent != "0.00" else 0)


def test_unknown_query_parameters_are_ignored(people):
    alice, _bob, _carol = people
    response = client_for(alice).get(SUMMARY, {"page": "2", "created_after": "nonsense"})
    assert response.status_code == 200


@pytest.mark.parametrize("path", [SUMMARY, TIMESERIES, CATEGORIES, INSIGHTS, KPI])
def test_every_endpoint_needs_a_token(db, path):
    assert_problem(client_for(None).get(path), 401, "not_authenticated")


@pytest.mark.parametrize("path", [SUMMARY, TIMESERIES, CATEGORIES, INSIGHTS, KPI])
def test_analytics_are_read_only(people, path):
    alice, _bob, _carol = people
    staff, _browser = staff_in("support")
    assert_problem(client_for(staff).post(path, {}, format="json"), 405, "method_not_allowed")


# --- insights -----------------------------------------------------------------------------


def kinds(found) -> list[str]:
    return [insight.kind for insight in found]


def test_insights_from_a_chosen_month(people):
    alice, bob, carol = people
    now = ist(2026, 3, 20, 12, 0)
    # Baseline for unusual activity: six payments of Rs 100 between 13 Dec and 12 March.
    for day in (1, 5, 9, 13, 17, 21):
        send(alice, carol, 100_00, ist(2026, 1, day, 10, 0), "food")
    # February up to 20 Feb 12:00 (the same point last month): Rs 1,000; after it: Rs 700.
    send(alice, bob, 400_00, ist(2026, 2, 3, 9, 0), "bills")
    withdraw(alice, 600_00, ist(2026, 2, 20, 11, 59))
    send(alice, bob, 700_00, ist(2026, 2, 20, 12, 1), "bills")
    # March so far: Rs 2,500 + Rs 5,000, the latter unusual (50 times the median Rs 100).
    send(alice, bob, 2_500_00, ist(2026, 3, 2, 8, 0), "shopping")
    send(alice, carol, 5_000_00, ist(2026, 3, 18, 19, 0), "shopping")
    send(bob, alice, 6_000_00, ist(2026, 3, 1, 7, 0))
    send(alice, bob, 1_00, ist(2026, 3, 20, 12, 0))  # at `now`: spending, not the 30 days' end

    found = insights.insights_for(user=alice, now=now)

    assert [(i.kind, i.priority) for i in found] == [
        ("unusual_activity", "high"),
        ("spending_change", "high"),
        ("top_category", "medium"),
        ("largest_transaction", "low"),
        ("top_counterparty", "low"),
    ]
    by_kind = {insight.kind: insight for insight in found}
    assert by_kind["unusual_activity"].message == (
        "₹5,000.00 sent to Carol User on 18 March is 50 times your typical payment "
        "(₹100.00, the median of your payments before the last 7 days)."
    )
    assert by_kind["spending_change"].message == (
        "You have spent ₹7,501.00 so far in March, 650% more than by this point in February "
        "(₹1,000.00)."
    )
    # The last 30 days start on 19 February: 600 + 700 + 2,500 + 5,000 + 1 went out.
    assert by_kind["top_category"].message == (
        "Shopping was where most of your money went in the last 30 days: ₹7,500.00, 85% of "
        "your spending."
    )
    assert by_kind["largest_transaction"].message == (
        "Your largest transaction in the last 30 days was ₹6,000.00 received from Bob Verma "
        "on 1 March."
    )
    assert by_kind["top_counterparty"].message == (
        f"You moved the most money with Bob Verma ({bob.quickpe_id}) in the last 30 days: "
        "₹9,201.00 across 4 transfers."
    )


def test_top_category_share_in_words(people):
    alice, bob, carol = people
    now = ist(2026, 3, 20, 12, 0)
    send(alice, bob, 750_00, ist(2026, 3, 10, 9, 0), "shopping")
    send(alice, carol, 250_00, ist(2026, 3, 11, 9, 0), "food")
    found = {i.kind: i for i in insights.insights_for(user=alice, now=now)}
    assert found["top_category"].title == "Top category: Shopping"
    assert found["top_category"].message == (
        "Shopping was where most of your money went in the last 30 days: ₹750.00, 75% of your "
        "spending."
    )


def test_spending_change_wording(people):
    alice, bob, _carol = people
    now = ist(2026, 3, 31, 22, 0)  # compared with the whole of February (it is shorter)
    send(alice, bob, 1_000_00, ist(2026, 2, 28, 23, 0))
    send(alice, bob, 900_00, ist(2026, 3, 31, 21, 0))
    [change] = [
        i for i in insights.insights_for(user=alice, now=now) if i.kind == "spending_change"
    ]
    assert (change.priority, change.message) == (
        "medium",
        "You have spent ₹900.00 so far in March, 10% less than by this point in February "
        "(₹1,000.00).",
    )
    nothing_before = insights.insights_for(user=alice, now=ist(2026, 2, 28, 23, 30))
    [first] = [i for i in nothing_before if i.kind == "spending_change"]
    assert first.message == (
        "You have spent ₹1,000.00 so far in February; by this point in January you had spent "
        "nothing."
    )
    carol = make_user("Carol")
    deposit(carol, 1_000_00, ist(2026, 2, 1))
    send(carol, alice, 50_00, ist(2026, 3, 1, 8, 0))
    [quiet] = [
        i
        for i in insights.insights_for(user=carol, now=ist(2026, 4, 2, 12, 0))
        if i.kind == "spending_change"
    ]
    assert (quiet.priority, quiet.message) == (
        "medium",
        f"You have not spent anything yet in April; by this point in March you had spent "
        f"{format_inr(50_00)}.",
    )
    assert not [
        i
        for i in insights.insights_for(user=carol, now=ist(2026, 6, 2))
        if i.kind == "spending_change"
    ]


def test_unusual_activity_needs_a_baseline_and_a_real_outlier(people):
    alice, bob, _carol = people
    now = ist(2026, 5, 20, 12, 0)
    for day in range(1, 5):  # only four baseline payments: not enough to judge
        send(alice, bob, 100_00, ist(2026, 4, day, 10, 0))
    send(alice, bob, 10_000_00, ist(2026, 5, 19, 10, 0))
    assert "unusual_activity" not in kinds(insights.insights_for(user=alice, now=now))

    send(alice, bob, 100_00, ist(2026, 4, 5, 10, 0))  # the fifth
    assert "unusual_activity" in kinds(insights.insights_for(user=alice, now=now))
    # Seven days and two hours later the payment has left the recent window.
    assert "unusual_activity" not in kinds(
        insights.insights_for(user=alice, now=now + timedelta(days=6))
    )


def test_the_unusual_activity_baseline_is_the_latest_payments_only(people, monkeypatch):
    monkeypatch.setattr(insights, "UNUSUAL_BASELINE_PAYMENTS", 5)
    alice, bob, _carol = people
    now = ist(2026, 5, 20, 12, 0)
    # Older, large payments that would lift the median to Rs 5,000 if they counted...
    for day in range(1, 7):
        send(alice, bob, 5_000_00, ist(2026, 3, day, 10, 0))
    # ...but the last five before the recent week are Rs 100 each.
    for day in range(1, 6):
        send(alice, bob, 100_00, ist(2026, 4, day, 10, 0))
    send(alice, bob, 2_000_00, ist(2026, 5, 19, 10, 0))
    [unusual] = [
        i for i in insights.insights_for(user=alice, now=now) if i.kind == "unusual_activity"
    ]
    assert "20 times your typical payment (₹100.00" in unusual.message


def test_unusual_activity_ignores_small_sums(people):
    alice, bob, _carol = people
    now = ist(2026, 5, 20, 12, 0)
    for day in range(1, 7):
        send(alice, bob, 10_00, ist(2026, 4, day, 10, 0))
    send(alice, bob, 900_00, ist(2026, 5, 19, 10, 0))  # 90 times, but under Rs 1,000
    assert "unusual_activity" not in kinds(insights.insights_for(user=alice, now=now))
    send(alice, bob, 1_000_00, ist(2026, 5, 19, 11, 0))
    [unusual] = [
        i for i in insights.insights_for(user=alice, now=now) if i.kind == "unusual_activity"
    ]
    assert unusual.message.startswith("₹1,000.00 sent to Bob Verma on 19 May is 100 times")


def test_insights_endpoint(people):
    alice, bob, _carol = people
    now = timezone.now()
    send(alice, bob, 123_45, now - timedelta(minutes=5), "food")
    response = client_for(alice).get(INSIGHTS)
    assert response.status_code == 200
    body = response.json()
    assert {item["kind"] for item in body} >= {
        "top_category",
        "largest_transaction",
        "top_counterparty",
    }
    for item in body:
        assert set(item) == {"kind", "title", "message", "priority"}
    priorities = [insights.PRIORITIES.index(item["priority"]) for item in body]
    assert priorities == sorted(priorities)


def test_no_insights_without_lines(db):
    assert client_for(make_user()).get(INSIGHTS).json() == []


# --- KPI ----------------------------------------------------------------------------------


def test_kpi_is_staff_only(people):
    alice, _bob, _carol = people
    assert_problem(client_for(alice).get(KPI), 403, "permission_denied")


def test_kpi_figures_match_direct_queries(people):
    alice, bob, carol = people
    staff, _browser = staff_in("support")
    now = timezone.now()
    send(alice, bob, 100_00, now - timedelta(hours=2))
    send(bob, carol, 51_00, now - timedelta(hours=3))
    deposit(carol, 1_000_00, now - timedelta(hours=4))
    withdraw(alice, 20_00, now - timedelta(days=3))
    send(carol, alice, 300_00, now - timedelta(days=10))
    send(carol, bob, 999_00, now - timedelta(days=31))  # too old for every figure
    wallet_status_set(bob, Wallet.Status.FROZEN, actor=staff)
    for hours in (1, 30):
        Export.objects.create(
            user=alice,
            kind="statement",
            format="csv",
            period_start=now - timedelta(days=2),
            period_end=now - timedelta(days=1),
            created_at=now - timedelta(hours=hours),
        )

    body = client_for(staff).get(KPI).json()

    day, month = timezone.now() - timedelta(hours=24), timezone.now() - timedelta(days=30)
    movements = LedgerEntry.objects.exclude(kind="transfer_in")
    transfers = LedgerEntry.objects.filter(kind="transfer_out", created_at__gte=month)
    transferred = transfers.aggregate(total=Sum("amount"))["total"]
    assert body == {
        "users_total": User.objects.count(),
        "users_active_30d": User.objects.filter(wallet__entries__created_at__gte=month)
        .distinct()
        .count(),
        "wallets_frozen": Wallet.objects.filter(status="frozen").count(),
        "transactions_24h": movements.filter(created_at__gte=day).count(),
        "volume_24h": format_paise(
            movements.filter(created_at__gte=day).aggregate(total=Sum("amount"))["total"]
        ),
        "volume_30d": format_paise(
            movements.filter(created_at__gte=month).aggregate(total=Sum("amount"))["total"]
        ),
        "average_transfer_30d": format_paise(round(Decimal(transferred) / transfers.count())),
        "exports_24h": Export.objects.filter(created_at__gte=day).count(),
    }
    # And in figures known from the set-up: the database holds only this test's rows.
    assert body == {
        "users_total": 4,
        "users_active_30d": 3,
        "wallets_frozen": 1,
        "transactions_24h": 3,  # two transfers (once each) and a deposit
        "volume_24h": "1151.00",
        "volume_30d": "1471.00",  # + the withdrawal and the 10-day-old transfer
        "average_transfer_30d": "150.33",  # (100 + 51 + 300) / 3 = 150.333...
        "exports_24h": 1,
    }
