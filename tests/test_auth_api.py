"""Auth and users, through the HTTP API: sign-up, sign-in, tokens, profile, password, search.

Every refusal is checked for its exact status and problem+json ``code``, and for leaving the
database exactly as it was (``snapshot()``).
"""

import base64
import json
import re
from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

import quickpe.settings as production_settings
from audit.models import AuditEntry
from tests.conftest import PASSWORD, assert_problem, client_for, make_user, snapshot
from tests.test_admin import staff_in
from wallet.models import LedgerEntry, User, Wallet

SIGNUP = "/api/v1/auth/signup"
SIGNIN = "/api/v1/auth/signin"
REFRESH = "/api/v1/auth/refresh"
SIGNOUT = "/api/v1/auth/signout"
ME = "/api/v1/me"
PASSWORD_URL = "/api/v1/me/password"
USERS = "/api/v1/users"
AUDIT = "/api/v1/audit"
AUDIT_VERIFY = "/api/v1/audit/verify"

USER_KEYS = {
    "id",
    "quickpe_id",
    "email",
    "email_verified",
    "first_name",
    "last_name",
    "is_staff",
    "date_joined",
}
NEW_PASSWORD = "another-long-passphrase-2"


def error_fields(body: dict) -> set:
    return {error["field"] for error in body["errors"]}


def post(path: str, body, client: APIClient | None = None, **extra):
    return (client or APIClient()).post(path, body, format="json", **extra)


def signup_body(**overrides) -> dict:
    body = {
        "email": "new.person@example.com",
        "password": PASSWORD,
        "first_name": "New",
        "last_name": "Person",
    }
    body.update(overrides)
    return body


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def signin(user: User, password: str = PASSWORD, **extra) -> dict:
    response = post(SIGNIN, {"email": user.email, "password": password}, **extra)
    assert response.status_code == 200, response.content
    return response.json()


def last_audit() -> AuditEntry:
    return AuditEntry.objects.order_by("-seq").first()


# --- sign-up -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_signup_returns_user_and_tokens_and_creates_an_empty_wallet():
    before = snapshot()

    response = post(SIGNUP, signup_body(email="Mixed.Case@Example.COM"))

    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"user", "access", "refresh"}
    user = User.objects.get(pk=body["user"]["id"])
    assert body["user"] == {
        "id": user.pk,
        "quickpe_id": user.quickpe_id,
        "email": "mixed.case@example.com",
        "email_verified": False,
        "first_name": "New",
        "last_name": "Person",
        "is_staff": False,
        "date_joined": user.date_joined.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    assert re.fullmatch(r"QP\d{8}", user.quickpe_id)
    assert user.email == "mixed.case@example.com"
    assert user.check_password(PASSWORD)

    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.status) == (0, "active")
    assert not LedgerEntry.objects.filter(wallet=wallet).exists()
    after = snapshot()
    assert after["users"] == before["users"] + 1
    assert after["audit"] == before["audit"] + 1
    entry = last_audit()
    assert (entry.actor_id, entry.action, entry.entity_id) == (user.pk, "user.signup", str(user.pk))
    assert entry.data == {
        "email": "mi***@example.com",
        "quickpe_id": user.quickpe_id,
        "is_staff": False,
        "email_verified": False,
    }

    # The tokens work straight away, and the wallet is visible through the API.
    wallet_response = bearer(body["access"]).get("/api/v1/wallet")
    assert wallet_response.status_code == 200
    assert wallet_response.json()["balance"] == "0.00"
    assert wallet_response.json()["quickpe_id"] == user.quickpe_id
    assert post(REFRESH, {"refresh": body["refresh"]}).status_code == 200


@pytest.mark.django_db
def test_signup_ignores_privilege_fields():
    response = post(SIGNUP, signup_body(is_staff=True, is_superuser=True, quickpe_id="QP12345678"))

    assert response.status_code == 201, response.content
    user = User.objects.get(pk=response.json()["user"]["id"])
    assert (user.is_staff, user.is_superuser) == (False, False)
    assert response.json()["user"]["is_staff"] is False


@pytest.mark.django_db
def test_signup_accepts_unicode_names():
    response = post(SIGNUP, signup_body(first_name="Zoë", last_name="भारद्वाज 🙂"))

    assert response.status_code == 201, response.content
    assert response.json()["user"]["first_name"] == "Zoë"
    assert response.json()["user"]["last_name"] == "भारद्वाज 🙂"
    me = bearer(response.json()["access"]).get(ME).json()
    assert (me["first_name"], me["last_name"]) == ("Zoë", "भारद्वाज 🙂")


@pytest.mark.django_db
def test_every_signup_gets_a_distinct_quickpe_id():
    ids = {
        post(SIGNUP, signup_body(email=f"person{index}@example.com")).json()["user"]["quickpe_id"]
        for index in range(5)
    }
    assert len(ids) == 5
    assert all(re.fullmatch(r"QP\d{8}", quickpe_id) for quickpe_id in ids)


@pytest.mark.parametrize(
    "email", ["alice.taken@example.com", "ALICE.TAKEN@EXAMPLE.COM", "  Alice.Taken@Example.com "]
)
@pytest.mark.django_db
def test_signup_with_a_taken_email_in_any_case_is_409(email):
    make_user("Alice", "Sharma", email="alice.taken@example.com")
    before = snapshot()

    body = assert_problem(post(SIGNUP, signup_body(email=email)), 409, "email_taken")

    assert body["errors"] == []
    assert snapshot() == before
    assert User.objects.filter(email__iexact="alice.taken@example.com").count() == 1


@pytest.mark.parametrize(
    ("password", "validator_code"),
    [
        ("password", "password_too_common"),
        ("short", "password_too_short"),
        ("40938572019384", "password_entirely_numeric"),
        ("new.person.example", "password_too_similar"),
    ],
)
@pytest.mark.django_db
def test_signup_with_a_weak_password_is_400_with_a_field_error(password, validator_code):
    before = snapshot()

    body = assert_problem(post(SIGNUP, signup_body(password=password)), 400, "weak_password")

    assert body["errors"]
    assert error_fields(body) == {"password"}
    assert validator_code in {error["code"] for error in body["errors"]}
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"email", "password", "first_name"}),
        ({"password": PASSWORD, "first_name": "A"}, {"email"}),
        (signup_body(email=12345), {"email"}),
        (signup_body(email="not-an-email"), {"email"}),
        (signup_body(email=None), {"email"}),
        (signup_body(email="a\x00b@example.com"), {"email"}),
        (signup_body(password=["a", "list"]), {"password"}),
        (signup_body(password="x" * 129), {"password"}),
        (signup_body(first_name={"a": 1}), {"first_name"}),
        (signup_body(first_name=""), {"first_name"}),
        (signup_body(first_name="x" * 151), {"first_name"}),
        (signup_body(last_name=True), {"last_name"}),
        ([], {None}),
        ("just a string", {None}),
    ],
)
@pytest.mark.django_db
def test_signup_with_missing_or_wrongly_typed_fields_is_400(body, fields):
    before = snapshot()

    problem = assert_problem(post(SIGNUP, body), 400, "validation_error")

    assert error_fields(problem) == fields
    assert snapshot() == before


# --- sign-in -----------------------------------------------------------------------------


def test_signin_returns_user_and_tokens_and_is_audited(alice):
    before = snapshot()

    response = post(SIGNIN, {"email": alice.email.upper(), "password": PASSWORD})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"user", "access", "refresh"}
    assert set(body["user"]) == USER_KEYS
    assert (body["user"]["id"], body["user"]["quickpe_id"]) == (alice.pk, alice.quickpe_id)
    assert bearer(body["access"]).get(ME).json()["id"] == alice.pk
    assert snapshot()["audit"] == before["audit"] + 1
    entry = last_audit()
    assert (entry.actor_id, entry.action, entry.ip) == (alice.pk, "user.signin", "127.0.0.1")


def test_wrong_password_and_unknown_email_are_the_same_401_and_are_audited(alice):
    before = snapshot()

    wrong = assert_problem(
        post(SIGNIN, {"email": alice.email, "password": "not-the-password"}),
        401,
        "invalid_credentials",
    )
    unknown = assert_problem(
        post(SIGNIN, {"email": "nobody@example.com", "password": PASSWORD}),
        401,
        "invalid_credentials",
    )

    # The same answer for both, so sign-in cannot be used to find out who has an account.
    assert wrong == unknown
    after = snapshot()
    assert after["audit"] == before["audit"] + 2
    assert {key: value for key, value in after.items() if key != "audit"} == {
        key: value for key, value in before.items() if key != "audit"
    }
    failures = list(AuditEntry.objects.filter(action="user.signin_failed").order_by("seq"))
    assert [(entry.actor_id, entry.data) for entry in failures] == [
        (None, {"email": alice.email[:2] + "***@example.com"}),
        (None, {"email": "no***@example.com"}),
    ]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"email", "password"}),
        ({"email": "a@example.com"}, {"password"}),
        ({"email": ["a@example.com"], "password": PASSWORD}, {"email"}),
        ({"email": "a@example.com", "password": None}, {"password"}),
        ({"email": "a\x00@example.com", "password": PASSWORD}, {"email"}),
    ],
)
@pytest.mark.django_db
def test_signin_with_missing_or_wrongly_typed_fields_is_400(body, fields):
    before = snapshot()

    problem = assert_problem(post(SIGNIN, body), 400, "validation_error")

    assert error_fields(problem) == fields
    assert snapshot() == before


# --- tokens ------------------------------------------------------------------------------


def test_refresh_rotates_and_a_used_refresh_token_is_401(alice):
    first = signin(alice)["refresh"]

    response = post(REFRESH, {"refresh": first})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh"}
    assert body["refresh"] != first
    assert bearer(body["access"]).get(ME).status_code == 200
    # The new one works (and rotates again); the old one is spent.
    assert post(REFRESH, {"refresh": body["refresh"]}).status_code == 200
    assert_problem(post(REFRESH, {"refresh": first}), 401, "invalid_token")
    assert_problem(post(REFRESH, {"refresh": body["refresh"]}), 401, "invalid_token")


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "", "x" * 2048, 12345],
    ids=["garbage", "three-parts", "empty", "long", "number"],
)
@pytest.mark.django_db
def test_refresh_with_a_bad_token_is_refused(token):
    response = post(REFRESH, {"refresh": token})

    if token in ("", 12345):  # blank, or not a string at all
        body = assert_problem(response, 400, "validation_error")
        assert error_fields(body) == {"refresh"}
    else:
        assert_problem(response, 401, "invalid_token")


def test_refresh_with_an_access_token_or_a_tampered_refresh_token_is_401(alice):
    tokens = signin(alice)

    assert_problem(post(REFRESH, {"refresh": tokens["access"]}), 401, "invalid_token")
    assert_problem(post(REFRESH, {"refresh": tamper(tokens["refresh"])}), 401, "invalid_token")
    # Neither attempt spent the real one.
    assert post(REFRESH, {"refresh": tokens["refresh"]}).status_code == 200


def test_refresh_without_a_body_is_400(alice):
    body = assert_problem(post(REFRESH, {}), 400, "validation_error")
    assert error_fields(body) == {"refresh"}


def test_signout_revokes_only_that_refresh_token(alice):
    phone = signin(alice)
    laptop = signin(alice)
    before = snapshot()

    response = post(SIGNOUT, {"refresh": phone["refresh"]})

    assert response.status_code == 204
    assert response.content == b""
    assert snapshot()["audit"] == before["audit"] + 1
    entry = last_audit()
    assert (entry.actor_id, entry.action) == (alice.pk, "user.signout")
    assert_problem(post(REFRESH, {"refresh": phone["refresh"]}), 401, "invalid_token")
    assert post(REFRESH, {"refresh": laptop["refresh"]}).status_code == 200


@pytest.mark.django_db
def test_signout_with_a_garbage_token_is_401_and_changes_nothing():
    before = snapshot()

    assert_problem(post(SIGNOUT, {"refresh": "garbage"}), 401, "invalid_token")

    assert snapshot() == before


def tamper(token: str) -> str:
    """Flip one character in the middle of the signature (not the last one, whose low bits
    base64url may ignore)."""
    header, payload, signature = token.split(".")
    index = len(signature) // 2
    flipped = "A" if signature[index] != "A" else "B"
    return ".".join([header, payload, signature[:index] + flipped + signature[index + 1 :]])


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_no_token_is_401(alice):
    response = APIClient().get(ME)

    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_expired_access_token_is_401(alice):
    token = AccessToken.for_user(alice)
    token.set_exp(lifetime=-timedelta(seconds=30))

    response = bearer(str(token)).get(ME)

    assert_problem(response, 401, "invalid_token")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_tampered_access_token_is_401(alice):
    access = signin(alice)["access"]
    assert bearer(access).get(ME).status_code == 200

    assert_problem(bearer(tamper(access)).get(ME), 401, "invalid_token")


def test_forged_tokens_are_401(alice):
    real = AccessToken.for_user(alice)
    claims = dict(real.payload)
    # Someone else's id in an otherwise genuine token: the signature no longer matches.
    header, _, signature = str(real).split(".")
    forged = ".".join([header, _b64({**claims, "user_id": str(alice.pk + 1)}), signature])
    unsigned = ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims), ""])

    assert_problem(bearer(forged).get(ME), 401, "invalid_token")
    assert_problem(bearer(unsigned).get(ME), 401, "invalid_token")


def test_a_refresh_token_is_not_an_access_token(alice):
    refresh = str(RefreshToken.for_user(alice))

    assert_problem(bearer(refresh).get(ME), 401, "invalid_token")


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Bearer", "invalid_token"),
        ("Bearer a b", "invalid_token"),
        ("Bearer not-a-jwt", "invalid_token"),
        ("Basic YWxpY2U6c2VjcmV0", "not_authenticated"),
    ],
)
def test_malformed_authorization_headers_are_401(alice, header, code):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_problem(client.get(ME), 401, code)


def test_a_deactivated_users_token_is_401(alice):
    client = client_for(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)

    assert_problem(client.get(ME), 401, "invalid_token")


# --- /me ---------------------------------------------------------------------------------


def test_me_returns_the_caller(alice):
    response = client_for(alice).get(ME)

    assert response.status_code == 200
    assert response.json() == {
        "id": alice.pk,
        "quickpe_id": alice.quickpe_id,
        "email": alice.email,
        "email_verified": True,
        "first_name": "Alice",
        "last_name": "Sharma",
        "is_staff": False,
        "date_joined": alice.date_joined.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def test_patch_me_changes_the_names_and_is_audited(alice):
    before = snapshot()

    response = client_for(alice).patch(
        ME, {"first_name": "Alicia", "last_name": "Śarmā"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["first_name"], response.json()["last_name"]) == ("Alicia", "Śarmā")
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name) == ("Alicia", "Śarmā")
    assert snapshot()["audit"] == before["audit"] + 1
    entry = last_audit()
    assert (entry.actor_id, entry.action) == (alice.pk, "user.profile_update")
    assert entry.data == {
        "before": {"first_name": "Alice", "last_name": "Sharma"},
        "after": {"first_name": "Alicia", "last_name": "Śarmā"},
    }


def test_patch_me_cannot_change_email_staff_or_quickpe_id(alice):
    before = snapshot()
    original = (alice.email, alice.quickpe_id, alice.is_staff, alice.is_superuser)

    response = client_for(alice).patch(
        ME,
        {
            "email": "boss@example.com",
            "is_staff": True,
            "is_superuser": True,
            "quickpe_id": "QP00000001",
            "id": 999999,
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["email"] == alice.email
    assert response.json()["is_staff"] is False
    alice.refresh_from_db()
    assert (alice.email, alice.quickpe_id, alice.is_staff, alice.is_superuser) == original
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"first_name": ""}, "first_name"),
        ({"first_name": "x" * 151}, "first_name"),
        ({"first_name": None}, "first_name"),
        ({"first_name": ["Alice"]}, "first_name"),
        ({"last_name": "a\x00b"}, "last_name"),
    ],
)
def test_patch_me_with_bad_names_is_400(alice, body, field):
    before = snapshot()

    problem = assert_problem(
        client_for(alice).patch(ME, body, format="json"), 400, "validation_error"
    )

    assert error_fields(problem) == {field}
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name) == ("Alice", "Sharma")
    assert snapshot() == before


# --- password change ---------------------------------------------------------------------


def test_password_change_with_a_wrong_old_password_changes_nothing(alice):
    session = signin(alice)
    hashed = User.objects.get(pk=alice.pk).password
    before = snapshot()

    body = assert_problem(
        bearer(session["access"]).post(
            PASSWORD_URL,
            {"old_password": "not-my-password", "new_password": NEW_PASSWORD},
            format="json",
        ),
        400,
        "invalid_password",
    )

    assert [(error["field"], error["code"]) for error in body["errors"]] == [
        ("old_password", "invalid_password")
    ]
    # Only the audit entry of the failure (and its audit:new event): tests/test_signin_guards.py.
    after = snapshot()
    assert (after["audit"], after["events"]) == (before["audit"] + 1, before["events"] + 1)
    assert {**after, "audit": 0, "events": 0} == {**before, "audit": 0, "events": 0}
    assert User.objects.get(pk=alice.pk).password == hashed
    assert post(REFRESH, {"refresh": session["refresh"]}).status_code == 200
    signin(alice)  # the old password still works


def test_password_change_to_a_weak_password_changes_nothing(alice):
    session = signin(alice)
    before = snapshot()

    body = assert_problem(
        bearer(session["access"]).post(
            PASSWORD_URL, {"old_password": PASSWORD, "new_password": "12345"}, format="json"
        ),
        400,
        "weak_password",
    )

    assert error_fields(body) == {"new_password"}
    assert snapshot() == before
    signin(alice)


def test_password_change_revokes_every_refresh_token(alice):
    phone = signin(alice)
    laptop = signin(alice)
    rotated = post(REFRESH, {"refresh": laptop["refresh"]}).json()  # issued by rotation
    before = snapshot()

    response = bearer(phone["access"]).post(
        PASSWORD_URL, {"old_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )

    assert response.status_code == 204, response.content
    assert response.content == b""
    assert snapshot()["audit"] == before["audit"] + 1
    entry = last_audit()
    assert (entry.actor_id, entry.action) == (alice.pk, "user.password_change")
    for refresh in (phone["refresh"], laptop["refresh"], rotated["refresh"]):
        assert_problem(post(REFRESH, {"refresh": refresh}), 401, "invalid_token")

    assert_problem(
        post(SIGNIN, {"email": alice.email, "password": PASSWORD}), 401, "invalid_credentials"
    )
    fresh = signin(alice, NEW_PASSWORD)
    assert post(REFRESH, {"refresh": fresh["refresh"]}).status_code == 200


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"old_password", "new_password"}),
        ({"old_password": PASSWORD}, {"new_password"}),
        ({"old_password": PASSWORD, "new_password": ["x"]}, {"new_password"}),
    ],
)
def test_password_change_with_missing_fields_is_400(alice, body, fields):
    before = snapshot()

    problem = assert_problem(
        client_for(alice).post(PASSWORD_URL, body, format="json"), 400, "validation_error"
    )

    assert error_fields(problem) == fields
    assert snapshot() == before


def test_password_change_needs_authentication(alice):
    assert_problem(
        APIClient().post(
            PASSWORD_URL, {"old_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
        ),
        401,
        "not_authenticated",
    )


# --- passwords at rest -------------------------------------------------------------------


def test_production_settings_hash_passwords_with_argon2():
    assert production_settings.PASSWORD_HASHERS[0] == (
        "django.contrib.auth.hashers.Argon2PasswordHasher"
    )


@pytest.mark.django_db
def test_passwords_are_stored_with_argon2(settings):
    settings.PASSWORD_HASHERS = production_settings.PASSWORD_HASHERS

    response = post(SIGNUP, signup_body(email="argon@example.com"))

    assert response.status_code == 201, response.content
    stored = User.objects.get(email="argon@example.com").password
    assert stored.startswith("argon2$argon2id$")
    assert PASSWORD not in stored
    assert post(SIGNIN, {"email": "argon@example.com", "password": PASSWORD}).status_code == 200


# --- user search -------------------------------------------------------------------------


def search(client: APIClient, query: str):
    return client.get(USERS, {"search": query})


@pytest.mark.parametrize("query", ["", "a", " a ", "  "])
def test_user_search_needs_two_characters(alice, query):
    body = assert_problem(search(client_for(alice), query), 400, "validation_error")

    assert error_fields(body) == {"search"}


def test_user_search_without_the_parameter_is_400(alice):
    body = assert_problem(client_for(alice).get(USERS), 400, "validation_error")

    assert error_fields(body) == {"search"}


def test_user_search_with_a_nul_character_is_400(alice):
    body = assert_problem(search(client_for(alice), "Bo\x00b"), 400, "validation_error")

    assert error_fields(body) == {"search"}


def test_user_search_needs_authentication(alice):
    assert_problem(search(APIClient(), "Alice"), 401, "not_authenticated")


def test_user_search_matches_name_quickpe_id_and_exact_email(alice, bob):
    carol = make_user("Carol", "Iyer", email="carol.iyer@example.com")
    client = client_for(alice)
    carol_result = {
        "quickpe_id": carol.quickpe_id,
        "name": "Carol Iyer",
        "email_masked": "ca***@example.com",
    }

    by_name = search(client, "iyer")
    assert by_name.status_code == 200
    assert by_name["Content-Type"] == "application/json"
    assert by_name.json() == [carol_result]
    assert search(client, "Carol Iy").json() == [carol_result]
    assert search(client, carol.quickpe_id).json() == [carol_result]
    assert search(client, carol.quickpe_id.lower()).json() == [carol_result]
    assert search(client, "carol.iyer@example.com").json() == [carol_result]
    assert search(client, "CAROL.IYER@EXAMPLE.COM").json() == [carol_result]
    # Only an exact email matches: no fishing for addresses by fragment.
    assert search(client, "carol.iyer@example").json() == []
    assert search(client, "example.com").json() == []
    assert [row["quickpe_id"] for row in search(client, "Verma").json()] == [bob.quickpe_id]


def test_user_search_never_returns_the_caller(alice):
    client = client_for(alice)

    assert search(client, "Alice").json() == []
    assert search(client, alice.quickpe_id).json() == []
    assert search(client, alice.email).json() == []


def test_user_search_returns_at_most_20_and_never_full_emails(alice):
    people = [make_user("Zubin", f"Common{index:02d}") for index in range(23)]

    response = search(client_for(alice), "zubin")

    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 20
    assert all(set(row) == {"quickpe_id", "name", "email_masked"} for row in rows)
    assert [row["name"] for row in rows] == [f"Zubin Common{index:02d}" for index in range(20)]
    by_id = {person.quickpe_id: person for person in people}
    for row in rows:
        email = by_id[row["quickpe_id"]].email
        assert row["email_masked"] == email[:2] + "***@example.com"
    text = response.content.decode()
    assert not any(person.email in text for person in people)
    assert "@example.com" not in text.replace("***@example.com", "")


def test_user_search_needs_three_characters_and_never_lists_staff(alice):
    make_user("Zara", "Customer")
    make_user("Zara", "Support", is_staff=True)
    client = client_for(alice)

    assert_problem(search(client, "Za"), 400, "validation_error")
    assert [row["name"] for row in search(client, "Zar").json()] == ["Zara Customer"]


def test_user_search_is_rate_limited_per_user(alice, bob, settings):
    settings.QUICKPE_SEARCH_RATE = "3/m"
    client = client_for(alice)
    assert [search(client, "Bob").status_code for _ in range(3)] == [200, 200, 200]
    refused = search(client, "Bob")
    assert_problem(refused, 429, "rate_limited")
    assert int(refused["Retry-After"]) >= 1
    assert search(client_for(bob), "Alice").status_code == 200  # another user's own window


# --- audit trail of the caller -----------------------------------------------------------


def test_audit_list_shows_only_the_callers_entries_masked(alice, bob):
    signin(alice)
    post(SIGNIN, {"email": alice.email, "password": "wrong-password"})
    signin(bob)

    response = client_for(alice).get(AUDIT)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    rows = body["results"]
    assert [row["action"] for row in rows] == ["user.signin", "user.signup"]
    assert all(
        set(row)
        == {
            "seq",
            "action",
            "entity_type",
            "entity_id",
            "data",
            "ip",
            "user_agent",
            "created_at",
            "hash",
        }
        for row in rows
    )
    assert rows[0]["seq"] > rows[1]["seq"]
    assert rows[1]["data"]["email"] == alice.email[:2] + "***@example.com"
    assert alice.email not in response.content.decode()
    assert all(re.fullmatch(r"[0-9a-f]{64}", row["hash"]) for row in rows)
    assert all(row["created_at"].endswith("Z") for row in rows)


def test_audit_verify_is_for_compliance_only(alice):
    staff, _browser = staff_in("compliance")
    signin(alice)

    assert_problem(client_for(alice).get(AUDIT_VERIFY), 403, "permission_denied")
    plain = make_user("Sam", "Staff", is_staff=True)
    assert_problem(client_for(plain).get(AUDIT_VERIFY), 403, "permission_denied")
    assert_problem(APIClient().get(AUDIT_VERIFY), 401, "not_authenticated")
    response = client_for(staff).get(AUDIT_VERIFY)

    assert response.status_code == 200
    body = response.json()
    total = AuditEntry.objects.count()
    head = AuditEntry.objects.order_by("-seq").first()
    assert body == {
        "valid": True,
        "checked": total,
        "head": {"seq": head.seq, "hash": head.hash},
        "first_invalid_seq": None,
        "reason": "",
    }


# --- sign-in throttling ------------------------------------------------------------------


def assert_rate_limited(response) -> None:
    assert_problem(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60


def test_signin_is_throttled_per_account_and_address(settings, alice, bob):
    """Someone guessing Alice's password from their address is stopped there; Alice, from
    hers, still signs in: a stranger's failures do not lock the owner out."""
    settings.QUICKPE_SIGNIN_RATE = "5/m"
    spellings = [alice.email, alice.email.upper(), f"  {alice.email} ", alice.email, alice.email]
    for email in spellings:
        assert_problem(
            post(SIGNIN, {"email": email, "password": "wrong-password"}), 401, "invalid_credentials"
        )
    before = snapshot()

    # The sixth attempt is refused even with the right password, before anything is recorded.
    assert_rate_limited(post(SIGNIN, {"email": alice.email, "password": PASSWORD}))
    assert snapshot() == before
    owner = post(SIGNIN, {"email": alice.email, "password": PASSWORD}, REMOTE_ADDR="10.9.9.9")
    assert owner.status_code == 200, owner.content
    # Another account is not affected.
    signin(bob)


def test_guesses_spread_over_many_addresses_meet_the_account_wide_limit(settings, alice):
    settings.QUICKPE_SIGNIN_RATE = "5/m"
    settings.QUICKPE_SIGNIN_ACCOUNT_RATE = "8/m"
    for index in range(8):
        assert_problem(
            post(
                SIGNIN,
                {"email": alice.email, "password": "wrong-password"},
                REMOTE_ADDR=f"10.0.0.{index}",
            ),
            401,
            "invalid_credentials",
        )
    before = snapshot()
    assert_rate_limited(
        post(SIGNIN, {"email": alice.email, "password": PASSWORD}, REMOTE_ADDR="10.0.1.1")
    )
    assert snapshot() == before


def test_signin_is_throttled_per_ip_across_accounts(settings, alice):
    settings.QUICKPE_SIGNIN_IP_RATE = "3/m"
    for index in range(3):
        assert_problem(
            post(SIGNIN, {"email": f"guess{index}@example.com", "password": "password1"}),
            401,
            "invalid_credentials",
        )
    before = snapshot()

    assert_rate_limited(post(SIGNIN, {"email": alice.email, "password": PASSWORD}))
    # A client cannot step around the limit by claiming another address.
    assert_rate_limited(
        post(
            SIGNIN,
            {"email": alice.email, "password": PASSWORD},
            HTTP_X_FORWARDED_FOR="203.0.113.7",
        )
    )

    assert snapshot() == before
    # Another IP is not affected.
    signin(alice, REMOTE_ADDR="10.1.2.3")
