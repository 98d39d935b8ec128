"""Support staff's admin: pages load, ledger and audit are read-only, freezing is audited.

Also the helpers the other ``test_admin_*`` modules share: staff in a group, signed in to the
admin, and running an action through its reason page.
"""

import importlib
import re
from urllib.parse import unquote

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client

from audit.models import AuditEntry
from tests.conftest import PASSWORD, client_for, fund, make_user
from wallet.models import LedgerEntry, User, Wallet
from wallet.services.money import transfer_create

pytestmark = pytest.mark.django_db


def groups_sync() -> None:
    """The groups of migrations wallet.0005 and 0006, by their own code: tests with
    transaction=True end by flushing every table, groups included (production never flushes)."""
    importlib.import_module("wallet.migrations.0005_support_groups").groups_sync(apps)
    importlib.import_module("wallet.migrations.0006_groups_exports").permissions_add(apps, None)


def staff_in(group: str | None, *, is_superuser: bool = False) -> tuple[User, Client]:
    """A staff member of ``group`` (or a superuser), signed in to the admin."""
    groups_sync()
    staff = make_user("Staff", group or "Superuser", is_staff=True, is_superuser=is_superuser)
    if group:
        staff.groups.add(Group.objects.get(name=group))
    browser = Client()
    assert browser.login(username=staff.email, password=PASSWORD)
    return staff, browser


def run_action(browser: Client, changelist: str, action: str, pks: list, reason: str):
    """Pick the action on the list (its page asks for a reason), then confirm with ``reason``."""
    asked = browser.post(changelist, {"action": action, "_selected_action": pks, "index": 0})
    assert asked.status_code == 200, asked.content[:2000]
    assert b'name="reason"' in asked.content
    return browser.post(
        changelist,
        {"action": action, "_selected_action": pks, "apply": "yes", "reason": reason},
    )


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
    response = run_action(
        browser, "/admin/wallet/wallet/", "freeze", [wallet.pk], reason="Chargeback dispute"
    )
    assert response.status_code == 302
    wallet.refresh_from_db()
    assert wallet.status == "frozen"
    entry = AuditEntry.objects.get(action="wallet.freeze")
    assert entry.actor == staff and entry.entity_id == str(wallet.pk)
    assert entry.data["reason"] == "Chargeback dispute"
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


def test_pages_link_related_objects(staff_browser, alice, bob):
    _, browser = staff_browser
    fund(alice, 100_00)
    movement = transfer_create(sender=alice, recipient=bob, amount=10_00)
    transfer, wallet = movement.transfer, movement.wallet
    ledger = browser.get("/admin/wallet/ledgerentry/").content.decode()
    assert f'href="/admin/wallet/wallet/{wallet.pk}/change/"' in ledger
    assert f'href="/admin/wallet/transfer/{transfer.pk}/change/"' in ledger
    transfers = browser.get("/admin/wallet/transfer/").content.decode()
    assert f'href="/admin/wallet/user/{alice.pk}/change/"' in transfers
    assert f'href="/admin/wallet/ledgerentry/?transfer__id__exact={transfer.pk}"' in transfers
    user_page = browser.get(f"/admin/wallet/user/{alice.pk}/change/").content.decode()
    assert f'href="/admin/wallet/transfer/?q={alice.quickpe_id}"' in user_page
    assert f'href="/admin/audit/auditentry/?q={alice.quickpe_id}"' in user_page
    audit = browser.get("/admin/audit/auditentry/").content.decode()
    assert f'href="/admin/wallet/transfer/{transfer.pk}/change/">transfer {transfer.pk}<' in audit
    lines = browser.get(f"/admin/wallet/ledgerentry/?transfer__id__exact={transfer.pk}")
    assert sorted(entry.kind for entry in lines.context["cl"].result_list) == [
        "transfer_in",
        "transfer_out",
    ]


def change_form(user, **changes) -> dict:
    return {
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        **changes,
    }


def test_an_email_edited_in_the_admin_is_stored_as_signup_stores_it(
    staff_browser, alice, bob, django_capture_on_commit_callbacks
):
    """Support types an address with capitals and spaces: it is saved normalised, so the
    customer signs in with it and, once they follow the link mailed to it, is paid by it."""
    staff, browser = staff_browser
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(
            f"/admin/wallet/user/{alice.pk}/change/",
            change_form(alice, email="  Alice.New@Example.COM "),
        )
    assert response.status_code == 302, response.content[:2000]
    alice.refresh_from_db()
    assert alice.email == "alice.new@example.com"
    entry = AuditEntry.objects.get(action="admin.user_change")
    assert entry.actor == staff
    assert entry.data["changed"] == ["email", "email_verified", "email_verified_at"]
    signed_in = client_for().post(
        "/api/v1/auth/signin",
        {"email": "ALICE.NEW@example.com", "password": PASSWORD},
        format="json",
    )
    assert signed_in.status_code == 200, signed_in.content
    fund(bob, 10_00)

    def pay(key: str):
        return client_for(bob).post(
            "/api/v1/transfers",
            {"recipient": "alice.new@example.com", "amount": "1.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    assert pay("before-verified").status_code == 404  # a new address is unverified
    [sent] = mail.outbox
    assert sent.to == ["alice.new@example.com"]
    token = re.search(r"\?token=(\S+)", sent.body).group(1)
    verified = client_for().post(
        "/api/v1/auth/verify-email", {"token": unquote(token)}, format="json"
    )
    assert verified.status_code == 200, verified.content
    paid = pay("after-verified")
    assert paid.status_code == 201, paid.content


def test_an_admin_email_taken_in_another_case_is_refused_on_the_form(staff_browser, alice, bob):
    _, browser = staff_browser
    before = AuditEntry.objects.count()
    response = browser.post(
        f"/admin/wallet/user/{alice.pk}/change/", change_form(alice, email=bob.email.upper())
    )
    assert response.status_code == 200
    assert b"An account with this email already exists." in response.content
    alice.refresh_from_db()
    assert alice.email != bob.email
    assert AuditEntry.objects.count() == before


def test_a_password_set_in_the_admin_signs_the_account_out_and_is_audited(staff_browser, alice):
    staff, browser = staff_browser
    token = (
        client_for()
        .post("/api/v1/auth/signin", {"email": alice.email, "password": PASSWORD}, format="json")
        .json()["refresh"]
    )
    response = browser.post(
        f"/admin/wallet/user/{alice.pk}/password/",
        {
            "password1": "a-brand-new-passphrase",
            "password2": "a-brand-new-passphrase",
            "set_usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.get(action="admin.user_change")
    assert (entry.actor, entry.data) == (staff, {"changed": ["password"], "values": {}})
    refreshed = client_for().post("/api/v1/auth/refresh", {"refresh": token}, format="json")
    assert refreshed.status_code == 401
    signed_in = client_for().post(
        "/api/v1/auth/signin",
        {"email": alice.email, "password": "a-brand-new-passphrase"},
        format="json",
    )
    assert signed_in.status_code == 200
