"""Support staff's admin: pages load, ledger and audit are read-only, freezing is audited."""

import pytest
from django.test import Client

from audit.models import AuditEntry
from tests.conftest import PASSWORD, client_for, fund, make_user
from wallet.models import LedgerEntry, Wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_browser():
    staff = make_user("Support", is_staff=True, is_superuser=True)
    browser = Client()
    assert browser.login(username=staff.email, password=PASSWORD)
    return staff, browser


def test_every_admin_list_and_detail_page_renders(staff_browser, alice, bob):
    _, browser = staff_browser
    fund(alice, 100_00)
    client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "10.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="admin-1",
    )
    for path in ["user", "wallet", "ledgerentry", "transfer", "idempotencykey"]:
        assert browser.get(f"/admin/wallet/{path}/").status_code == 200, path
    assert browser.get("/admin/audit/auditentry/").status_code == 200
    entry = LedgerEntry.objects.first()
    assert browser.get(f"/admin/wallet/ledgerentry/{entry.pk}/change/").status_code == 200
    assert (
        browser.get(f"/admin/audit/auditentry/{AuditEntry.objects.first().pk}/change/").status_code
        == 200
    )


def test_ledger_and_audit_cannot_be_changed_from_the_admin(staff_browser, alice):
    _, browser = staff_browser
    fund(alice, 100_00)
    entry = LedgerEntry.objects.get(wallet__user=alice)
    assert browser.get("/admin/wallet/ledgerentry/add/").status_code == 403
    assert browser.get(f"/admin/wallet/ledgerentry/{entry.pk}/delete/").status_code == 403
    response = browser.post(
        f"/admin/wallet/ledgerentry/{entry.pk}/change/", {"amount": "1", "description": "x"}
    )
    assert response.status_code == 403
    audit = AuditEntry.objects.first()
    assert browser.get(f"/admin/audit/auditentry/{audit.pk}/delete/").status_code == 403
    entry.refresh_from_db()
    assert entry.amount == 100_00


def test_freezing_from_the_admin_is_audited_and_blocks_money(staff_browser, alice, bob):
    staff, browser = staff_browser
    fund(alice, 100_00)
    wallet = Wallet.objects.get(user=alice)
    response = browser.post(
        "/admin/wallet/wallet/",
        {"action": "freeze", "_selected_action": [wallet.pk]},
    )
    assert response.status_code == 302
    wallet.refresh_from_db()
    assert wallet.status == "frozen"
    entry = AuditEntry.objects.get(action="wallet.freeze")
    assert entry.actor == staff and entry.entity_id == str(wallet.pk)
    refused = client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "10.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="frozen-1",
    )
    assert refused.status_code == 403 and refused.json()["code"] == "wallet_frozen"


def test_changing_a_user_in_the_admin_is_audited(staff_browser, alice):
    staff, browser = staff_browser
    page = browser.get(f"/admin/wallet/user/{alice.pk}/change/")
    assert page.status_code == 200
    form = {
        "email": alice.email,
        "first_name": "Alicia",
        "last_name": alice.last_name,
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    response = browser.post(f"/admin/wallet/user/{alice.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.get(action="admin.user_change")
    assert entry.actor == staff
    assert "first_name" in entry.data["changed"]
    assert entry.data["values"]["first_name"] == "Alicia"


def test_adding_a_user_in_the_admin_creates_their_wallet(staff_browser):
    _, browser = staff_browser
    response = browser.post(
        "/admin/wallet/user/add/",
        {
            "email": "new.person@example.com",
            "first_name": "New",
            "last_name": "Person",
            "password1": "another-long-passphrase",
            "password2": "another-long-passphrase",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    created = Wallet.objects.get(user__email="new.person@example.com")
    assert created.balance == 0
    assert AuditEntry.objects.filter(action="user.signup", actor=created.user).exists()
