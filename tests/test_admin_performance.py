"""Admin list pages on a large ledger: a bounded number of queries, and never a COUNT(*) of a
whole table (the paginator counts a few pages ahead, through a LIMIT)."""

import re
from datetime import timedelta

import pytest
from django.db import connection

from quickpe.business_day import business_day, business_time
from tests.conftest import fund, make_user
from tests.test_admin import staff_in
from wallet.models import LedgerEntry, Transfer, Wallet
from wallet.services.money import transfer_create

pytestmark = pytest.mark.django_db

LINES = 100_000
# Session, user, the user's and their groups' permissions, a bounded count, the page, the
# oldest row for the date hierarchy (a search finds its users in a subquery of the count and
# the page): 6 or 7 whatever the table's size. The bound leaves a little room for Django's own
# changes.
MAX_QUERIES = 10


@pytest.fixture
def large_ledger():
    """100,000 deposit lines over 50 wallets and about 70 days, written in one statement."""
    users = [make_user(f"Bulk{i}") for i in range(50)]
    fund(users[0], 1_000_00)
    transfer = transfer_create(sender=users[0], recipient=users[1], amount=10_00).transfer
    wallet_ids = list(Wallet.objects.filter(user__in=users).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO wallet_ledgerentry (wallet_id, kind, direction, amount, balance_after,
                                            category, description, reference, created_at)
            SELECT (%(wallets)s::bigint[])[1 + g %% cardinality(%(wallets)s::bigint[])],
                   'deposit', 'credit', 100, g * 100, 'other', 'Bulk',
                   'TXNB' || lpad(g::text, 11, '0'), now() - g * interval '1 minute'
            FROM generate_series(1, %(lines)s) AS g
            """,
            {"wallets": wallet_ids, "lines": LINES},
        )
        cursor.execute("ANALYZE wallet_ledgerentry")
    assert LedgerEntry.objects.count() > LINES
    return users, transfer


def pages(users, transfer) -> list[str]:
    someone = users[3]
    wallet = Wallet.objects.get(user=someone)
    return [
        "/admin/wallet/ledgerentry/",
        "/admin/wallet/ledgerentry/?p=2",
        "/admin/wallet/ledgerentry/?p=11",  # the last linked page; the count reaches further
        f"/admin/wallet/ledgerentry/?q={someone.quickpe_id}",
        f"/admin/wallet/ledgerentry/?q={someone.email}",
        "/admin/wallet/ledgerentry/?q=bulk3 us",  # the start of a full name
        "/admin/wallet/ledgerentry/?q=TXNB00000000042",
        f"/admin/wallet/ledgerentry/?q={transfer.reference}",
        f"/admin/wallet/ledgerentry/?wallet__id__exact={wallet.pk}",
        "/admin/wallet/ledgerentry/?kind__exact=reversal",
        "/admin/wallet/ledgerentry/?kind__exact=deposit&direction__exact=credit",
        f"/admin/wallet/ledgerentry/?created_at__year={transfer.created_at.year}",
        "/admin/wallet/wallet/",
        "/admin/wallet/wallet/?status__exact=frozen",
        "/admin/wallet/user/",
        "/admin/wallet/user/?is_staff__exact=1",
        f"/admin/wallet/user/?q={someone.quickpe_id}",
        "/admin/wallet/user/?q=bulk",
        "/admin/wallet/wallet/?q=User",  # a last name
        "/admin/wallet/transfer/",
        f"/admin/wallet/transfer/?q={users[0].quickpe_id}",
        "/admin/wallet/transfer/?status__exact=reversed",
        "/admin/wallet/moneyrequest/",
        "/admin/wallet/devicesession/?state=active",
        "/admin/wallet/idempotencykey/",
        "/admin/notifications/notification/",
        "/admin/audit/auditentry/",
        f"/admin/audit/auditentry/?q={users[0].email}",
    ]


def test_list_pages_make_a_bounded_number_of_queries_and_never_count_a_table(
    large_ledger, django_assert_max_num_queries
):
    users, transfer = large_ledger
    _, browser = staff_in("support")
    for page in pages(users, transfer):
        with django_assert_max_num_queries(MAX_QUERIES) as captured:
            response = browser.get(page)
        assert response.status_code == 200, page
        for query in captured.captured_queries:
            sql = query["sql"]
            if re.search(r"\bCOUNT\(", sql, re.IGNORECASE):
                assert "LIMIT" in sql, (page, sql)
            # Nor the scans of Django's own date hierarchy (MIN/MAX, DISTINCT dates).
            assert not re.search(r"\b(MIN|MAX)\(|DISTINCT", sql), (page, sql)


def test_the_date_hierarchy_is_drawn_from_the_calendar(large_ledger):
    users, transfer = large_ledger
    _, browser = staff_in("support")
    made = business_time(transfer.created_at)
    top = browser.get("/admin/wallet/ledgerentry/")
    assert f"?created_at__year={made.year}" in top.content.decode()
    months = browser.get(f"/admin/wallet/ledgerentry/?created_at__year={made.year}")
    assert f"created_at__month={made.month}" in months.content.decode()
    # The day before (the admin's days are Asia/Kolkata days) holds 1,440 bulk lines, a minute
    # apart; today holds only as many as minutes have passed since midnight IST.
    day = made - timedelta(days=1)
    page = browser.get(
        f"/admin/wallet/ledgerentry/?created_at__year={day.year}"
        f"&created_at__month={day.month}&created_at__day={day.day}"
    )
    shown = page.context["cl"].result_list
    assert len(shown) == 50 and all(business_day(entry.created_at) == day.date() for entry in shown)


def test_the_ledger_list_says_there_are_more_rather_than_counting_them(large_ledger):
    _, browser = staff_in("compliance")
    response = browser.get("/admin/wallet/ledgerentry/")
    assert response.context["cl"].paginator.is_bounded
    assert b"More than 550 ledger entries" in response.content
    # Paging on past the counted pages works: each page counts a few pages further.
    far = browser.get("/admin/wallet/ledgerentry/?p=11")
    assert far.status_code == 200 and len(far.context["cl"].result_list) == 50
    assert b"More than 1050 ledger entries" in far.content
    # A search that fits on one page is counted exactly.
    reference = browser.get("/admin/wallet/ledgerentry/?q=TXNB00000000042")
    assert [entry.reference for entry in reference.context["cl"].result_list] == ["TXNB00000000042"]
    assert b"1 ledger entry" in reference.content


def test_searches_find_through_related_rows(large_ledger):
    users, transfer = large_ledger
    _, browser = staff_in("support")
    by_reference = browser.get(f"/admin/wallet/ledgerentry/?q={transfer.reference.lower()}")
    assert {entry.kind for entry in by_reference.context["cl"].result_list} == {
        "transfer_in",
        "transfer_out",
    }
    by_email = browser.get(f"/admin/wallet/transfer/?q={users[1].email.upper()}")
    assert list(by_email.context["cl"].result_list) == [Transfer.objects.get(pk=transfer.pk)]
    by_name = browser.get("/admin/wallet/transfer/?q=bulk1")  # Bulk1's first name, any case
    assert list(by_name.context["cl"].result_list) == [Transfer.objects.get(pk=transfer.pk)]
    # A name is found by its start: text inside a word is not (no trigram index).
    nothing = browser.get("/admin/wallet/transfer/?q=ulk1")
    assert list(nothing.context["cl"].result_list) == []
