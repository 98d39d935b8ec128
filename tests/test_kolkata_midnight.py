"""The business day turns at midnight in Asia/Kolkata, 18:30 UTC, whatever the server's clock.

The clock is moved with time-machine (frozen, so every row written in a step carries exactly
that instant) to 00:00:00 IST on 31 March 2026, then to 23:59:59 IST the same day, then to
00:00:00 IST on 1 April. In UTC those are 30 March 18:30:00, 31 March 18:29:59 and 31 March
18:30:00: the first two are one Indian day on two UTC days, the last two two Indian days on
one UTC day, so code that counted UTC days would fail each test below.

API clients here are authenticated with ``force_authenticate``: the token check compares a
session's expiry with PostgreSQL's own clock, which time-machine does not move.
"""

import csv
import io
import uuid
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from analytics.models import DailyFigure, Export
from analytics.tasks import export_build
from audit.models import AuditEntry
from tests.conftest import snapshot
from tests.invariants import assert_money_invariants
from tests.test_admin import staff_in
from wallet.models import Wallet

pytestmark = pytest.mark.django_db
IST = ZoneInfo("Asia/Kolkata")
FIRST_SECOND_OF_31_MARCH = datetime(2026, 3, 31, 0, 0, 0, tzinfo=IST)  # 30 March 18:30:00 UTC
LAST_SECOND_OF_31_MARCH = datetime(2026, 3, 31, 23, 59, 59, tzinfo=IST)  # 31 March 18:29:59 UTC
FIRST_SECOND_OF_1_APRIL = datetime(2026, 4, 1, 0, 0, 0, tzinfo=IST)  # 31 March 18:30:00 UTC


@pytest.fixture
def clock(time_machine):
    """``clock(moment)`` stops the clock at ``moment``."""
    return lambda moment: time_machine.move_to(moment, tick=False)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post_money(client: APIClient, path: str, body: dict):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)


def deposit(client: APIClient, amount: str):
    return post_money(client, "/api/v1/wallet/deposits", {"amount": amount})


def withdraw(client: APIClient, amount: str):
    return post_money(client, "/api/v1/wallet/withdrawals", {"amount": amount})


def send(client: APIClient, recipient, amount: str):
    return post_money(
        client, "/api/v1/transfers", {"recipient": recipient.quickpe_id, "amount": amount}
    )


def refused_with(response) -> dict:
    """The limit a 409 names (its ``detail`` left out)."""
    assert response.status_code == 409, response.content
    error = response.json()["errors"][0]
    return {key: value for key, value in error.items() if key != "detail"}


def limits_of(client: APIClient) -> dict:
    return client.get("/api/v1/wallet").json()["limits"]


def counters(user) -> tuple:
    wallet = Wallet.objects.get(user=user)
    return wallet.limits_day, wallet.deposited_on_day, wallet.outgoing_on_day


# --- daily limits ---------------------------------------------------------------------------


def test_the_daily_deposit_limit_resets_at_midnight_in_kolkata(clock, settings, alice):
    settings.QUICKPE_DAILY_DEPOSIT_LIMIT = 500_00
    client = client_for(alice)

    clock(FIRST_SECOND_OF_31_MARCH)
    assert deposit(client, "300.00").status_code == 201

    clock(LAST_SECOND_OF_31_MARCH)  # another UTC day, the same Indian one: no reset
    assert limits_of(client)["daily_deposit_remaining"] == "200.00"
    assert deposit(client, "200.00").status_code == 201
    before = snapshot()
    assert refused_with(deposit(client, "1.00")) == {
        "field": "amount",
        "code": "daily_deposit",
        "limit": "500.00",
        "remaining": "0.00",
    }
    assert snapshot() == before
    assert counters(alice) == (date(2026, 3, 31), 500_00, 0)

    clock(FIRST_SECOND_OF_1_APRIL)  # the same UTC day, a new Indian one: reset
    assert limits_of(client)["daily_deposit_remaining"] == "500.00"
    assert deposit(client, "500.00").status_code == 201
    assert counters(alice) == (date(2026, 4, 1), 500_00, 0)
    assert refused_with(deposit(client, "1.00"))["remaining"] == "0.00"
    assert Wallet.objects.get(user=alice).balance == 1_000_00
    assert_money_invariants()


def test_the_daily_outgoing_limit_resets_at_midnight_in_kolkata(clock, settings, alice, bob):
    settings.QUICKPE_DAILY_OUTGOING_LIMIT = 500_00
    client = client_for(alice)

    clock(FIRST_SECOND_OF_31_MARCH)
    assert deposit(client, "2000.00").status_code == 201
    assert withdraw(client, "300.00").status_code == 201

    clock(LAST_SECOND_OF_31_MARCH)
    assert limits_of(client)["daily_outgoing_remaining"] == "200.00"
    assert send(client, bob, "200.00").status_code == 201
    before = snapshot()
    for refused in (withdraw(client, "1.00"), send(client, bob, "1.00")):
        assert refused_with(refused) == {
            "field": "amount",
            "code": "daily_outgoing",
            "limit": "500.00",
            "remaining": "0.00",
        }
    assert snapshot() == before
    assert counters(alice) == (date(2026, 3, 31), 2000_00, 500_00)

    clock(FIRST_SECOND_OF_1_APRIL)
    assert limits_of(client)["daily_outgoing_remaining"] == "500.00"
    assert send(client, bob, "500.00").status_code == 201
    assert counters(alice) == (date(2026, 4, 1), 0, 500_00)
    assert refused_with(withdraw(client, "1.00"))["remaining"] == "0.00"
    # Money received counts toward neither of Bob's limits.
    assert limits_of(client_for(bob))["daily_outgoing_remaining"] == "500.00"
    assert Wallet.objects.get(user=alice).balance == 1000_00
    assert_money_invariants()


# --- statement periods ----------------------------------------------------------------------


def statement(client: APIClient, **period) -> tuple[dict, list[list[str]]]:
    """Request a CSV statement, build it here, and return the API's view of it and its rows."""
    response = client.post(
        "/api/v1/exports", {"kind": "statement", "format": "csv", **period}, format="json"
    )
    assert response.status_code == 202, response.content
    export_id = response.json()["id"]
    assert export_build(export_id) == "done"
    download = client.get(f"/api/v1/exports/{export_id}/download")
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    return {**response.json(), "file": download["Content-Disposition"]}, rows


def lines(rows: list[list[str]]) -> list[tuple[str, str, str, str]]:
    """(date_ist, kind, debit, credit) of the statement's lines, without opening and totals."""
    return [(row[0], row[2], row[5], row[6]) for row in rows[2:-2]]


@pytest.mark.usefixtures("export_folder")
def test_statement_periods_are_kolkata_days(clock, settings, alice, bob):
    settings.QUICKPE_EXPORT_RATE = None
    client = client_for(alice)
    clock(LAST_SECOND_OF_31_MARCH)
    assert deposit(client, "100.00").status_code == 201

    # The default, the last 30 days, ends with today: 31 March until its last second...
    export, rows = statement(client)
    assert (export["from"], export["to"]) == (
        "2026-03-01T18:30:00.000000Z",  # 2 March, 00:00 IST
        "2026-03-31T18:30:00.000000Z",  # 1 April, 00:00 IST
    )
    assert lines(rows) == [("2026-03-31 23:59", "deposit", "", "100.00")]
    assert f"-{alice.quickpe_id}-20260302-" in export["file"]

    # ...and 1 April from its first.
    clock(FIRST_SECOND_OF_1_APRIL)
    assert send(client, bob, "40.00").status_code == 201
    export, rows = statement(client)
    assert (export["from"], export["to"]) == (
        "2026-03-02T18:30:00.000000Z",
        "2026-04-01T18:30:00.000000Z",
    )
    assert lines(rows) == [
        ("2026-03-31 23:59", "deposit", "", "100.00"),
        ("2026-04-01 00:00", "transfer_out", "40.00", ""),
    ]

    # A day asked by date is that Indian day.
    export, rows = statement(client, **{"from": "2026-03-31", "to": "2026-03-31"})
    assert (export["from"], export["to"]) == (
        "2026-03-30T18:30:00.000000Z",
        "2026-03-31T18:30:00.000000Z",
    )
    assert lines(rows) == [("2026-03-31 23:59", "deposit", "", "100.00")]
    export, rows = statement(client, **{"from": "2026-04-01", "to": "2026-04-01"})
    assert lines(rows) == [("2026-04-01 00:00", "transfer_out", "40.00", "")]
    assert (rows[1][3], rows[1][7]) == ("Opening balance", "100.00")
    assert f"-{alice.quickpe_id}-20260401-" in export["file"]


# --- the admin's audit-log export -----------------------------------------------------------

EXPORT_PAGE = "/admin/audit/auditentry/export/"


def form_days(browser) -> tuple[date, date]:
    form = browser.get(EXPORT_PAGE).context["form"]
    return form["start"].value(), form["end"].value()


@pytest.mark.usefixtures("export_folder")
def test_the_audit_log_export_reads_kolkata_days(clock, alice):
    clock(LAST_SECOND_OF_31_MARCH)
    assert deposit(client_for(alice), "100.00").status_code == 201
    staff, browser = staff_in("compliance")
    # The form offers the last 30 days, today included.
    assert form_days(browser) == (date(2026, 3, 2), date(2026, 3, 31))

    clock(FIRST_SECOND_OF_1_APRIL)
    assert deposit(client_for(alice), "50.00").status_code == 201
    assert form_days(browser) == (date(2026, 3, 3), date(2026, 4, 1))

    response = browser.post(
        EXPORT_PAGE, {"start": "2026-04-01", "end": "2026-04-01", "format": "csv"}
    )

    assert response.status_code == 302
    export = Export.objects.get(user=staff)
    assert (export.period_start, export.period_end) == (
        FIRST_SECOND_OF_1_APRIL,
        datetime(2026, 4, 2, tzinfo=IST),
    )
    assert export_build(export.pk) == "done"
    download = browser.get(f"/admin/analytics/export/{export.pk}/download/")
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    on_1_april = AuditEntry.objects.filter(created_at=FIRST_SECOND_OF_1_APRIL).order_by("seq")
    on_31_march = AuditEntry.objects.filter(created_at=LAST_SECOND_OF_31_MARCH)
    assert {"wallet.deposit", "export.create"} <= set(on_1_april.values_list("action", flat=True))
    assert on_31_march.filter(action="wallet.deposit").exists()
    assert [(int(row[0]), row[1]) for row in rows[1:]] == [
        (seq, "2026-04-01 00:00") for seq in on_1_april.values_list("seq", flat=True)
    ]


# --- analytics buckets ----------------------------------------------------------------------


def test_analytics_days_are_kolkata_days(clock, alice, bob):
    client = client_for(alice)
    clock(FIRST_SECOND_OF_31_MARCH)
    assert deposit(client, "1000.00").status_code == 201

    clock(LAST_SECOND_OF_31_MARCH)
    assert send(client, bob, "10.00").status_code == 201
    buckets = client.get("/api/v1/analytics/timeseries").json()["buckets"]
    assert (len(buckets), buckets[0]["start"]) == (30, "2026-03-02")
    assert buckets[-1] == {
        "start": "2026-03-31",
        "sent": "10.00",
        "received": "0.00",
        "deposited": "1000.00",
        "withdrawn": "0.00",
        "count": 2,
    }

    clock(FIRST_SECOND_OF_1_APRIL)
    assert send(client, bob, "20.00").status_code == 201
    buckets = client.get("/api/v1/analytics/timeseries").json()["buckets"]
    assert (len(buckets), buckets[0]["start"]) == (30, "2026-03-03")
    assert [(b["start"], b["sent"], b["deposited"], b["count"]) for b in buckets[-2:]] == [
        ("2026-03-31", "10.00", "1000.00", 2),
        ("2026-04-01", "20.00", "0.00", 1),
    ]
    summary = client.get("/api/v1/analytics/summary").json()
    assert (summary["from"], summary["to"], summary["sent"], summary["count"]) == (
        "2026-03-02T18:30:00.000000Z",
        "2026-04-01T18:30:00.000000Z",
        "30.00",
        3,
    )
    # The daily figures the database keeps are Indian days too.
    figures = DailyFigure.objects.filter(wallet__user=alice)
    assert sorted(figures.values_list("day", "kind", "amount", "lines")) == [
        (date(2026, 3, 31), "deposit", 1000_00, 1),
        (date(2026, 3, 31), "transfer_out", 10_00, 1),
        (date(2026, 4, 1), "transfer_out", 20_00, 1),
    ]
