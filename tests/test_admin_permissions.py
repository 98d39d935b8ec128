"""Who may see and do what in the admin, tried through every URL as staff of each group.

support: sees everything, freezes/unfreezes wallets, sends password resets.
compliance: sees everything, verifies the audit chain, exports the whole audit log.
superusers: also create/edit accounts, deactivate/reactivate users and reverse transfers.
Nobody, superusers included, changes a balance, a ledger line, a transfer or an audit entry.
"""

import importlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from analytics.models import Export
from analytics.services import export_create
from audit.models import AuditEntry
from notifications.models import Notification
from tests.conftest import PASSWORD, client_for, fund, make_user, snapshot
from tests.test_admin import staff_in
from wallet.models import DeviceSession, LedgerEntry, MoneyRequest, Transfer, Wallet
from wallet.services.money import transfer_create
from wallet.services.requests import money_request_create

pytestmark = pytest.mark.django_db

VIEW_EVERYTHING = {
    "wallet.view_user",
    "wallet.view_wallet",
    "wallet.view_ledgerentry",
    "wallet.view_transfer",
    "wallet.view_moneyrequest",
    "wallet.view_devicesession",
    "wallet.view_idempotencykey",
    "notifications.view_notification",
    "audit.view_auditentry",
}


@pytest.fixture
def history(alice, bob):
    """One of everything the admin shows."""
    fund(alice, 500_00)
    transfer = transfer_create(sender=alice, recipient=bob, amount=120_00).transfer
    money_request_create(requester=bob, payer=alice, amount=5_00)
    client_for(alice)  # a device session
    export_create(
        user=alice,
        kind="statement",
        format="csv",
        period_start=timezone.now() - timedelta(days=1),
        period_end=timezone.now(),
    )
    return transfer


def group_permissions(name: str) -> set[str]:
    return {
        f"{permission.content_type.app_label}.{permission.codename}"
        for permission in Group.objects.get(name=name).permissions.select_related("content_type")
    }


def test_the_migration_makes_both_groups_with_least_privilege():
    # On the models as they were at that migration (what `migrate` runs), from nothing.
    Group.objects.filter(name__in=["support", "compliance"]).delete()
    state = MigrationExecutor(connection).loader.project_state(("wallet", "0005_support_groups"))
    importlib.import_module("wallet.migrations.0005_support_groups").groups_sync(state.apps)
    assert group_permissions("support") == VIEW_EVERYTHING | {
        "wallet.freeze_wallet",
        "wallet.send_password_reset",
    }
    assert group_permissions("compliance") == VIEW_EVERYTHING | {"audit.verify_chain"}


def test_exports_join_both_groups_and_only_compliance_exports_the_audit_log():
    Group.objects.filter(name__in=["support", "compliance"]).delete()
    state = MigrationExecutor(connection).loader.project_state(("wallet", "0006_groups_exports"))
    importlib.import_module("wallet.migrations.0005_support_groups").groups_sync(state.apps)
    importlib.import_module("wallet.migrations.0006_groups_exports").permissions_add(
        state.apps, None
    )
    assert group_permissions("support") == VIEW_EVERYTHING | {
        "wallet.freeze_wallet",
        "wallet.send_password_reset",
        "analytics.view_export",
    }
    assert group_permissions("compliance") == VIEW_EVERYTHING | {
        "audit.verify_chain",
        "analytics.view_export",
        "audit.export_log",
    }


def list_pages(transfer) -> list[str]:
    entry = LedgerEntry.objects.filter(transfer=transfer).first()
    return [
        "/admin/",
        "/admin/wallet/user/",
        f"/admin/wallet/user/{transfer.sender_id}/change/",
        "/admin/wallet/wallet/",
        f"/admin/wallet/wallet/{transfer.sender.wallet.pk}/change/",
        "/admin/wallet/ledgerentry/",
        f"/admin/wallet/ledgerentry/{entry.pk}/change/",
        "/admin/wallet/transfer/",
        f"/admin/wallet/transfer/{transfer.pk}/change/",
        "/admin/wallet/moneyrequest/",
        f"/admin/wallet/moneyrequest/{MoneyRequest.objects.get().pk}/change/",
        "/admin/wallet/devicesession/",
        f"/admin/wallet/devicesession/{DeviceSession.objects.first().pk}/change/",
        "/admin/wallet/idempotencykey/",
        "/admin/notifications/notification/",
        f"/admin/notifications/notification/{Notification.objects.first().pk}/change/",
        "/admin/audit/auditentry/",
        f"/admin/audit/auditentry/{AuditEntry.objects.first().pk}/change/",
        "/admin/analytics/export/",
        f"/admin/analytics/export/{Export.objects.get().pk}/change/",
    ]


@pytest.mark.parametrize("group", ["support", "compliance"])
def test_both_groups_see_every_page_but_no_save_button(group, history):
    _, browser = staff_in(group)
    for page in list_pages(history):
        response = browser.get(page)
        assert response.status_code == 200, page
        assert b'name="_save"' not in response.content, page
    # Nothing outside their work: groups, and the raw token tables (not even registered).
    assert browser.get("/admin/auth/group/").status_code == 403
    assert browser.get("/admin/token_blacklist/outstandingtoken/").status_code == 404


def test_a_superuser_sees_every_page_but_money_and_audit_stay_read_only(history):
    _, browser = staff_in(None, is_superuser=True)
    for page in list_pages(history):
        assert browser.get(page).status_code == 200, page
    for page in [
        f"/admin/wallet/wallet/{history.sender.wallet.pk}/change/",
        f"/admin/wallet/ledgerentry/{LedgerEntry.objects.first().pk}/change/",
        f"/admin/wallet/transfer/{history.pk}/change/",
        f"/admin/audit/auditentry/{AuditEntry.objects.first().pk}/change/",
    ]:
        assert b'name="_save"' not in browser.get(page).content, page


def change_attempts(transfer) -> list[tuple[str, str, dict]]:
    """Every admin URL that could change a balance, a ledger line, a transfer, an audit
    entry or an account, with a form that would do it if it were accepted."""
    wallet = transfer.sender.wallet
    entry = LedgerEntry.objects.filter(transfer=transfer).first()
    audit = AuditEntry.objects.first()
    user = transfer.sender
    money = {"balance": "99999999", "amount": "1", "balance_after": "1", "status": "reversed"}
    attempts = []
    for base, pk in [
        ("/admin/wallet/wallet/", wallet.pk),
        ("/admin/wallet/ledgerentry/", entry.pk),
        ("/admin/wallet/transfer/", transfer.pk),
        ("/admin/audit/auditentry/", audit.pk),
        ("/admin/wallet/user/", user.pk),
        ("/admin/wallet/moneyrequest/", MoneyRequest.objects.get().pk),
        ("/admin/notifications/notification/", Notification.objects.first().pk),
    ]:
        attempts += [
            ("get", f"{base}add/", {}),
            ("post", f"{base}add/", {**money, "wallet": wallet.pk, "email": "x@example.com"}),
            ("post", f"{base}{pk}/change/", {**money, "action": "x", "is_active": ""}),
            ("get", f"{base}{pk}/delete/", {}),
            ("post", f"{base}{pk}/delete/", {"post": "yes"}),
            ("post", base, {"action": "delete_selected", "_selected_action": [pk], "post": "yes"}),
        ]
    attempts += [
        ("post", f"/admin/wallet/user/{user.pk}/password/", {"password1": "x" * 20}),
        ("post", "/admin/auth/group/add/", {"name": "root"}),
    ]
    return attempts


def money_state(transfer) -> dict:
    return {
        **snapshot(),
        "wallets": list(Wallet.objects.order_by("pk").values_list("balance", "status")),
        "ledger_rows": list(
            LedgerEntry.objects.order_by("pk").values_list("amount", "balance_after")
        ),
        "transfer": Transfer.objects.filter(pk=transfer.pk).values_list("status", "amount").get(),
        "audit_hashes": list(AuditEntry.objects.order_by("seq").values_list("hash", flat=True)),
        "users": list(
            type(transfer.sender)
            .objects.order_by("pk")
            .values_list("email", "is_active", "is_staff", "password")
        ),
    }


@pytest.mark.parametrize("group", ["support", "compliance"])
def test_no_group_can_change_money_audit_or_accounts_by_any_admin_url(group, history):
    _, browser = staff_in(group)
    before = money_state(history)
    for method, url, data in change_attempts(history):
        response = getattr(browser, method)(url, data)
        assert response.status_code == 403, (method, url, response.status_code)
    assert money_state(history) == before


def test_nor_can_a_superuser_change_money_or_audit(history):
    _, browser = staff_in(None, is_superuser=True)
    before = money_state(history)
    for method, url, data in change_attempts(history):
        if url.startswith(("/admin/wallet/user/", "/admin/auth/")):
            continue  # account management is theirs (tested in test_admin.py)
        response = getattr(browser, method)(url, data)
        assert response.status_code == 403, (method, url, response.status_code)
    assert money_state(history) == before


def offered_actions(browser, changelist: str) -> set[str]:
    page = browser.get(changelist).content.decode()
    return set(re.findall(r'<option value="([a-z_]+)"', page)) - {""}


EXPECTED_ACTIONS = {
    "support": {
        "/admin/wallet/wallet/": {"freeze", "unfreeze"},
        "/admin/wallet/user/": {"send_password_reset"},
        "/admin/wallet/transfer/": set(),
    },
    "compliance": {
        "/admin/wallet/wallet/": set(),
        "/admin/wallet/user/": set(),
        "/admin/wallet/transfer/": set(),
    },
    None: {
        "/admin/wallet/wallet/": {"freeze", "unfreeze"},
        "/admin/wallet/user/": {"deactivate", "reactivate", "send_password_reset"},
        "/admin/wallet/transfer/": {"reverse"},
    },
}


@pytest.mark.parametrize("group", ["support", "compliance", None])
def test_each_group_is_offered_exactly_its_actions(group, history):
    _, browser = staff_in(group, is_superuser=group is None)
    for changelist, actions in EXPECTED_ACTIONS[group].items():
        assert offered_actions(browser, changelist) == actions, changelist
    for changelist in [
        "/admin/wallet/ledgerentry/",
        "/admin/audit/auditentry/",
        "/admin/notifications/notification/",
    ]:
        assert offered_actions(browser, changelist) == set(), changelist


@pytest.mark.parametrize(
    ("group", "changelist", "action", "target"),
    [
        ("support", "/admin/wallet/transfer/", "reverse", "transfer"),
        ("support", "/admin/wallet/user/", "deactivate", "recipient"),
        ("support", "/admin/wallet/user/", "reactivate", "recipient"),
        ("compliance", "/admin/wallet/wallet/", "freeze", "wallet"),
        ("compliance", "/admin/wallet/user/", "send_password_reset", "recipient"),
        ("compliance", "/admin/wallet/transfer/", "reverse", "transfer"),
    ],
)
def test_an_action_outside_the_group_is_refused_and_changes_nothing(
    group, changelist, action, target, history
):
    _, browser = staff_in(group)
    pk = {
        "transfer": history.pk,
        "recipient": history.recipient_id,
        "wallet": history.sender.wallet.pk,
    }[target]
    before = money_state(history)
    for data in [
        {"action": action, "_selected_action": [pk], "index": 0},
        {"action": action, "_selected_action": [pk], "apply": "yes", "reason": "Because"},
    ]:
        assert browser.post(changelist, data).status_code == 403
    assert money_state(history) == before


def test_only_compliance_and_superusers_verify_the_audit_chain(history):
    _, support = staff_in("support")
    assert support.get("/admin/audit/auditentry/verify/").status_code == 403
    assert support.post("/admin/audit/auditentry/verify/").status_code == 403
    assert b"/admin/audit/auditentry/verify/" not in support.get("/admin/audit/auditentry/").content
    _, compliance = staff_in("compliance")
    assert b"/admin/audit/auditentry/verify/" in compliance.get("/admin/audit/auditentry/").content
    assert compliance.get("/admin/audit/auditentry/verify/").status_code == 200
    _, superuser = staff_in(None, is_superuser=True)
    assert superuser.post("/admin/audit/auditentry/verify/").status_code == 200


def test_staff_without_a_group_see_nothing(history):
    staff = make_user("Plain", "Staff", is_staff=True)
    browser = Client()
    assert browser.login(username=staff.email, password=PASSWORD)
    for page in list_pages(history)[1:]:
        assert browser.get(page).status_code == 403, page


def test_the_staff_apis_ask_for_the_admins_permissions(history):
    """/audit/verify: compliance's ``audit.verify_chain``, as the admin's verify page.
    /analytics/kpi: sums of the wallets, ledger lines, users and exports the admin shows row by
    row, so their view permissions (both groups hold them); being staff is not enough."""
    allowed = {
        "plain staff": (403, 403),
        "support": (403, 200),
        "compliance": (200, 200),
        "superuser": (200, 200),
    }
    callers = {
        "plain staff": make_user("Plain", "Staff", is_staff=True),
        "support": staff_in("support")[0],
        "compliance": staff_in("compliance")[0],
        "superuser": staff_in(None, is_superuser=True)[0],
    }
    answered = {
        name: tuple(
            client_for(user).get(url).status_code
            for url in ("/api/v1/audit/verify", "/api/v1/analytics/kpi")
        )
        for name, user in callers.items()
    }
    assert answered == allowed
