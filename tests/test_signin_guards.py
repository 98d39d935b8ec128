"""Password guessing, wherever a password is checked: the admin's login, the dashboard's sign-in
(staff accounts included) and the current password of a password change (API and dashboard).
Every door shares the per-account budget (QUICKPE_SIGNIN_RATE) and the sign-in doors the per-IP
one (QUICKPE_SIGNIN_IP_RATE); every attempt is audited, emails masked."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEntry
from tests.conftest import PASSWORD, make_user, snapshot
from tests.test_dashboard import browser_for
from wallet.models import DeviceSession, User

pytestmark = pytest.mark.django_db

ADMIN_LOGIN = "/admin/login/?next=/admin/"
NEW_PASSWORD = "another-long-passphrase-2"


def masked(email: str) -> str:
    return email[:2] + "***@example.com"


def admin_login(email: str, password: str, **extra):
    return Client().post(ADMIN_LOGIN, {"username": email, "password": password}, **extra)


def is_signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def audited(action: str) -> list[tuple]:
    entries = AuditEntry.objects.filter(action=action).order_by("seq")
    return [(entry.actor_id, entry.data) for entry in entries]


@pytest.fixture
def staff(db):
    return make_user("Sam", "Staff", is_staff=True, is_superuser=True)


# --- the admin's login --------------------------------------------------------------------


def test_admin_signin_is_audited_success_and_failure(staff):
    refused = admin_login(staff.email, "not-the-password", REMOTE_ADDR="10.0.0.7")
    assert refused.status_code == 200 and b"errornote" in refused.content

    assert is_signed_in(admin_login(staff.email.upper(), PASSWORD, REMOTE_ADDR="10.0.0.7"))

    assert audited("user.signin_failed") == [(None, {"email": masked(staff.email), "via": "admin"})]
    assert audited("user.signin") == [(staff.pk, {"via": "admin"})]
    assert AuditEntry.objects.filter(action__startswith="user.signin").first().ip == "10.0.0.7"


def test_admin_signin_of_a_customer_is_refused_and_audited(staff):
    customer = make_user("Cara", "Customer")

    response = admin_login(customer.email, PASSWORD)

    assert response.status_code == 200 and b"errornote" in response.content
    assert "_auth_user_id" not in response.wsgi_request.session
    assert audited("user.signin") == []
    assert audited("user.signin_failed") == [
        (None, {"email": masked(customer.email), "via": "admin", "reason": "not_staff"})
    ]


def test_admin_signin_is_throttled_per_account(settings, staff):
    settings.QUICKPE_SIGNIN_RATE = "5/m"
    other = make_user("Other", "Staff", is_staff=True)
    for index in range(5):
        assert not is_signed_in(admin_login(staff.email, f"guess-{index}"))
    before = snapshot()

    # The sixth attempt is refused even with the right password, before anything is recorded.
    refused = admin_login(staff.email, PASSWORD)
    assert refused.status_code == 200 and b"Too many attempts" in refused.content
    assert snapshot() == before
    # The budget is the account's from this address: the API's sign-in from it is refused
    # too; the owner from another address, and another account, are not.
    api = APIClient().post(
        "/api/v1/auth/signin", {"email": staff.email, "password": PASSWORD}, format="json"
    )
    assert api.status_code == 429
    assert is_signed_in(admin_login(staff.email, PASSWORD, REMOTE_ADDR="10.9.9.9"))
    assert is_signed_in(admin_login(other.email, PASSWORD))


def test_admin_signin_is_throttled_per_ip(settings, staff):
    settings.QUICKPE_SIGNIN_IP_RATE = "3/m"
    for index in range(3):
        assert not is_signed_in(admin_login(f"guess{index}@example.com", "password1"))
    before = snapshot()

    assert not is_signed_in(admin_login(staff.email, PASSWORD))
    assert snapshot() == before
    assert is_signed_in(admin_login(staff.email, PASSWORD, REMOTE_ADDR="10.1.2.3"))


# --- the dashboard's sign-in, for staff accounts -----------------------------------------


def test_dashboard_signin_of_staff_is_throttled_and_audited(settings, staff):
    settings.QUICKPE_SIGNIN_RATE = "3/m"
    for _ in range(3):
        response = Client().post("/signin", {"email": staff.email, "password": "not-it"})
        assert response.status_code == 200
    before = snapshot()

    refused = Client().post("/signin", {"email": staff.email, "password": PASSWORD})

    assert refused.status_code == 200 and b"Too many attempts" in refused.content
    assert snapshot() == before
    assert not DeviceSession.objects.filter(user=staff).exists()
    assert audited("user.signin_failed") == [(None, {"email": masked(staff.email)})] * 3


# --- the current password of a password change -------------------------------------------


def password_change(client: APIClient, old_password: str):
    return client.post(
        "/api/v1/me/password",
        {"old_password": old_password, "new_password": NEW_PASSWORD},
        format="json",
    )


def api_client(user: User) -> APIClient:
    tokens = APIClient().post(
        "/api/v1/auth/signin", {"email": user.email, "password": PASSWORD}, format="json"
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access']}")
    return client


def test_a_wrong_current_password_is_audited_and_changes_nothing_else(alice):
    client = api_client(alice)
    hashed = User.objects.get(pk=alice.pk).password
    before = snapshot()

    assert password_change(client, "not-my-password").status_code == 400

    after = snapshot()
    # The audit entry and its audit:new event, nothing else.
    assert (after["audit"], after["events"]) == (before["audit"] + 1, before["events"] + 1)
    assert {**after, "audit": 0, "events": 0} == {**before, "audit": 0, "events": 0}
    assert User.objects.get(pk=alice.pk).password == hashed
    assert audited("user.password_change_failed") == [(alice.pk, {"email": masked(alice.email)})]


def test_current_password_guesses_on_the_api_are_throttled_per_account(settings, alice, bob):
    settings.QUICKPE_SIGNIN_RATE = "3/m"
    client = api_client(alice)  # one sign-in: one of the account's three guesses
    for index in range(2):
        assert password_change(client, f"guess-{index}").status_code == 400
    before = snapshot()

    # The right password is refused too, before anything is checked or recorded.
    response = password_change(client, PASSWORD)

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert snapshot() == before
    assert User.objects.get(pk=alice.pk).check_password(PASSWORD)
    assert len(audited("user.password_change_failed")) == 2
    assert password_change(api_client(bob), PASSWORD).status_code == 204


def test_current_password_guesses_on_the_dashboard_are_throttled_per_account(settings, alice):
    settings.QUICKPE_SIGNIN_RATE = "3/m"
    browser = browser_for(alice)
    for index in range(2):
        form = {"old_password": f"guess-{index}", "new_password": NEW_PASSWORD}
        assert browser.post("/app/settings", form).status_code == 400
    before = snapshot()

    form = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    response = browser.post("/app/settings", form)

    assert response.status_code == 400 and b"Too many attempts" in response.content
    assert snapshot() == before
    assert User.objects.get(pk=alice.pk).check_password(PASSWORD)
    assert len(audited("user.password_change_failed")) == 2
