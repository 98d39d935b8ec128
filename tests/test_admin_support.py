"""The admin as support staff read it (issue 17, item 10): amounts in rupees with Indian
grouping and times in IST on every page, days of the date hierarchy that are Indian days,
confirmation pages that name the amount and the people before anything changes, a search by
the start of a name or an email, and links from a person to their money and back."""

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.db import connection
from django.urls import reverse

from tests.conftest import (
    client_for,
    fund,
    make_user,
    same_business_day,
    snapshot,
    wallet_status_set,
)
from tests.test_admin import run_action, staff_in
from wallet.models import LedgerEntry, MoneyRequest, Transfer, User, Wallet
from wallet.services.money import transfer_create
from wallet.services.requests import money_request_create, money_request_pay

pytestmark = pytest.mark.django_db
IST = ZoneInfo("Asia/Kolkata")
# 20:00 UTC on 7 November is 01:30 on 8 November in India: a UTC page says the 7th.
LATE_EVENING_UTC = datetime(2026, 11, 7, 20, 0, tzinfo=UTC)


def page(browser, path: str) -> str:
    response = browser.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.content.decode()


def text_of(html: str) -> str:
    """The page's words without tags, spaces collapsed: what a person reads."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


@pytest.fixture
def money_everywhere(alice, bob):
    """Distinctive amounts in every money column: a balance of ₹62,634.67, a transfer of
    ₹12,345.67 (leaving ₹50,289.00), a paid request of ₹4,321.09 and a pending one of ₹987.65."""
    fund(alice, 62_634_67)
    transfer = transfer_create(sender=alice, recipient=bob, amount=12_345_67).transfer
    paid = money_request_create(requester=bob, payer=alice, amount=4_321_09)
    money_request_pay(user=alice, money_request_id=paid.pk)
    paid.refresh_from_db()
    pending = money_request_create(requester=alice, payer=bob, amount=987_65)
    return transfer, paid, pending


# Alice's balance after each step, Bob's, and what Alice sent today: ₹16,666.76.
RAW_PAISE = ["6263467", "1234567", "5028900", "432109", "98765", "4596791", "1666676"]
IN_RUPEES = [
    "₹62,634.67",
    "₹12,345.67",
    "₹50,289.00",
    "₹4,321.09",
    "₹987.65",
    "₹45,967.91",
    "₹16,666.76",
]


class LinkDepth(HTMLParser):
    """The deepest nesting of links in a page: a link inside a link is invalid HTML, and the
    browser breaks the outer one (the row's link to its own page)."""

    def __init__(self):
        super().__init__()
        self.depth = self.deepest = 0

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)

    def handle_endtag(self, tag):
        if tag == "a":
            self.depth -= 1


def link_depth(html: str) -> int:
    parser = LinkDepth()
    parser.feed(html)
    return parser.deepest


def test_no_admin_page_shows_raw_paise(bob, money_everywhere):
    """Every registered model's list and the change page of each of its rows: amounts in
    rupees with Indian grouping, never the integer paise the database holds. A new admin
    that shows a money column as a number fails here. And no list nests a link in a link."""
    client_for(bob).post(  # a device session and an idempotency key to list
        "/api/v1/wallet/deposits", {"amount": "1.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    _, browser = staff_in(None, is_superuser=True)  # who sees every page, groups included
    seen = ""
    for model in admin.site._registry:
        meta = model._meta
        listing = page(browser, reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert link_depth(listing) == 1, meta.label
        pages = [listing] + [page(browser, change_url(obj)) for obj in model.objects.all()[:20]]
        for html in pages:
            # As a number of its own: not inside a longer one, an ID or a hash.
            found = [
                raw
                for raw in RAW_PAISE
                if re.search(rf"(?<![0-9A-Za-z.]){raw}(?![0-9A-Za-z])", html)
            ]
            assert not found, (meta.label, found)
        seen += "".join(pages)
    for amount in IN_RUPEES:
        assert amount in seen, amount


@same_business_day
def test_the_wallet_page_names_its_money_in_rupees(alice, bob, money_everywhere):
    _, browser = staff_in("support")
    wallet = Wallet.objects.get(user=alice)
    shown = text_of(page(browser, change_url(wallet)))
    assert "Balance: ₹45,967.91" in shown
    # Today's use of the daily limits, in rupees, with the limits.
    assert "₹62,634.67 added of ₹1,00,000.00, ₹16,666.76 sent of ₹1,00,000.00" in shown
    assert "6263467" not in shown and "4596791" not in shown


def test_detail_pages_show_amounts_in_rupees(alice, bob, money_everywhere):
    transfer, paid, pending = money_everywhere
    _, browser = staff_in("support")
    assert "Amount: ₹12,345.67" in text_of(page(browser, change_url(transfer)))
    line = LedgerEntry.objects.get(transfer=transfer, direction="debit")
    shown = text_of(page(browser, change_url(line)))
    assert "Amount: ₹12,345.67" in shown and "Balance after: ₹50,289.00" in shown
    assert "Amount: ₹987.65" in text_of(page(browser, change_url(pending)))


def test_times_and_the_date_hierarchy_are_in_india(time_machine, alice, bob):
    """A transfer made at 20:00 UTC on 7 November happened at 01:30 IST on 8 November: its
    page says so, and it is listed under 8 November, not the 7th."""
    time_machine.move_to(LATE_EVENING_UTC, tick=False)
    fund(alice, 100_00)
    transfer = transfer_create(sender=alice, recipient=bob, amount=10_00).transfer
    _, browser = staff_in("support")

    shown = text_of(page(browser, change_url(transfer)))
    assert "Created at: Nov. 8, 2026, 1:30 a.m." in shown
    assert "Times in IST (Asia/Kolkata)" in shown
    listing = text_of(page(browser, "/admin/wallet/transfer/"))
    assert "Nov. 8, 2026, 1:30 a.m." in listing and "Nov. 7" not in listing

    def on_day(day: int) -> list:
        response = browser.get(
            f"/admin/wallet/transfer/?created_at__year=2026&created_at__month=11"
            f"&created_at__day={day}"
        )
        return list(response.context["cl"].result_list)

    assert on_day(8) == [transfer]
    assert on_day(7) == []
    # Today is 8 November in India: the month's day links reach it (in UTC they would stop
    # at the 7th).
    month = page(browser, "/admin/wallet/transfer/?created_at__year=2026&created_at__month=11")
    assert "created_at__day=8" in month and "created_at__day=9" not in month


def test_the_freeze_page_names_the_owner_and_the_balance_and_changes_nothing(alice):
    fund(alice, 62_634_67)
    wallet = Wallet.objects.get(user=alice)
    _, browser = staff_in("support")
    before = snapshot()
    asked = browser.post(
        "/admin/wallet/wallet/", {"action": "freeze", "_selected_action": [wallet.pk]}
    )
    shown = text_of(asked.content.decode())
    assert "Money stops moving in and out of each wallet below" in shown
    assert f"Alice Sharma ({alice.quickpe_id}) {alice.email} ₹62,634.67 active" in shown
    assert f'href="{change_url(alice)}"' in asked.content.decode()
    assert snapshot() == before
    wallet.refresh_from_db()
    assert wallet.status == "active"


def test_the_unfreeze_page_names_a_frozen_wallet(alice):
    staff, browser = staff_in("support")
    wallet_status_set(alice, "frozen", actor=staff)
    wallet = Wallet.objects.get(user=alice)
    asked = browser.post(
        "/admin/wallet/wallet/", {"action": "unfreeze", "_selected_action": [wallet.pk]}
    )
    shown = text_of(asked.content.decode())
    assert "Money can move in and out of each wallet below again." in shown
    assert f"Alice Sharma ({alice.quickpe_id}) {alice.email} ₹0.00 frozen" in shown


def test_the_reversal_page_names_the_amount_and_both_people(time_machine, alice, bob):
    time_machine.move_to(LATE_EVENING_UTC, tick=False)
    fund(alice, 20_000_00)
    transfer = transfer_create(sender=alice, recipient=bob, amount=12_345_67).transfer
    _, browser = staff_in(None, is_superuser=True)
    before = snapshot()
    asked = browser.post(
        "/admin/wallet/transfer/", {"action": "reverse", "_selected_action": [transfer.pk]}
    )
    shown = text_of(asked.content.decode())
    assert "goes back from its recipient to its sender" in shown
    assert (
        f"{transfer.reference} Nov. 8, 2026, 1:30 a.m. ₹12,345.67 "
        f"Bob Verma ({bob.quickpe_id}) ₹12,345.67 Alice Sharma ({alice.quickpe_id}) completed"
    ) in shown
    assert snapshot() == before


def test_the_reversal_page_warns_when_the_recipient_no_longer_has_the_money(alice, bob):
    fund(alice, 100_00)
    transfer = transfer_create(sender=alice, recipient=bob, amount=60_00).transfer
    carol = make_user("Carol", "Das")
    transfer_create(sender=bob, recipient=carol, amount=50_00)
    _, browser = staff_in(None, is_superuser=True)
    asked = browser.post(
        "/admin/wallet/transfer/", {"action": "reverse", "_selected_action": [transfer.pk]}
    )
    shown = text_of(asked.content.decode())
    assert "₹10.00 (less than the amount: this one will be refused)" in shown


@pytest.mark.parametrize(
    ("action", "effect"),
    [
        ("deactivate", "every device is signed out at once"),
        ("reactivate", "can sign in again"),
        ("send_password_reset", "a link to choose a new password, valid for 72 hours"),
    ],
)
def test_user_action_pages_name_the_person_and_their_money(alice, action, effect):
    fund(alice, 62_634_67)
    _, browser = staff_in(None, is_superuser=True)
    before = snapshot()
    asked = browser.post("/admin/wallet/user/", {"action": action, "_selected_action": [alice.pk]})
    shown = text_of(asked.content.decode())
    assert effect in shown
    assert f"Alice Sharma ({alice.quickpe_id}) {alice.email} ₹62,634.67 active" in shown
    assert snapshot() == before


def test_confirming_still_runs_the_action(alice):
    """The page that names the wallet is the same two-step action as before."""
    fund(alice, 1_00)
    wallet = Wallet.objects.get(user=alice)
    _, browser = staff_in("support")
    done = run_action(browser, "/admin/wallet/wallet/", "freeze", [wallet.pk], reason="Fraud")
    assert done.status_code == 302
    wallet.refresh_from_db()
    assert wallet.status == "frozen"


# Search --------------------------------------------------------------------------------------


@pytest.fixture
def people():
    return {
        "priya": make_user("Priya", "Sharma", email="p.sharma@example.com"),
        "priyanka": make_user("Priyanka", "Verma"),
        "ravi": make_user("Ravi", "Priyadarshi"),
        "hindi": make_user("प्रिया", "शर्मा"),
        "underscore": make_user("Pri_a", "Literal"),
    }


def found(browser, path: str, term: str) -> set:
    response = browser.get(path, {"q": term})
    assert response.status_code == 200
    return set(response.context["cl"].result_list)


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("priya", {"priya", "priyanka", "ravi"}),  # first names and a last name
        ("PRIYA SH", {"priya"}),  # the start of a full name, any case
        ("  priya   sharma ", {"priya"}),  # spaces as typed
        ("sharma", {"priya"}),  # a last name
        ("verm", {"priyanka"}),
        ("p.sharma@", {"priya"}),  # the start of an email
        ("P.Sharma@Example.com", {"priya"}),
        ("प्रिया", {"hindi"}),
        ("प्रिया श", {"hindi"}),
        ("riya", set()),  # inside a word: not found (no trigram index)
        ("p", set()),  # one character matches nothing
        ("pri_a", {"underscore"}),  # LIKE wildcards are literal
        ("pri%", set()),
    ],
)
def test_users_are_found_by_the_start_of_a_name_or_email(people, term, expected):
    _, browser = staff_in("support")
    assert found(browser, "/admin/wallet/user/", term) == {people[key] for key in expected}


def test_a_quickpe_id_is_found_in_any_case(people):
    _, browser = staff_in("support")
    priya = people["priya"]
    assert found(browser, "/admin/wallet/user/", priya.quickpe_id.lower()) == {priya}


def test_lists_are_searched_by_their_people_names(people):
    priya, ravi = people["priya"], people["ravi"]
    fund(priya, 500_00)
    transfer = transfer_create(sender=priya, recipient=ravi, amount=100_00).transfer
    request = money_request_create(requester=ravi, payer=priya, amount=50_00)
    _, browser = staff_in("support")
    assert found(browser, "/admin/wallet/wallet/", "priya sh") == {priya.wallet}
    assert found(browser, "/admin/wallet/transfer/", "priyadar") == {transfer}
    assert found(browser, "/admin/wallet/moneyrequest/", "sharma") == {request}
    lines = found(browser, "/admin/wallet/ledgerentry/", "Priya Sharma")
    assert {line.kind for line in lines} == {"deposit", "transfer_out"}
    # A reference is still found by equality.
    by_reference = found(browser, "/admin/wallet/ledgerentry/", transfer.reference.lower())
    assert {line.kind for line in by_reference} == {"transfer_in", "transfer_out"}


def test_the_name_search_reads_its_indexes():
    """The search's expressions are the indexed ones (wallet.User.Meta.indexes): with
    sequential scans priced out, as on a table large enough to matter, PostgreSQL reads each
    of the three indexes rather than every row. Timings on a large table are in
    bench/admin_search.py."""
    search = User.objects.matching("priya sh")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = search.values("pk").query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    for index in (
        "wallet_user_full_name_upper",
        "wallet_user_last_name_upper",
        "wallet_user_email_upper",
    ):
        assert index in plan, plan
    assert "Seq Scan" not in plan, plan


# Links ---------------------------------------------------------------------------------------


def test_a_user_links_to_their_wallet_ledger_and_requests_and_back(alice, bob, money_everywhere):
    transfer, paid, pending = money_everywhere
    _, browser = staff_in("support")
    wallet = Wallet.objects.get(user=alice)
    user_page = page(browser, change_url(alice))
    assert f'href="{change_url(wallet)}">₹45,967.91 (active)</a>' in user_page
    assert f'href="/admin/wallet/ledgerentry/?q={alice.quickpe_id}"' in user_page
    assert f'href="/admin/wallet/moneyrequest/?q={alice.quickpe_id}"' in user_page

    wallet_page = page(browser, change_url(wallet))
    assert f'href="{change_url(alice)}"' in wallet_page  # back to the owner
    assert f'href="/admin/wallet/ledgerentry/?wallet__id__exact={wallet.pk}"' in wallet_page
    assert f'href="/admin/wallet/moneyrequest/?q={alice.quickpe_id}"' in wallet_page

    line = LedgerEntry.objects.get(transfer=transfer, direction="debit")
    line_page = page(browser, change_url(line))
    for target in (wallet, bob, transfer):
        assert f'href="{change_url(target)}"' in line_page, target

    request_page = page(browser, change_url(paid))
    for target in (bob, alice, paid.transfer):
        assert f'href="{change_url(target)}"' in request_page, target
    paid_transfer = Transfer.objects.get(pk=paid.transfer_id)
    transfer_page = page(browser, change_url(paid_transfer))
    assert f'href="{change_url(MoneyRequest.objects.get(pk=paid.pk))}"' in transfer_page
    assert f'href="/admin/wallet/ledgerentry/?transfer__id__exact={paid_transfer.pk}"' in (
        transfer_page
    )
