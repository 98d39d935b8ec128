"""Errors are problem+json everywhere; health, schema and docs endpoints answer as documented."""

import json
import re

import pytest
from django.db import IntegrityError, InterfaceError, OperationalError, connection, connections
from django.test import RequestFactory
from rest_framework.test import APIClient

from quickpe.errors import handler500, problem_exception_handler
from tests.conftest import LEAKS, PASSWORD, assert_problem, client_for, fund, snapshot

# --- 404 and 405 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope",
        "/api/v1/wallet/nope",
        "/api/v1/wallet/",
        "/api/v1/transactions/abc",
        "/api/v2/wallet",
        "/api/v1/../../etc/passwd",
        "/nope",
    ],
)
@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "signed-in"])
def test_unknown_paths_are_404_problem_json(alice, path, authenticated):
    client = client_for(alice if authenticated else None)

    body = assert_problem(client.get(path), 404, "not_found")

    assert body["errors"] == []


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/v1/wallet", "GET, HEAD, OPTIONS"),
        ("post", "/api/v1/wallet", "GET, HEAD, OPTIONS"),
        ("put", "/api/v1/transactions", "GET, HEAD, OPTIONS"),
        ("delete", "/api/v1/me", "GET, PATCH, HEAD, OPTIONS"),
        ("get", "/api/v1/wallet/deposits", "POST, OPTIONS"),
        ("get", "/api/v1/me/password", "POST, OPTIONS"),
    ],
)
def test_wrong_methods_are_405_problem_json(alice, method, path, allowed):
    before = snapshot()

    response = getattr(client_for(alice), method)(path)

    assert_problem(response, 405, "method_not_allowed")
    assert response["Allow"] == allowed
    assert snapshot() == before


@pytest.mark.parametrize("path", ["/api/v1/auth/signin", "/api/v1/auth/signup"])
def test_get_on_an_anonymous_post_endpoint_is_405(db, path):
    response = APIClient().get(path)

    assert_problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST, OPTIONS"


# --- bodies that are not what the API takes ----------------------------------------------

MALFORMED_BODIES = [
    pytest.param(b"{bad", id="unquoted-key"),
    pytest.param(b'{"email": "a@example.com",', id="truncated"),
    pytest.param(b'{"email": "a@example.com"} trailing', id="trailing-garbage"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(b'{"amount": NaN}', id="nan"),
    pytest.param(b"[" * 30000 + b"]" * 30000, id="deeply-nested"),
    pytest.param(b'{"a":' * 10000 + b"1" + b"}" * 10000, id="deeply-nested-objects"),
]


@pytest.mark.parametrize("raw", MALFORMED_BODIES)
@pytest.mark.parametrize("path", ["/api/v1/auth/signup", "/api/v1/auth/signin"])
def test_malformed_json_is_400_problem_json(db, path, raw):
    before = snapshot()

    response = APIClient().post(path, raw, content_type="application/json")

    body = assert_problem(response, 400, "malformed_request")
    assert body["errors"] == []
    assert snapshot() == before


@pytest.mark.parametrize("raw", MALFORMED_BODIES)
@pytest.mark.parametrize("path", ["/api/v1/wallet/deposits", "/api/v1/transfers"])
def test_malformed_json_on_a_money_endpoint_is_400_and_moves_nothing(alice, path, raw):
    fund(alice, 100_00)
    before = snapshot()

    response = client_for(alice).post(
        path, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="malformed"
    )

    assert_problem(response, 400, "malformed_request")
    assert snapshot() == before


def test_malformed_json_on_patch_me_is_400(alice):
    response = client_for(alice).patch("/api/v1/me", b"{bad", content_type="application/json")

    assert_problem(response, 400, "malformed_request")
    alice.refresh_from_db()
    assert alice.first_name == "Alice"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_bodies_that_are_not_json_are_415(db, content_type):
    before = snapshot()

    response = APIClient().post(
        "/api/v1/auth/signin", f"email=a@example.com&password={PASSWORD}", content_type=content_type
    )

    assert_problem(response, 415, "unsupported_media_type")
    assert snapshot() == before


def test_an_empty_json_body_is_a_validation_error(db):
    body = assert_problem(
        APIClient().post("/api/v1/auth/signin", b"", content_type="application/json"),
        400,
        "validation_error",
    )

    assert {error["field"] for error in body["errors"]} == {"email", "password"}


def test_an_accept_header_the_api_cannot_serve_is_406(alice):
    response = client_for(alice).get("/api/v1/wallet", HTTP_ACCEPT="text/html")

    assert_problem(response, 406, "not_acceptable")


# --- request size ------------------------------------------------------------------------


def oversized(settings, **fields) -> str:
    body = json.dumps({**fields, "padding": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    assert len(body) > 64 * 1024
    return body


def test_the_body_limit_is_64_kib(settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 64 * 1024


@pytest.mark.parametrize("path", ["/api/v1/auth/signup", "/api/v1/auth/signin"])
def test_a_body_over_the_limit_is_413_for_anonymous_endpoints(db, settings, path):
    before = snapshot()
    body = oversized(
        settings, email="big@example.com", password=PASSWORD, first_name="B", last_name="G"
    )

    response = APIClient().post(path, body, content_type="application/json")

    assert_problem(response, 413, "payload_too_large")
    assert snapshot() == before


@pytest.mark.parametrize("path", ["/api/v1/wallet/deposits", "/api/v1/transfers", "/api/v1/me"])
def test_a_body_over_the_limit_is_413_for_signed_in_endpoints(alice, bob, settings, path):
    fund(alice, 100_00)
    before = snapshot()
    body = oversized(settings, recipient=bob.quickpe_id, amount="5.00", first_name="Big")
    client = client_for(alice)
    send = client.patch if path == "/api/v1/me" else client.post

    response = send(path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="big")

    assert_problem(response, 413, "payload_too_large")
    assert snapshot() == before
    alice.refresh_from_db()
    assert alice.first_name == "Alice"


def test_a_body_just_under_the_limit_is_processed(alice, settings):
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - 100)
    body = json.dumps({"amount": "5.00", "description": "ok", "padding": padding})
    assert len(body) <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = client_for(alice).post(
        "/api/v1/wallet/deposits", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code == 201, response.content


# --- never a stack trace -----------------------------------------------------------------


def test_hostile_requests_never_get_a_5xx_or_a_stack_trace(alice, bob):
    client = client_for(alice)
    anonymous = APIClient()
    responses = [
        client.get("/api/v1/transactions", {"created_after": "2026-02-30"}),
        client.get("/api/v1/transactions", {"created_before": "9999-12-31"}),
        client.get("/api/v1/transactions", {"min_amount": "9" * 40}),
        client.get("/api/v1/transactions", {"ordering": "-password"}),
        client.get("/api/v1/transactions", {"cursor": "%%%"}),
        client.get("/api/v1/transactions/99999999999999999999999"),
        client.get("/api/v1/transfers/99999999999999999999999"),
        client.get("/api/v1/users", {"search": "'; DROP TABLE wallet_user; --"}),
        client.get("/api/v1/users", {"search": "a\x00b"}),
        client.get("/api/v1/users", {"search": "%_%"}),
        client.get("/api/v1/users", {"search": "x" * 5000}),
        client.post(
            "/api/v1/transfers",
            {"recipient": "a\x00@example.com", "amount": "5"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="nul",
        ),
        client.post(
            "/api/v1/transfers",
            {"recipient": {"$ne": None}, "amount": "5"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="object",
        ),
        client.post(
            "/api/v1/wallet/deposits",
            '{"amount": ' + "9" * 5000 + "}",
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="digits",
        ),
        client.patch("/api/v1/me", '{"first_name": "\\ud800"}', content_type="application/json"),
        client.post("/api/v1/me/password", [], format="json"),
        anonymous.post("/api/v1/auth/signin", {"email": {"a": 1}, "password": 1}, format="json"),
        anonymous.post("/api/v1/auth/refresh", {"refresh": "a.b.c"}, format="json"),
        anonymous.post("/api/v1/auth/signout", {"refresh": None}, format="json"),
        anonymous.post(
            "/api/v1/auth/signup",
            {"email": "x@" + "a" * 300 + ".com", "password": PASSWORD, "first_name": "X"},
            format="json",
        ),
        anonymous.get("/api/v1/wallet", HTTP_AUTHORIZATION="Bearer " + "a" * 5000),
    ]

    for response in responses:
        assert response.status_code < 500, response.content
        text = response.content.decode()
        assert "Traceback" not in text
        assert not LEAKS.search(text), text
        if response.status_code >= 400:
            assert response["Content-Type"] == "application/problem+json"
    assert bob.wallet.balance == 0


def test_the_500_handler_answers_problem_json_without_details():
    response = handler500(RequestFactory().get("/api/v1/wallet"))

    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content) == {
        "type": "urn:quickpe:problem:internal_error",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "Something went wrong on our side; it is logged.",
        "code": "internal_error",
        "errors": [],
    }


def unreachable_server_error(directory) -> OperationalError:
    """What connecting raises when no PostgreSQL listens (stopped, crashed, restarting)."""
    settings = {**connection.settings_dict, "HOST": str(directory)}  # no server socket there
    elsewhere = type(connections["default"])(settings, alias="elsewhere")
    with pytest.raises(OperationalError) as raised:
        elsewhere.ensure_connection()
    return raised.value


def ended_session_error() -> OperationalError:
    """What a query raises on a connection whose backend the server ended (a restart, a
    crash, an idle transaction past its limit)."""
    doomed = type(connections["default"])(connection.settings_dict, alias="doomed")
    try:
        doomed.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [doomed.connection.info.backend_pid])
        with pytest.raises(OperationalError) as raised, doomed.cursor() as cursor:
            cursor.execute("SELECT 1")
        return raised.value
    finally:
        doomed.close()


def integrity_error() -> IntegrityError:
    with pytest.raises(IntegrityError) as raised, connection.cursor() as cursor:
        cursor.execute("INSERT INTO wallet_wallet (id) VALUES (NULL)")
    return raised.value


def problem_of(response) -> tuple[str, dict]:
    """Content type and body of DRF's answer (not rendered yet) or of Django's."""
    if hasattr(response, "data"):
        return response.content_type, response.data
    return response["Content-Type"], json.loads(response.content)


def handled_by_django(error: Exception):
    """handler500 as Django calls it: while the exception is being handled."""
    try:
        raise error
    except Exception:
        return handler500(RequestFactory().get("/dashboard/"))


@pytest.mark.django_db(transaction=True)
def test_a_database_that_cannot_be_reached_is_503_unavailable_with_retry_after(tmp_path):
    for error in (unreachable_server_error(tmp_path), ended_session_error(), InterfaceError()):
        for response in (problem_exception_handler(error, {}), handled_by_django(error)):
            content_type, body = problem_of(response)
            assert (response.status_code, response["Retry-After"]) == (503, "5")
            assert content_type == "application/problem+json"
            assert (body["status"], body["code"]) == (503, "unavailable")
            assert not LEAKS.search(json.dumps(body)), body


@pytest.mark.django_db(transaction=True)
def test_errors_in_what_was_asked_of_the_database_stay_500s():
    error = integrity_error()
    assert problem_exception_handler(error, {}) is None  # Django's handler500 answers it
    response = handled_by_django(error)
    assert (response.status_code, problem_of(response)[1]["code"]) == (500, "internal_error")


# --- health ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_liveness():
    response = APIClient().get("/health/live")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_needs_a_celery_worker():
    response = APIClient().get("/health/ready")
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["status"] == "unavailable"
    assert body["checks"] == {
        "database": "ok",
        "redis": "ok",
        "channel_layer": "ok",
        "celery": "error: no worker answered",
    }


# transaction=True: a starting Celery worker closes the database connections of the thread
# that starts it (Celery's Django fixup), which a test wrapped in a transaction cannot survive.
@pytest.mark.django_db(transaction=True)
def test_readiness_checks_database_redis_channel_layer_and_celery(celery_worker):
    response = APIClient().get("/health/ready")

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "channel_layer": "ok", "celery": "ok"},
    }


# --- schema and docs ---------------------------------------------------------------------


@pytest.mark.django_db
def test_openapi_schema_is_served():
    response = APIClient().get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.")

    as_json = APIClient().get("/api/schema/", {"format": "json"})
    assert as_json.status_code == 200
    schema = json.loads(as_json.content)
    assert schema["openapi"].startswith("3.")
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/signin",
        "/api/v1/auth/refresh",
        "/api/v1/auth/signout",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/users",
        "/api/v1/wallet",
        "/api/v1/wallet/deposits",
        "/api/v1/wallet/withdrawals",
        "/api/v1/transfers",
        "/api/v1/transfers/{id}",
        "/api/v1/transactions",
        "/api/v1/transactions/{id}",
        "/api/v1/audit",
        "/api/v1/audit/verify",
    ]:
        assert path in schema["paths"], path
    # Every operation may meet a lock timeout or a database outage, and says so.
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            busy = operation["responses"]["503"]
            assert "application/problem+json" in busy["content"], (method, path)


@pytest.mark.django_db
def test_docs_are_served_without_any_cdn():
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    # Swagger UI's start-up script is served by the docs view itself (no inline script: CSP).
    [start_up] = [asset for asset in assets if asset.startswith("/api/docs/?script")]
    script = APIClient().get(start_up).content.decode()
    assert "/api/schema/" in script
    for text in (html, script):
        for cdn in ("cdn", "unpkg", "jsdelivr", "cloudflare", "googleapis"):
            assert cdn not in text.lower(), cdn
    for asset in assets:
        assert asset.startswith(("/static/", "/api/docs/?script")), asset
        served = APIClient().get(asset)
        assert served.status_code == 200, asset
