"""The dashboard pages through Django's test client: sign-up and sign-in as device sessions,
money forms (errors in words, nothing changed on a refusal, once per idempotency key),
requests, statements, CSRF, and a bounded number of queries whatever the data size."""

import re
import uuid
from datetime import UTC, datetime

import pgtrigger
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from analytics.models import Export
from tests.conftest import PASSWORD, fund, make_user, same_business_day, snapshot
from wallet.models import DeviceSession, LedgerEntry, MoneyRequest, Transfer
from wallet.services.money import transfer_create
from wallet.services.requests import money_request_create
from wallet.templatetags.dashboard import inr

pytestmark = pytest.mark.django_db
PAGES = [
    "/app/",
    "/app/transactions",
    "/app/requests",
    "/app/analytics",
    "/app/exports",
    "/app/notifications",
    "/app/audit",
    "/app/settings",
]


def browser_for(user) -> Client:
    browser = Client()
    response = browser.post("/signin", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/app/", response.content
    return browser


def form_key(page: bytes, name: str = "idempotency_key") -> str:
    return re.search(rb'name="%s" value="([^"]+)"' % name.encode(), page).group(1).decode()


def send(browser, recipient: str, amount: str, key: str | None = None):
    return browser.post(
        "/app/",
        {
            "form": "send",
            "recipient": recipient,
            "amount": amount,
            "note": "",
            "idempotency_key": key or uuid.uuid4().hex,
        },
    )


def test_sign_up_lands_on_home_signed_in_as_a_device_session(db):
    browser = Client()
    response = browser.post(
        "/signup",
        {
            "first_name": "Asha",
            "last_name": "Rao",
            "email": "asha@example.com",
            "password": PASSWORD,
        },
    )
    assert (response.status_code, response["Location"]) == (302, "/app/")
    home = browser.get("/app/")
    assert home.status_code == 200
    assert b'data-testid="balance"' in home.content and "₹0.00" in home.content.decode()
    assert DeviceSession.objects.filter(user__email="asha@example.com").count() == 1


def test_every_page_needs_a_sign_in_and_renders_for_one(alice):
    for page in PAGES:
        response = Client().get(page)
        assert (response.status_code, response["Location"]) == (302, f"/signin?next={page}")
    browser = browser_for(alice)
    for page in PAGES:
        assert browser.get(page).status_code == 200, page


def test_wrong_password_says_so_and_signs_nothing_in(alice):
    response = Client().post("/signin", {"email": alice.email, "password": "not-it"})
    assert response.status_code == 200
    assert b'data-testid="field-error"' in response.content
    assert not DeviceSession.objects.filter(user=alice).exists()


def test_add_money_and_send_move_money_once_per_form(alice, bob):
    browser = browser_for(alice)
    key = form_key(browser.get("/app/").content)
    added = browser.post("/app/", {"form": "deposit", "amount": "500", "idempotency_key": key})
    assert (added.status_code, added["Location"]) == (302, "/app/")
    again = browser.post("/app/", {"form": "deposit", "amount": "500", "idempotency_key": key})
    assert again.status_code == 302  # a refresh of the same form: shown again, not paid again
    alice.wallet.refresh_from_db()
    assert alice.wallet.balance == 500_00

    key = uuid.uuid4().hex
    for _ in range(2):  # a double click
        assert send(browser, bob.quickpe_id, "120.50", key).status_code == 302
    assert Transfer.objects.count() == 1
    bob.wallet.refresh_from_db()
    assert bob.wallet.balance == 120_50
    page = browser.get("/app/").content.decode()
    assert "₹379.50" in page and "Bob" in page


@pytest.mark.parametrize(
    ("amount", "recipient", "words", "field"),
    [
        ("abc", None, "amount", "amount"),
        ("-5", None, "positive", "amount"),
        ("1e9", None, "xponent", "amount"),
        ("0.001", None, "two decimals", "amount"),
        ("900.00", None, "too low", "amount"),
        ("10.00", "QP00000000", "no quickpe user", "recipient"),
    ],
)
def test_a_refused_send_says_why_next_to_the_field_and_changes_nothing(
    alice, bob, amount, recipient, words, field
):
    fund(alice, 100_00)
    browser = browser_for(alice)
    before = snapshot()
    response = send(browser, recipient or bob.quickpe_id, amount)
    assert response.status_code == 400
    errors = re.findall(rb'data-testid="field-error"[^>]*>([^<]+)<', response.content)
    assert errors and words in b" ".join(errors).decode().lower(), errors
    assert f'aria-describedby="send-{field}-error"'.encode() in response.content
    assert snapshot() == before


@same_business_day
def test_a_limit_refusal_names_what_is_left_today(alice, bob, settings):
    settings.QUICKPE_DAILY_OUTGOING_LIMIT = 150_00
    fund(alice, 1_000_00)
    browser = browser_for(alice)
    assert send(browser, bob.quickpe_id, "100.00").status_code == 302
    response = send(browser, bob.quickpe_id, "80.00")
    assert response.status_code == 400
    assert "You can still use ₹50.00 today." in response.content.decode()


def test_requests_asked_paid_declined_and_cancelled_from_the_page(alice, bob):
    fund(alice, 1_000_00)
    asker = browser_for(bob)
    response = asker.post("/app/requests", {"payer": alice.email, "amount": "200", "note": "Tea"})
    assert response.status_code == 302
    request = MoneyRequest.objects.get()
    payer = browser_for(alice)
    page = payer.get("/app/requests").content
    assert b'data-status="pending"' in page
    paid = payer.post(f"/app/requests/{request.pk}/pay", {"idempotency_key": "k1"})
    assert paid.status_code == 302
    payer.post(f"/app/requests/{request.pk}/pay", {"idempotency_key": "k1"})  # a double click
    request.refresh_from_db()
    assert request.status == "paid" and Transfer.objects.count() == 1

    declined = money_request_create(requester=bob, payer=alice, amount=5_00)
    payer.post(f"/app/requests/{declined.pk}/decline")
    cancelled = money_request_create(requester=bob, payer=alice, amount=6_00)
    asker.post(f"/app/requests/{cancelled.pk}/cancel")
    statuses = dict(MoneyRequest.objects.values_list("pk", "status"))
    assert (statuses[declined.pk], statuses[cancelled.pk]) == ("declined", "cancelled")


def test_another_users_request_is_404_and_changes_nothing(alice, bob):
    carol = make_user("Carol")
    fund(carol, 100_00)
    request = money_request_create(requester=bob, payer=carol, amount=5_00)
    browser = browser_for(alice)
    before = snapshot()
    for action in ("pay", "decline", "cancel", "steal"):
        response = browser.post(f"/app/requests/{request.pk}/{action}", {"idempotency_key": "x"})
        assert response.status_code == 404
    assert snapshot() == before


def test_forms_need_the_csrf_token(alice):
    fund(alice, 100_00)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    before = snapshot()
    response = browser.post("/app/", {"form": "deposit", "amount": "5", "idempotency_key": "k"})
    assert response.status_code == 403
    assert snapshot() == before


def test_a_revoked_device_session_signs_the_browser_out(alice):
    browser = browser_for(alice)
    session = DeviceSession.objects.get(user=alice)
    other = browser_for(alice)
    other.post(f"/app/settings/sessions/{session.pk}/revoke")
    response = browser.get("/app/")
    assert (response.status_code, response["Location"]) == (302, "/signin?next=/app/")


@pytest.mark.usefixtures("export_folder")
def test_a_statement_is_requested_and_only_its_owner_downloads_it(alice, bob):
    fund(alice, 100_00)
    browser = browser_for(alice)
    response = browser.post("/app/exports", {"from": "", "to": "", "format": "pdf"})
    assert response.status_code == 302
    export = Export.objects.get()
    from analytics.tasks import export_build

    export_build(export.pk)
    assert b'data-status="done"' in browser.get("/app/exports").content
    download = browser.get(f"/app/exports/{export.pk}/download")
    assert download.status_code == 200
    assert b"".join(download.streaming_content).startswith(b"%PDF")
    assert browser_for(bob).get(f"/app/exports/{export.pk}/download").status_code == 404


@pytest.mark.parametrize("page", PAGES)
def test_a_page_makes_the_same_queries_for_5_or_50_of_everything(alice, bob, page):
    def grow(count: int) -> None:
        fund(alice, 10_000_00)
        for _ in range(count):
            transfer_create(sender=alice, recipient=bob, amount=1_00)
            money_request_create(requester=bob, payer=alice, amount=1_00)

    browser = browser_for(alice)
    grow(5)
    with CaptureQueriesContext(connection) as few:
        assert browser.get(page).status_code == 200
    grow(45)
    with CaptureQueriesContext(connection) as many:
        assert browser.get(page).status_code == 200
    assert len(many) == len(few), (page, len(few), len(many))


@pytest.mark.parametrize(
    ("paise", "text"),
    [
        (0, "₹0.00"),
        (5, "₹0.05"),
        (99_999_99, "₹99,999.99"),
        (1_00_000_00, "₹1,00,000.00"),
        (12_34_56_789_01, "₹12,34,56,789.01"),
    ],
)
def test_amounts_are_written_the_indian_way(paise, text):
    assert inr(paise) == text


def test_the_activity_list_shows_lines_with_their_counterparty(alice, bob):
    fund(alice, 100_00)
    transfer_create(sender=alice, recipient=bob, amount=25_00)
    page = browser_for(bob).get("/app/").content.decode()
    assert "+₹25.00" in page and alice.get_full_name() in page
    assert LedgerEntry.objects.filter(wallet__user=bob).count() == 1


def test_the_transactions_page_filters_as_the_api_does(alice, bob):
    fund(alice, 500_00)
    transfer_create(sender=alice, recipient=bob, amount=12_00, note="Chai at the station")
    transfer_create(sender=alice, recipient=bob, amount=30_00, note="Books")
    browser = browser_for(alice)
    page = browser.get("/app/transactions", {"search": "chai"}).content.decode()
    assert "-₹12.00" in page and "-₹30.00" not in page
    money_in = browser.get("/app/transactions", {"direction": "credit"}).content.decode()
    assert "+₹500.00" in money_in and "-₹12.00" not in money_in
    bad = browser.get("/app/transactions", {"created_after": "not-a-date"})
    assert bad.status_code == 200 and b'data-testid="field-error"' in bad.content


def test_times_on_the_pages_are_kolkata_times(alice, bob):
    fund(alice, 1_00)
    movement = transfer_create(sender=alice, recipient=bob, amount=1_00)
    # 18:31 UTC is 00:01 the next day in Kolkata: the page shows the customer's time.
    moment = datetime(2026, 3, 4, 18, 31, tzinfo=UTC)
    with pgtrigger.ignore("wallet.LedgerEntry:wallet_ledgerentry_append_only"):
        LedgerEntry.objects.filter(transfer=movement.transfer).update(created_at=moment)

    page = browser_for(bob).get("/app/").content.decode()

    assert "5 Mar, 00:01" in page and "4 Mar, 18:31" not in page
    assert 'data-time-zone="Asia/Kolkata"' in page  # live lines are formatted the same way


def test_payee_suggestions_follow_the_searchs_rules(alice):
    make_user("Zara", "Customer")
    make_user("Zara", "Support", is_staff=True)
    browser = browser_for(alice)

    assert browser.get("/app/people", {"q": "Za"}).json() == []  # 3 characters at least
    assert [row["name"] for row in browser.get("/app/people", {"q": "Zar"}).json()] == [
        "Zara Customer"
    ]
    # A NUL never reaches PostgreSQL (which cannot hold one): no one, not a 500.
    hostile = browser.get("/app/people", {"q": "\x00Zar"})
    assert (hostile.status_code, hostile.json()) == (200, [])


def test_payee_suggestions_share_the_search_rate_limit(alice, settings):
    settings.QUICKPE_SEARCH_RATE = "2/m"
    browser = browser_for(alice)
    assert [browser.get("/app/people", {"q": "Zar"}).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
