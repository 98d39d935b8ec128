"""Daily figures: the ledger summed per wallet and business day by a database trigger, which the
analytics read for whole days. They must equal the ledger whatever writes it, and a period cut
mid-day at both ends must read figures and lines together without counting a line twice or
missing one."""

from collections import defaultdict
from datetime import date, timedelta

import pgtrigger
import pytest

from analytics import selectors
from analytics.models import CounterpartyFigure, DailyFigure
from tests.conftest import client_for, fund, make_user
from tests.invariants import assert_figures_match_the_ledger
from tests.test_analytics import (
    CATEGORIES,
    SUMMARY,
    TIMESERIES,
    _roomy_limits,  # noqa: F401 - autouse fixture
    as_paise,
    deposit,
    figures_from_transactions,
    ist,
    move,
    people,  # noqa: F401 - fixture
    reversal,
    send,
    utc,
    wire,
    withdraw,
)
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db


def test_figures_follow_inserts_updates_and_deletes_of_ledger_lines(people):  # noqa: F811
    alice, bob, _carol = people
    out, incoming = send(alice, bob, 120_00, ist(2026, 3, 4, 23, 59), "food")
    send(alice, bob, 30_00, ist(2026, 3, 4, 9, 0), "food")
    assert_figures_match_the_ledger()
    food = DailyFigure.objects.get(
        wallet=alice.wallet, day="2026-03-04", kind="transfer_out", category="food"
    )
    assert (food.amount, food.lines) == (150_00, 2)
    with_bob = CounterpartyFigure.objects.get(wallet=alice.wallet, counterparty=bob)
    assert (with_bob.month.isoformat(), with_bob.amount, with_bob.lines) == (
        "2026-03-01",
        150_00,
        2,
    )

    # Moved past the Kolkata midnight: one line leaves the 4 March figure for 5 March's.
    move([out, incoming], ist(2026, 3, 5, 0, 1))
    assert_figures_match_the_ledger()
    food.refresh_from_db()
    assert (food.amount, food.lines) == (30_00, 1)
    # And into April: the March figure with Bob shrinks, an April one appears.
    move([out, incoming], ist(2026, 4, 1, 0, 0))
    assert_figures_match_the_ledger()
    assert sorted(
        CounterpartyFigure.objects.filter(wallet=alice.wallet).values_list("month", "amount")
    ) == [(date(2026, 3, 1), 30_00), (date(2026, 4, 1), 120_00)]

    # A line deleted by hand (the ledger refuses it unless its trigger is lifted) takes its
    # figure with it when it was the figure's only line.
    correction = reversal(alice, 5_00, "debit", ist(2026, 3, 6, 12, 0))
    assert DailyFigure.objects.filter(wallet=alice.wallet, day="2026-03-06").count() == 1
    with pgtrigger.ignore("wallet.LedgerEntry:wallet_ledgerentry_append_only"):
        LedgerEntry.objects.filter(pk=correction.pk).delete()
    assert not DailyFigure.objects.filter(wallet=alice.wallet, day="2026-03-06").exists()
    assert_figures_match_the_ledger()


def test_a_period_cut_mid_day_at_both_ends_counts_every_line_once(people):  # noqa: F811
    alice, bob, carol = people
    start, end = ist(2026, 3, 3, 12, 0), ist(2026, 3, 7, 6, 0)
    send(alice, bob, 1_00, start - timedelta(microseconds=1))  # same day, before: out
    send(alice, bob, 2_00, start, "food")  # head
    send(bob, alice, 4_00, ist(2026, 3, 3, 23, 59, 59))  # head, last instant of the day
    send(alice, carol, 8_00, ist(2026, 3, 4, 0, 0), "bills")  # first whole day
    deposit(alice, 16_00, ist(2026, 3, 5, 13, 0))  # whole day
    withdraw(alice, 32_00, ist(2026, 3, 6, 23, 59))  # last whole day
    reversal(alice, 64_00, "credit", ist(2026, 3, 7, 0, 0))  # tail
    send(alice, carol, 128_00, end - timedelta(microseconds=1), "food")  # tail, last instant
    send(alice, bob, 256_00, end)  # out
    client = client_for(alice)
    period = {"from": wire(start), "to": wire(end)}

    summary = client.get(SUMMARY, period).json()
    timeseries = client.get(TIMESERIES, period).json()
    categories = client.get(CATEGORIES, period).json()

    assert as_paise(summary) == {
        "sent": 2_00 + 8_00 + 128_00,
        "received": 4_00,
        "deposited": 16_00,
        "withdrawn": 32_00,
        "net": 4_00 + 16_00 + 64_00 - 2_00 - 8_00 - 32_00 - 128_00,
        "count": 7,
    }
    assert as_paise(summary) == figures_from_transactions(
        client, created_after=wire(start), created_before=wire(end)
    )
    assert [(party["quickpe_id"], party["amount"]) for party in summary["top_counterparties"]] == [
        (carol.quickpe_id, "136.00"),
        (bob.quickpe_id, "6.00"),
    ]
    assert [(bucket["start"], bucket["count"]) for bucket in timeseries["buckets"]] == [
        ("2026-03-03", 2),
        ("2026-03-04", 1),
        ("2026-03-05", 1),
        ("2026-03-06", 1),
        ("2026-03-07", 2),
    ]
    assert [(row["category"], row["amount"], row["count"]) for row in categories] == [
        ("food", "130.00", 2),
        ("other", "32.00", 1),  # the withdrawal: every debit line is money out
        ("bills", "8.00", 1),
    ]
    # The two whole days in the middle came from figures: the same answer as from lines alone.
    assert (
        selectors.money_out_for(wallet=alice.wallet.pk, start=start, end=end)
        == 2_00 + 8_00 + 32_00 + 128_00
    )


def test_top_counterparties_over_cut_and_whole_months(people):  # noqa: F811
    alice, bob, carol = people
    start, end = ist(2026, 2, 15, 12, 0), ist(2026, 4, 3, 6, 0)
    send(alice, carol, 500_00, start - timedelta(microseconds=1))  # before: out
    send(alice, bob, 10_00, start)  # cut February
    send(carol, alice, 20_00, ist(2026, 2, 28, 23, 59))  # cut February, its last instant
    send(alice, bob, 30_00, ist(2026, 3, 1, 0, 0))  # March, whole
    send(bob, alice, 40_00, ist(2026, 3, 31, 23, 59))  # March, whole
    send(alice, carol, 50_00, ist(2026, 4, 1, 0, 0))  # cut April
    send(alice, carol, 60_00, end - timedelta(microseconds=1))  # cut April, last instant
    send(alice, bob, 700_00, end)  # after: out
    client = client_for(alice)

    body = client.get(SUMMARY, {"from": wire(start), "to": wire(end)}).json()

    assert [
        (party["quickpe_id"], party["amount"], party["count"])
        for party in body["top_counterparties"]
    ] == [(carol.quickpe_id, "130.00", 3), (bob.quickpe_id, "80.00", 3)]
    assert as_paise(body) == figures_from_transactions(
        client, created_after=wire(start), created_before=wire(end)
    )
    top = selectors.top_counterparties_for(user=alice, start=start, end=end, limit=1)
    assert [(party.quickpe_id, party.amount) for party in top] == [(carol.quickpe_id, 130_00)]


def test_a_period_inside_one_day_reads_lines_only(people):  # noqa: F811
    alice, bob, _carol = people
    send(alice, bob, 3_00, utc(2026, 5, 1, 10, 0))
    send(alice, bob, 5_00, utc(2026, 5, 1, 10, 30))
    client = client_for(alice)

    body = client.get(
        SUMMARY, {"from": wire(utc(2026, 5, 1, 10, 15)), "to": wire(utc(2026, 5, 1, 11))}
    ).json()

    assert (body["sent"], body["count"]) == ("5.00", 1)


def parties_from_lines(user, start, end) -> list[tuple[str, int, int]]:
    """The top counterparties summed from the ledger lines themselves."""
    sums = defaultdict(lambda: [0, 0])
    for line in LedgerEntry.objects.filter(
        wallet__user=user,
        created_at__gte=start,
        created_at__lt=end,
        kind__in=["transfer_in", "transfer_out"],
    ).select_related("counterparty"):
        sums[line.counterparty.quickpe_id][0] += line.amount
        sums[line.counterparty.quickpe_id][1] += 1
    ranked = sorted(sums.items(), key=lambda item: (-item[1][0], -item[1][1]))
    return [(quickpe_id, amount, count) for quickpe_id, (amount, count) in ranked]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        # Cut months read as whole months minus the lines outside the period...
        (ist(2026, 2, 3, 0, 0), ist(2026, 4, 25, 0, 0)),
        (ist(2026, 3, 2, 8, 0), ist(2026, 3, 30, 20, 0)),
        # ...or as their lines inside it, whichever is shorter.
        (ist(2026, 2, 20, 0, 0), ist(2026, 4, 5, 0, 0)),
        (ist(2026, 3, 10, 0, 0), ist(2026, 3, 12, 0, 0)),
        # Exactly whole months, and one ending on a month's first instant.
        (ist(2026, 2, 1), ist(2026, 5, 1)),
        (ist(2026, 2, 14), ist(2026, 4, 1)),
    ],
)
def test_top_counterparties_equal_the_lines_whatever_the_cut(people, start, end):  # noqa: F811
    alice, bob, carol = people
    dave = make_user("Dave")
    fund(dave, 1_000_00)
    moments = [
        ist(2026, 1, 31, 23, 59),
        ist(2026, 2, 1, 0, 0),
        ist(2026, 2, 2, 12, 0),
        ist(2026, 2, 21, 9, 0),
        ist(2026, 3, 1, 0, 0),
        ist(2026, 3, 1, 7, 0),
        ist(2026, 3, 11, 13, 0),
        ist(2026, 3, 30, 21, 0),
        ist(2026, 4, 4, 10, 0),
        ist(2026, 4, 20, 10, 0),
        ist(2026, 4, 26, 10, 0),
        ist(2026, 4, 30, 23, 59),
    ]
    parties = [bob, carol, dave]
    for index, moment in enumerate(moments):
        party = parties[index % 3]
        if index % 4 == 3:
            send(party, alice, (index + 1) * 3_00, moment)
        else:
            send(alice, party, (index + 1) * 7_00, moment)

    found = selectors.top_counterparties_for(user=alice, start=start, end=end, limit=10)

    assert [(party.quickpe_id, party.amount, party.count) for party in found] == (
        parties_from_lines(alice, start, end)
    )
