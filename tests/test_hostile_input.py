"""No input makes a 5xx: bytes a fuzzer or an attacker sends get a 4xx problem+json answer
and change nothing."""

import base64

import pytest
from rest_framework.test import APIClient

from tests.conftest import PASSWORD, assert_problem, client_for, fund, snapshot

pytestmark = pytest.mark.django_db

# A lone surrogate as JSON escapes it: valid JSON, but no UTF-8 encoding exists for it.
SURROGATE_EMAIL = '"\\ud800@x.y"'


def post_json(client, path: str, body: str, **headers):
    client.raise_request_exception = False  # a bug must show as the 500 a client would get
    return client.post(path, body, content_type="application/json", **headers)


@pytest.mark.parametrize("limited", [True, False])
def test_a_lone_surrogate_in_a_signin_email_is_400_validation_error(settings, limited):
    if limited:  # the per-account throttle hashes the email before the serializer sees it
        settings.QUICKPE_SIGNIN_RATE = "5/m"
        settings.QUICKPE_SIGNIN_IP_RATE = "30/m"
    before = snapshot()
    body = f'{{"email": {SURROGATE_EMAIL}, "password": "{PASSWORD}"}}'
    response = post_json(APIClient(), "/api/v1/auth/signin", body)
    problem = assert_problem(response, 400, "validation_error")
    assert problem["errors"][0]["field"] == "email"
    assert snapshot() == before


def test_a_lone_surrogate_makes_no_5xx_on_signup_search_transfers_or_requests(alice, settings):
    settings.QUICKPE_SIGNUP_IP_RATE = "30/m"
    settings.QUICKPE_MONEY_RATE = "30/m"
    fund(alice, 10_00)
    before = snapshot()
    signup = (
        f'{{"email": {SURROGATE_EMAIL}, "password": "{PASSWORD}", '
        '"first_name": "\\udfff", "last_name": "B"}'
    )
    assert_problem(post_json(APIClient(), "/api/v1/auth/signup", signup), 400, "validation_error")
    client = client_for(alice)
    client.raise_request_exception = False
    # A surrogate cannot travel in a URL: its UTF-8-like bytes arrive, Django replaces them.
    search = client.get("/api/v1/users", {"search": "%ED%A0%80"})
    assert search.status_code in (200, 400), search.content
    search = client.get("/api/v1/users?search=%ED%A0%80@x.y")
    assert search.status_code in (200, 400), search.content
    for path, body in [
        ("/api/v1/transfers", f'{{"recipient": {SURROGATE_EMAIL}, "amount": "1.00"}}'),
        ("/api/v1/transfers", '{"recipient": "x@y.z", "amount": "1.00", "note": "\\ud800"}'),
        ("/api/v1/money-requests", f'{{"payer": {SURROGATE_EMAIL}, "amount": "1.00"}}'),
    ]:
        response = post_json(client, path, body, HTTP_IDEMPOTENCY_KEY=f"surrogate-{len(body)}")
        assert_problem(response, 400, "validation_error")
    assert snapshot() == before


def cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


LISTS = [
    "/api/v1/transactions",
    "/api/v1/transactions?ordering=amount",
    "/api/v1/transactions?ordering=-amount",
    "/api/v1/money-requests",
    "/api/v1/notifications",
    "/api/v1/exports",
    "/api/v1/audit",
]
TAMPERED = [
    "garbage!!",
    "é",
    cursor("p=not-a-date"),
    cursor("p=2026-13-45T99:00:00"),
    cursor("p=99999999999999999999999999"),
    cursor("p=abc\x00"),
    cursor("r=x"),
    cursor("o=-1"),
]


@pytest.mark.parametrize("path", LISTS)
def test_a_tampered_cursor_is_400_invalid_cursor_on_every_list(alice, bob, path):
    fund(alice, 10_00)
    client = client_for(alice)
    client.raise_request_exception = False
    assert client.get(path).status_code == 200
    joiner = "&" if "?" in path else "?"
    for value in TAMPERED:
        response = client.get(f"{path}{joiner}cursor={value}")
        assert_problem(response, 400, "invalid_cursor")
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    listing = schema["paths"][path.split("?")[0]]["get"]
    assert "`invalid_cursor`" in listing["responses"]["400"]["description"]


def test_a_real_cursor_still_pages(alice):
    for _ in range(3):
        fund(alice, 1_00)
    client = client_for(alice)
    first = client.get("/api/v1/transactions", {"page_size": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 1 and second["next"] is None
    assert second["results"][0]["id"] not in {row["id"] for row in first["results"]}
