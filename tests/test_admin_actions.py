"""Support actions through the admin: each asks for a reason, goes through its service, is
audited with the staff member as actor and tells the customer; a refused one changes nothing."""

import json
import re

import pytest
from django.core import mail
from django.db import connection

from audit.models import AuditEntry
from notifications.models import Event, Notification
from quickpe.errors import NotAllowed
from tests.conftest import PASSWORD, client_for, fund, make_user, snapshot, wallet_status_set
from tests.invariants import assert_money_invariants
from tests.test_admin import run_action, staff_in
from wallet.models import DeviceSession, User, Wallet
from wallet.services import support
from wallet.services.money import transfer_create

pytestmark = pytest.mark.django_db


def events_of(user) -> list[tuple[str, dict]]:
    """The user's stream, each payload round-tripped through JSON as a client gets it."""
    return [
        (event.type, json.loads(json.dumps(event.data)))
        for event in Event.objects.filter(user=user).order_by("seq")
    ]


def messages_of(response) -> list[str]:
    return [str(message) for message in response.wsgi_request._messages]


def test_freezing_asks_for_a_reason_and_a_blank_one_changes_nothing(alice):
    _, browser = staff_in("support")
    wallet = Wallet.objects.get(user=alice)
    before = snapshot()
    response = run_action(browser, "/admin/wallet/wallet/", "freeze", [wallet.pk], reason="  ")
    assert response.status_code == 200
    assert b"This field is required." in response.content
    wallet.refresh_from_db()
    assert wallet.status == "active"
    assert snapshot() == before


def test_support_freezes_and_unfreezes_with_a_reason_and_the_customer_is_told(alice, bob):
    staff, browser = staff_in("support")
    fund(alice, 50_00)
    wallet = Wallet.objects.get(user=alice)
    known = Event.objects.filter(user=alice).count()

    response = run_action(
        browser, "/admin/wallet/wallet/", "freeze", [wallet.pk], reason="Reported stolen phone"
    )
    assert response.status_code == 302
    assert messages_of(response) == ["1 wallet(s) frozen."]
    wallet.refresh_from_db()
    assert wallet.status == "frozen"
    entry = AuditEntry.objects.get(action="wallet.freeze")
    assert (entry.actor, entry.entity_type, entry.entity_id) == (staff, "wallet", str(wallet.pk))
    assert entry.data == {"quickpe_id": alice.quickpe_id, "reason": "Reported stolen phone"}
    notice = Notification.objects.get(user=alice, kind="security")
    assert notice.title == "Your wallet was frozen"
    assert "stolen" not in notice.body  # the reason is for staff, not for the customer
    [(kind, data)] = events_of(alice)[known:]
    assert kind == "notification:new"
    assert data["notification"]["id"] == notice.pk and data["unread_count"] == 2
    assert events_of(staff)[-1][0] == "audit:new"
    assert events_of(staff)[-1][1]["entry"]["action"] == "wallet.freeze"

    # Frozen: no money moves. Freezing again is refused and changes nothing.
    refused = client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "1.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="after-freeze",
    )
    assert refused.status_code == 403 and refused.json()["code"] == "wallet_frozen"
    before = snapshot()
    again = run_action(browser, "/admin/wallet/wallet/", "freeze", [wallet.pk], reason="Again")
    assert messages_of(again) == [f"{wallet}: The wallet is already frozen."]
    assert snapshot() == before

    response = run_action(
        browser, "/admin/wallet/wallet/", "unfreeze", [wallet.pk], reason="Phone recovered"
    )
    assert messages_of(response) == ["1 wallet(s) active again."]
    wallet.refresh_from_db()
    assert wallet.status == "active"
    assert AuditEntry.objects.get(action="wallet.unfreeze").data["reason"] == "Phone recovered"
    assert Notification.objects.filter(user=alice, kind="security").count() == 2
    assert_money_invariants()


def test_a_superuser_deactivates_a_user_who_is_signed_out_everywhere(alice):
    staff, browser = staff_in(None, is_superuser=True)
    api = client_for(alice)
    assert api.get("/api/v1/wallet").status_code == 200

    response = run_action(
        browser, "/admin/wallet/user/", "deactivate", [alice.pk], reason="Account takeover"
    )
    assert messages_of(response) == ["1 user(s) deactivated and signed out."]
    alice.refresh_from_db()
    assert alice.is_active is False
    assert not DeviceSession.objects.filter(user=alice, revoked_at__isnull=True).exists()
    assert api.get("/api/v1/wallet").status_code == 401  # the access token stops at once
    signin = client_for().post(
        "/api/v1/auth/signin", {"email": alice.email, "password": PASSWORD}, format="json"
    )
    assert signin.status_code == 401
    entry = AuditEntry.objects.get(action="admin.user_deactivate")
    assert entry.actor == staff and entry.entity_id == str(alice.pk)
    assert entry.data["reason"] == "Account takeover" and entry.data["revoked_tokens"] == 1
    assert Notification.objects.get(user=alice).title == "Your account was deactivated"

    response = run_action(
        browser, "/admin/wallet/user/", "reactivate", [alice.pk], reason="Owner verified"
    )
    assert messages_of(response) == ["1 user(s) reactivated."]
    alice.refresh_from_db()
    assert alice.is_active is True
    assert AuditEntry.objects.get(action="admin.user_reactivate").actor == staff
    signin = client_for().post(
        "/api/v1/auth/signin", {"email": alice.email, "password": PASSWORD}, format="json"
    )
    assert signin.status_code == 200


def test_refused_user_actions_change_nothing(alice):
    staff, browser = staff_in(None, is_superuser=True)
    other_superuser = make_user("Root", "Two", is_staff=True, is_superuser=True)
    before = snapshot()
    response = run_action(browser, "/admin/wallet/user/", "deactivate", [staff.pk], reason="x")
    assert messages_of(response) == [f"{staff}: {SELF_ACTION}"]
    response = run_action(browser, "/admin/wallet/user/", "reactivate", [alice.pk], reason="x")
    assert messages_of(response) == [f"{alice}: The account is already active."]
    assert snapshot() == before
    assert User.objects.get(pk=staff.pk).is_active and other_superuser.is_active


SELF_ACTION = "You cannot act on your own account, wallet or a transfer you took part in."


def test_support_cannot_unfreeze_or_freeze_their_own_wallet_in_the_admin(alice):
    staff, browser = staff_in("support")
    colleague, _ = staff_in("support")
    wallet_status_set(staff, "frozen", actor=colleague)
    own = Wallet.objects.get(user=staff)
    before = snapshot()
    response = run_action(browser, "/admin/wallet/wallet/", "unfreeze", [own.pk], reason="x")
    assert messages_of(response) == [f"{own}: {SELF_ACTION}"]
    own.refresh_from_db()
    assert own.status == "frozen"
    assert snapshot() == before

    wallet_status_set(staff, "active", actor=colleague)
    before = snapshot()
    response = run_action(browser, "/admin/wallet/wallet/", "freeze", [own.pk], reason="x")
    assert messages_of(response) == [f"{own}: {SELF_ACTION}"]
    assert snapshot() == before


def test_no_support_service_acts_on_the_staff_members_own_account(alice, rf):
    staff, _ = staff_in(None, is_superuser=True)
    colleague, _ = staff_in(None, is_superuser=True)
    fund(staff, 10_00)
    transfer = transfer_create(sender=staff, recipient=alice, amount=1_00).transfer
    wallet_status_set(staff, "frozen", actor=colleague)
    wallet = Wallet.objects.get(user=staff)
    before = snapshot()
    for call in [
        lambda: support.wallet_unfreeze(wallet=wallet, actor=staff, reason="x"),
        lambda: support.wallet_freeze(wallet=wallet, actor=staff, reason="x"),
        lambda: support.user_deactivate(user=staff, actor=staff, reason="x"),
        lambda: support.user_reactivate(user=staff, actor=staff, reason="x"),
        lambda: support.password_reset_send(
            user=staff, actor=staff, reason="x", request=rf.get("/admin/")
        ),
        lambda: support.transfer_reverse(transfer=transfer, actor=staff, reason="x"),
    ]:
        with pytest.raises(NotAllowed, match=SELF_ACTION):
            call()
    assert snapshot() == before
    assert not mail.outbox


def test_services_check_the_permission_even_without_the_admin(alice, bob):
    support_staff, _ = staff_in("support")
    fund(alice, 10_00)
    transfer = transfer_create(sender=alice, recipient=bob, amount=1_00).transfer
    before = snapshot()
    for call in [
        lambda: support.user_deactivate(user=bob, actor=support_staff, reason="x"),
        lambda: support.transfer_reverse(transfer=transfer, actor=support_staff, reason="x"),
        lambda: support.wallet_freeze(wallet=bob.wallet, actor=bob, reason="x"),
    ]:
        with pytest.raises(NotAllowed):
            call()
    with pytest.raises(support.ReasonRequired):
        support.wallet_freeze(wallet=bob.wallet, actor=support_staff, reason=" ")
    assert snapshot() == before


def test_support_sends_a_password_reset_that_signs_every_device_out(
    alice, django_capture_on_commit_callbacks
):
    staff, browser = staff_in("support")
    api = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(
            browser,
            "/admin/wallet/user/",
            "send_password_reset",
            [alice.pk],
            reason="Customer called, locked out",
        )
    assert messages_of(response) == ["Password reset link sent to 1 user(s)."]
    entry = AuditEntry.objects.get(action="admin.password_reset_send")
    assert entry.actor == staff and entry.data["reason"] == "Customer called, locked out"
    assert entry.data["email"].startswith(alice.email[:2] + "***@")  # masked
    assert Notification.objects.get(user=alice).title == "We sent you a password reset link"
    [email] = mail.outbox
    assert email.to == [alice.email] and email.subject == "Choose a new QuickPe password"
    link = re.search(r"http://testserver(/account/password-reset/\S+/)", email.body).group(1)
    assert api.get("/api/v1/wallet").status_code == 200  # sending it signs nobody out

    stranger = client_for()  # the customer's browser, not signed in to anything
    form_page = stranger.get(link, follow=True)
    assert form_page.status_code == 200 and b"new_password1" in form_page.content
    assert b'href="/admin/' not in form_page.content
    assert b"Django administration" not in form_page.content
    new_password = "a-brand-new-passphrase-42"
    done = stranger.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": new_password, "new_password2": new_password},
    )
    assert done.status_code == 302 and done.url == "/account/password-reset/done/"
    finished = stranger.get(done.url)
    assert finished.status_code == 200 and b"every device was signed out" in finished.content
    assert b'href="/admin/' not in finished.content

    alice.refresh_from_db()
    assert alice.check_password(new_password)
    assert api.get("/api/v1/wallet").status_code == 401
    assert not DeviceSession.objects.filter(user=alice, revoked_at__isnull=True).exists()
    reset = AuditEntry.objects.get(action="user.password_reset")
    assert reset.actor == alice and reset.data == {"revoked_tokens": 1}
    assert Notification.objects.filter(user=alice, title="Your password was reset").exists()
    # The link works once.
    reused = client_for().get(link, follow=True)
    assert b"new_password1" not in reused.content


def test_no_password_reset_for_a_deactivated_account(alice):
    _, root = staff_in(None, is_superuser=True)
    run_action(root, "/admin/wallet/user/", "deactivate", [alice.pk], reason="Fraud")
    _, browser = staff_in("support")
    before = snapshot()
    response = run_action(
        browser, "/admin/wallet/user/", "send_password_reset", [alice.pk], reason="Asked"
    )
    assert messages_of(response) == [
        f"{User.objects.get(pk=alice.pk)}: The account is deactivated; reactivate it first."
    ]
    assert snapshot() == before and mail.outbox == []


def test_a_superuser_setting_a_password_in_the_admin_signs_the_user_out(alice):
    staff, browser = staff_in(None, is_superuser=True)
    api = client_for(alice)
    response = browser.post(
        f"/admin/wallet/user/{alice.pk}/password/",
        {
            "password1": "set-by-the-admin-123",
            "password2": "set-by-the-admin-123",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
    assert api.get("/api/v1/wallet").status_code == 401
    entry = AuditEntry.objects.get(action="admin.user_change")
    assert entry.actor == staff and entry.data["changed"] == ["password"]


def test_the_audit_verification_page_shows_the_chain_check(alice):
    _, browser = staff_in("compliance")
    fund(alice, 10_00)
    page = browser.get("/admin/audit/auditentry/verify/")
    assert page.status_code == 200 and page.context["result"] is None
    response = browser.post("/admin/audit/auditentry/verify/")
    result = response.context["result"]
    assert result.valid and result.checked == AuditEntry.objects.count()
    assert result.head_seq == AuditEntry.objects.order_by("-seq").first().seq
    assert b"<strong>Valid</strong>" in response.content


def test_the_audit_verification_page_names_the_first_bad_entry(alice):
    _, browser = staff_in("compliance")
    fund(alice, 10_00)
    fund(alice, 20_00)
    tampered = AuditEntry.objects.filter(action="wallet.deposit").order_by("seq").first()
    with connection.cursor() as cursor:
        # As a database superuser would: with the append-only trigger not firing.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE audit_auditentry SET data = '{}'::jsonb WHERE seq = %s", [tampered.seq]
        )
        cursor.execute("SET session_replication_role = origin")
    response = browser.post("/admin/audit/auditentry/verify/")
    result = response.context["result"]
    assert not result.valid and result.first_invalid_seq == tampered.seq
    assert b"INVALID" in response.content


def test_password_reset_emails_to_one_user_are_rate_limited(
    alice, bob, settings, django_capture_on_commit_callbacks
):
    settings.QUICKPE_SUPPORT_RESET_RATE = "2/h"
    _, browser = staff_in("support")

    def send(user):
        with django_capture_on_commit_callbacks(execute=True):
            return run_action(
                browser, "/admin/wallet/user/", "send_password_reset", [user.pk], reason="Asked"
            )

    for _ in range(2):
        assert messages_of(send(alice)) == ["Password reset link sent to 1 user(s)."]
    before = snapshot()
    refused = messages_of(send(alice))
    assert refused == [
        f"{alice}: A reset link was sent to this user recently; try again in 60 min."
    ]
    assert snapshot() == before
    assert len(mail.outbox) == 2
    assert AuditEntry.objects.filter(action="admin.password_reset_send").count() == 2
    # The limit is per customer: another one still gets theirs.
    assert messages_of(send(bob)) == ["Password reset link sent to 1 user(s)."]
