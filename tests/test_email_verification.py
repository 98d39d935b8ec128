"""Email verification and look-alike addresses (issue 15, item 6; API.md "Auth and users").

An account is found by email only once its owner followed the one-time link mailed to that
address; until then transfers, money requests and search answer exactly as for an unknown
address, and the account is reachable by QuickPe ID only. Addresses that mix scripts or pass
for another are refused wherever an account's email is set.
"""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core import mail, signing
from django.core.management import call_command
from django.test import Client
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from audit.models import AuditEntry
from tests.conftest import (
    PASSWORD,
    assert_problem,
    client_for,
    fund,
    make_user,
    snapshot,
)
from tests.processes import free_port
from tests.test_admin import change_form, staff_in
from tests.test_auth_api import USER_KEYS
from tests.test_dashboard import browser_for
from wallet.management.commands.seed_demo import DEMO_EMAILS
from wallet.models import User
from wallet.services.emails import (
    EmailConfusable,
    email_check,
    imitates_another,
    verification_token,
)
from wallet.services.users import user_create

pytestmark = pytest.mark.django_db
SIGNUP = "/api/v1/auth/signup"
VERIFY = "/api/v1/auth/verify-email"
RESEND = "/api/v1/me/email/verification"
STRANGER = "nobody-at-all@example.com"
LOOK_ALIKES = [
    "alice@p\u0430ypal.com",  # Cyrillic а in a Latin domain: mixed scripts
    "bob@g\u03bfogle.com",  # Greek ο
    "carol@p\u0251ypal.com",  # Latin alpha ɑ, which passes for a
    "dan@\uff50\uff41\uff59\uff50\uff41\uff4c.com",  # fullwidth ｐａｙｐａｌ
    "erin@\u0441\u043e\u0441\u043e.\u0440\u0443",  # all Cyrillic, reads as coco.py
    "frank@example\u2010shop.com",  # a hyphen that is not the ASCII one
]
FINE = [
    "zoe@m\u00fcller.de",  # Latin letters beyond ASCII that pass for no ASCII one
    "ravi@\u0909\u0926\u093e\u0939\u0930\u0923.\u092d\u093e\u0930\u0924",  # उदाहरण.भारत
    "ivan@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",  # пример.рф
]


def signup(email: str, client: Client | None = None):
    body = {"email": email, "password": PASSWORD, "first_name": "New", "last_name": "Person"}
    return (client or client_for()).post(SIGNUP, body, format="json")


def link_token(message) -> str:
    """The token of the link in a verification email (the query string decoded)."""
    link = re.search(r"http://testserver/verify-email\?\S+", message.body).group(0)
    return parse_qs(urlsplit(link).query)["token"][0]


def pay(sender: User, recipient: str, key: str):
    return client_for(sender).post(
        "/api/v1/transfers",
        {"recipient": recipient, "amount": "1.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def ask(requester: User, payer: str):
    return client_for(requester).post(
        "/api/v1/money-requests", {"payer": payer, "amount": "1.00"}, format="json"
    )


def search(caller: User, query: str) -> list:
    response = client_for(caller).get("/api/v1/users", {"search": query})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def unverified(db):
    return make_user("Uma", "Unverified", verified=False)


# Sign-up mails a link; following it verifies the address ------------------------------------


def test_signup_mails_a_link_that_verifies_the_address_with_a_button(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        response = signup("New.Person@Example.com")
    assert response.status_code == 201, response.content
    assert response.json()["user"]["email_verified"] is False
    user = User.objects.get(email="new.person@example.com")
    assert (user.email_verified, user.email_verified_at) == (False, None)
    [message] = mail.outbox
    assert message.to == ["new.person@example.com"]
    assert message.subject == "Verify your email for QuickPe"
    assert user.quickpe_id in message.body and "24 hours" in message.body
    link = re.search(r"http://testserver(/verify-email\?\S+)", message.body).group(1)

    # Opening the link changes nothing: mail scanners open links too.
    browser = Client()  # the mail may be read on another device, signed in to nothing
    page = browser.get(link)
    assert page.status_code == 200 and b"Verify my email" in page.content
    assert not User.objects.get(pk=user.pk).email_verified
    token = re.search(rb'name="token" value="([^"]+)"', page.content).group(1).decode()
    assert token == link_token(message)

    done = browser.post("/verify-email", {"token": token})
    assert done.status_code == 200 and b'data-testid="verified"' in done.content
    user.refresh_from_db()
    assert user.email_verified and user.email_verified_at is not None
    entry = AuditEntry.objects.get(action="user.email_verified")
    assert (entry.actor, entry.entity_id) == (user, str(user.pk))
    assert entry.data == {"email": "ne***@example.com"}


def test_a_mail_server_that_fails_leaves_the_signup_standing(
    settings, caplog, django_capture_on_commit_callbacks
):
    """The link leaves after commit; a mail server that refuses it is logged (without the
    address) and the account stands: its owner asks for another link."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens
    settings.EMAIL_TIMEOUT = 5
    with django_capture_on_commit_callbacks(execute=True):
        response = signup("mail.down@example.com")
    assert response.status_code == 201, response.content
    assert User.objects.filter(email="mail.down@example.com", email_verified=False).exists()
    [record] = [r for r in caplog.records if r.name == "wallet.services.emails"]
    assert record.getMessage() == "verification email not sent: ConnectionRefusedError"


def test_the_api_verifies_with_the_token_and_answers_the_user(unverified):
    before = AuditEntry.objects.count()
    response = client_for().post(VERIFY, {"token": verification_token(unverified)}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == unverified.pk and body["email_verified"] is True
    assert set(body) == USER_KEYS
    assert AuditEntry.objects.count() == before + 1
    entry = AuditEntry.objects.order_by("-seq").first()
    assert (entry.action, entry.actor_id) == ("user.email_verified", unverified.pk)
    assert client_for(unverified).get("/api/v1/me").json()["email_verified"] is True


def test_a_link_works_once(unverified):
    token = verification_token(unverified)
    assert client_for().post(VERIFY, {"token": token}, format="json").status_code == 200
    before = snapshot()
    again = client_for().post(VERIFY, {"token": token}, format="json")
    assert_problem(again, 400, "invalid_token")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("waited", "status"),
    [(timedelta(hours=24) - timedelta(seconds=1), 200), (timedelta(hours=24, seconds=1), 400)],
)
def test_a_link_expires_after_24_hours(unverified, waited, status):
    sent_at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(sent_at, tick=False):
        token = verification_token(unverified)
    with time_machine.travel(sent_at + waited, tick=False):
        before = snapshot()
        response = client_for().post(VERIFY, {"token": token}, format="json")
    assert response.status_code == status, response.content
    if status == 400:
        assert_problem(response, 400, "invalid_token")
        assert snapshot() == before
        assert not User.objects.get(pk=unverified.pk).email_verified


def test_the_hours_a_link_works_are_a_setting(unverified, settings):
    settings.QUICKPE_EMAIL_VERIFICATION_HOURS = 1
    sent_at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(sent_at, tick=False):
        token = verification_token(unverified)
    with time_machine.travel(sent_at + timedelta(minutes=61), tick=False):
        response = client_for().post(VERIFY, {"token": token}, format="json")
    assert_problem(response, 400, "invalid_token")


def _tampered(token: str) -> list[str]:
    payload, timestamp, signature = token.rsplit(":", 2)
    flip = "A" if signature[0] != "A" else "B"
    return [
        f"{payload}:{timestamp}:{flip}{signature[1:]}",  # the signature
        f"{payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}:{timestamp}:{signature}",
        f"{payload}:{timestamp[:-1]}{'0' if timestamp[-1] != '0' else '1'}:{signature}",
        token[:-1],
        "not-a-token",
        "x" * 512,
    ]


def test_a_tampered_or_foreign_token_changes_nothing(unverified, alice):
    token = verification_token(unverified)
    before = snapshot()
    # Signed by this server, but for another use (another salt) or naming another account.
    foreign = [
        signing.dumps({"user": unverified.pk, "state": "x"}, salt="quickpe.other"),
        signing.dumps({"user": alice.pk, "state": "x"}, salt="quickpe.email-verification"),
        signing.dumps(["not", "a", "dict"], salt="quickpe.email-verification"),
    ]
    for bad in [*_tampered(token), *foreign]:
        assert_problem(
            client_for().post(VERIFY, {"token": bad}, format="json"), 400, "invalid_token"
        )
    assert_problem(client_for().post(VERIFY, {}, format="json"), 400, "validation_error")
    assert snapshot() == before
    assert not User.objects.get(pk=unverified.pk).email_verified


def test_a_link_stops_working_once_the_address_changes(
    unverified, django_capture_on_commit_callbacks
):
    token = verification_token(unverified)
    _, browser = staff_in(None, is_superuser=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(
            f"/admin/wallet/user/{unverified.pk}/change/",
            change_form(unverified, email="uma.new@example.com"),
        )
    assert response.status_code == 302, response.content[:2000]
    assert_problem(client_for().post(VERIFY, {"token": token}, format="json"), 400, "invalid_token")
    # The new address got a link of its own, and that one works.
    [message] = mail.outbox
    assert message.to == ["uma.new@example.com"]
    verified = client_for().post(VERIFY, {"token": link_token(message)}, format="json")
    assert verified.status_code == 200 and verified.json()["email"] == "uma.new@example.com"


def test_a_verified_address_changed_by_support_is_unverified_again(
    alice, bob, django_capture_on_commit_callbacks
):
    fund(bob, 10_00)
    _, browser = staff_in(None, is_superuser=True)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(
            f"/admin/wallet/user/{alice.pk}/change/",
            change_form(alice, email="alice.elsewhere@example.com"),
        )
    alice.refresh_from_db()
    assert (alice.email_verified, alice.email_verified_at) == (False, None)
    entry = AuditEntry.objects.get(action="admin.user_change")
    assert entry.data["values"]["email_verified"] is False
    assert_problem(pay(bob, "alice.elsewhere@example.com", "k1"), 404, "recipient_not_found")
    assert pay(bob, alice.quickpe_id, "k2").status_code == 201
    assert len(mail.outbox) == 1


def test_a_deactivated_account_cannot_be_verified(unverified):
    User.objects.filter(pk=unverified.pk).update(is_active=False)
    before = snapshot()
    response = client_for().post(VERIFY, {"token": verification_token(unverified)}, format="json")
    assert_problem(response, 400, "invalid_token")
    assert snapshot() == before


# Until verified, the address finds no one -------------------------------------------------


def test_an_unverified_address_is_paid_as_an_unknown_one(alice, unverified):
    fund(alice, 100_00)
    unknown = pay(alice, STRANGER, "unknown")
    before = snapshot()
    refused = pay(alice, unverified.email, "unverified")
    body = assert_problem(refused, 404, "recipient_not_found")
    assert body == unknown.json()
    assert snapshot() == before
    by_id = pay(alice, unverified.quickpe_id, "by-id")
    assert by_id.status_code == 201, by_id.content
    assert by_id.json()["transfer"]["recipient"]["quickpe_id"] == unverified.quickpe_id


def test_an_unverified_address_is_asked_as_an_unknown_one(alice, unverified):
    unknown = ask(alice, STRANGER)
    before = snapshot()
    refused = ask(alice, unverified.email.upper())
    body = assert_problem(refused, 404, "payer_not_found")
    assert body == unknown.json()
    assert snapshot() == before
    by_id = ask(alice, unverified.quickpe_id)
    assert by_id.status_code == 201, by_id.content


def test_an_unverified_address_is_searched_as_an_unknown_one(alice, unverified):
    assert search(alice, STRANGER) == []
    assert search(alice, unverified.email) == []
    [found] = search(alice, unverified.quickpe_id)
    assert found["quickpe_id"] == unverified.quickpe_id
    client_for().post(VERIFY, {"token": verification_token(unverified)}, format="json")
    assert [user["quickpe_id"] for user in search(alice, unverified.email)] == [
        unverified.quickpe_id
    ]


def test_the_dashboard_send_form_treats_it_as_unknown(alice, unverified):
    fund(alice, 100_00)
    browser = browser_for(alice)
    before = snapshot()
    response = browser.post(
        "/app/",
        {
            "form": "send",
            "recipient": unverified.email,
            "amount": "5.00",
            "idempotency_key": "dashboard-unverified",
        },
    )
    assert response.status_code == 400
    assert b"No QuickPe user matches that QuickPe ID or email." in response.content
    assert snapshot()["balances"] == before["balances"]


def test_once_verified_the_address_is_paid(alice, unverified):
    fund(alice, 100_00)
    client_for().post(VERIFY, {"token": verification_token(unverified)}, format="json")
    paid = pay(alice, unverified.email, "after")
    assert paid.status_code == 201, paid.content
    assert ask(alice, unverified.email).status_code == 201


# Asking for a new link --------------------------------------------------------------------


def test_a_new_link_is_mailed_on_request_and_audited(
    unverified, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(unverified).post(RESEND)
    assert response.status_code == 202 and response.content == b""
    [message] = mail.outbox
    assert message.to == [unverified.email]
    entry = AuditEntry.objects.get(action="user.email_verification_sent")
    assert entry.actor_id == unverified.pk
    verified = client_for().post(VERIFY, {"token": link_token(message)}, format="json")
    assert verified.status_code == 200, verified.content


def test_asking_for_links_is_rate_limited(unverified, settings, django_capture_on_commit_callbacks):
    settings.QUICKPE_EMAIL_VERIFICATION_RATE = "2/h"
    api = client_for(unverified)
    with django_capture_on_commit_callbacks(execute=True):
        assert [api.post(RESEND).status_code for _ in range(2)] == [202, 202]
        before = snapshot()
        refused = api.post(RESEND)
    assert_problem(refused, 429, "rate_limited")
    assert 3000 < int(refused["Retry-After"]) <= 3600
    assert snapshot() == before and len(mail.outbox) == 2


def test_a_verified_address_gets_no_new_link(alice):
    before = snapshot()
    assert_problem(client_for(alice).post(RESEND), 409, "already_verified")
    assert snapshot() == before and mail.outbox == []


def test_asking_for_a_link_needs_a_sign_in():
    assert_problem(client_for().post(RESEND), 401, "not_authenticated")


# Look-alike addresses -----------------------------------------------------------------------


@pytest.mark.parametrize("email", LOOK_ALIKES)
def test_signup_refuses_an_address_that_passes_for_another(email):
    before = snapshot()
    body = assert_problem(signup(email), 400, "email_confusable")
    assert [error["field"] for error in body["errors"]] == ["email"]
    assert snapshot() == before and mail.outbox == []


@pytest.mark.parametrize("email", FINE)
def test_signup_accepts_one_script_that_passes_for_no_ascii(email):
    response = signup(email)
    assert response.status_code == 201, response.content
    assert response.json()["user"]["email"] == email


def test_the_dashboard_signup_names_the_problem_next_to_the_email():
    before = snapshot()
    response = Client().post(
        "/signup",
        {"first_name": "A", "last_name": "B", "email": LOOK_ALIKES[0], "password": PASSWORD},
    )
    assert response.status_code == 200
    assert response.context["errors"].keys() == {"email"}
    assert "mixes scripts" in response.context["errors"]["email"]
    assert snapshot() == before


def test_support_cannot_set_a_look_alike_address(alice):
    _, browser = staff_in(None, is_superuser=True)
    before = snapshot()
    changed = browser.post(
        f"/admin/wallet/user/{alice.pk}/change/", change_form(alice, email=LOOK_ALIKES[0])
    )
    added = browser.post(
        "/admin/wallet/user/add/",
        {
            "email": LOOK_ALIKES[1],
            "first_name": "New",
            "last_name": "Person",
            "password1": "another-long-passphrase",
            "password2": "another-long-passphrase",
        },
    )
    for response in (changed, added):
        assert response.status_code == 200
        assert "mixes scripts" in " ".join(response.context["adminform"].form.errors["email"])
    assert snapshot() == before
    assert User.objects.get(pk=alice.pk).email == alice.email


def test_an_account_whose_address_predates_the_rule_can_still_be_edited(alice):
    """An address stored before look-alikes were refused stays until it is changed: support
    can still edit the account's other fields."""
    User.objects.filter(pk=alice.pk).update(email=LOOK_ALIKES[0])
    alice.refresh_from_db()
    _, browser = staff_in(None, is_superuser=True)
    response = browser.post(
        f"/admin/wallet/user/{alice.pk}/change/", change_form(alice, first_name="Alicia")
    )
    assert response.status_code == 302, response.content[:2000]
    alice.refresh_from_db()
    assert (alice.first_name, alice.email, alice.email_verified) == (
        "Alicia",
        LOOK_ALIKES[0],
        True,
    )


def test_the_service_refuses_look_alikes_whoever_calls_it():
    before = snapshot()
    for email in LOOK_ALIKES:
        with pytest.raises(EmailConfusable):
            user_create(email=email, password=None)
    assert snapshot() == before


@examples(max_examples=300, deadline=None)
@given(address=st.emails())
def test_plain_ascii_addresses_are_never_refused_as_look_alikes(address):
    assert address.isascii()
    email_check(address.lower())
    email_check(address)


# Cyrillic and Greek letters that look exactly like these ASCII ones.
_TWINS = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "x": "\u0445"}


@examples(max_examples=300, deadline=None)
@given(
    domain=st.from_regex(r"\A[a-z0-9]{0,8}[aeopcx][a-z0-9]{0,8}\.(com|in|co\.in|org)\Z"),
    data=st.data(),
)
def test_one_look_alike_letter_in_an_ascii_domain_is_always_refused(domain, data):
    positions = [index for index, char in enumerate(domain) if char in _TWINS]
    index = data.draw(st.sampled_from(positions))
    look_alike = domain[:index] + _TWINS[domain[index]] + domain[index + 1 :]
    assert imitates_another(look_alike)
    assert not imitates_another(domain)


# Demo data, the admin and the dashboard -------------------------------------------------------


def test_seed_demo_accounts_are_verified(settings):
    settings.IS_EMBEDDED = True
    call_command("seed_demo")
    users = User.objects.filter(email__in=DEMO_EMAILS)
    assert users.count() == len(DEMO_EMAILS)
    assert all(user.email_verified for user in users)
    asha, ravi = (User.objects.get(email=email) for email in DEMO_EMAILS[:2])
    assert pay(asha, ravi.email, "demo").status_code == 201


def test_seed_demo_verifies_demo_accounts_seeded_before_verification(settings):
    settings.IS_EMBEDDED = True
    call_command("seed_demo")
    User.objects.filter(email__in=DEMO_EMAILS).update(email_verified=False)
    call_command("seed_demo")
    assert not User.objects.filter(email__in=DEMO_EMAILS, email_verified=False).exists()


def test_the_admin_shows_and_filters_verification(alice, unverified):
    _, browser = staff_in("support")
    page = browser.get(f"/admin/wallet/user/{unverified.pk}/change/").content.decode()
    assert "Email verified" in page
    listed = browser.get("/admin/wallet/user/", {"email_verified__exact": "0"})
    assert listed.status_code == 200
    assert [user.pk for user in listed.context["cl"].result_list] == [unverified.pk]
    listed = browser.get("/admin/wallet/user/", {"email_verified__exact": "1"})
    assert unverified.pk not in {user.pk for user in listed.context["cl"].result_list}


def test_every_signed_in_page_shows_the_banner_until_verified(unverified, alice):
    from tests.test_dashboard import PAGES

    browser = browser_for(unverified)
    for path in PAGES:
        page = browser.get(path)
        assert b'data-testid="verify-banner"' in page.content, path
        assert b"so people can pay you by email" in page.content
    assert b'data-testid="verify-banner"' not in browser_for(alice).get("/app/").content
    client_for().post(VERIFY, {"token": verification_token(unverified)}, format="json")
    assert b'data-testid="verify-banner"' not in browser.get("/app/").content


def test_the_banner_resends_the_link_and_says_when_to_wait(
    unverified, settings, django_capture_on_commit_callbacks
):
    settings.QUICKPE_EMAIL_VERIFICATION_RATE = "1/h"
    browser = browser_for(unverified)
    with django_capture_on_commit_callbacks(execute=True):
        sent = browser.post("/app/email/verification", {"next": "/app/requests"}, follow=True)
    assert sent.redirect_chain == [("/app/requests", 302)]
    assert f"We sent a new link to {unverified.email}" in sent.content.decode()
    [message] = mail.outbox
    before = snapshot()
    throttled = browser.post("/app/email/verification", {"next": "https://evil.example/"})
    assert throttled["Location"] == "/app/"
    page = browser.get("/app/").content.decode()
    assert "We sent you a link recently" in page and "try again in 60 min" in page
    assert snapshot() == before and len(mail.outbox) == 1
    assert browser.post("/verify-email", {"token": link_token(message)}).status_code == 200
    settings.QUICKPE_EMAIL_VERIFICATION_RATE = None  # past the limit, an hour later
    again = browser.post("/app/email/verification", follow=True)
    assert "Your email address is already verified." in again.content.decode()


def test_the_resend_form_needs_a_post_and_csrf(unverified):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(unverified)
    assert strict.post("/app/email/verification").status_code == 403
    assert browser_for(unverified).get("/app/email/verification").status_code == 405


def test_the_verify_page_refuses_a_bad_link_in_words():
    page = Client().post("/verify-email", {"token": "tampered"})
    assert page.status_code == 400
    assert b"invalid, expired or already used" in page.content
    empty = Client().post("/verify-email", {})
    assert empty.status_code == 400
