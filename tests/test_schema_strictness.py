"""What the schema says is refused is refused, and what it says is accepted is: each case here
is one Schemathesis found (tests/test_api_fuzz.py) before the schema or the server changed."""

import pytest
from rest_framework.test import APIClient

from tests.conftest import assert_problem, client_for, fund, snapshot

pytestmark = pytest.mark.django_db


def _schema() -> dict:
    return APIClient().get("/api/schema/", {"format": "json"}).json()


def test_an_offset_postgresql_cannot_hold_is_read_in_utc_not_a_500(alice):
    fund(alice, 10_00)
    client = client_for(alice)
    for value in ("0857-01-13T16:01:55.96+20:48", "2026-01-01T00:00:00-23:59"):
        response = client.get("/api/v1/transactions", {"created_before": value})
        assert response.status_code == 200, response.content
        assert client.get("/api/v1/analytics/summary", {"from": value}).status_code in (200, 400)


def test_times_before_the_year_1000_are_written_with_four_digits(alice):
    response = client_for(alice).get(
        "/api/v1/analytics/summary", {"from": "0258-12-28T16:15:04.9Z", "to": "2026-10-25"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["from"] == "0258-12-28T16:15:04.900000Z"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/me", {"last_name": 0}),
        ("/api/v1/me", {"first_name": 12}),
    ],
)
def test_a_number_where_the_schema_says_string_is_400(alice, path, body):
    before = snapshot()
    response = client_for(alice).patch(path, body, format="json")
    assert_problem(response, 400, "validation_error")
    assert snapshot() == before


def test_a_number_recipient_or_note_is_400_and_moves_nothing(alice, bob):
    fund(alice, 10_00)
    client = client_for(alice)
    before = snapshot()
    for body in (
        {"recipient": 1234, "amount": "1.00"},
        {"recipient": bob.quickpe_id, "amount": "1.00", "note": 5},
    ):
        response = client.post(
            "/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY=f"k-{body}"[:60]
        )
        assert_problem(response, 400, "validation_error")
    assert snapshot() == before


@pytest.mark.parametrize("value", ["0", "101", "abc", "-1", "1.5", "9" * 5000])
def test_page_size_outside_1_to_100_is_400(alice, value):
    response = client_for(alice).get("/api/v1/transactions", {"page_size": value})
    assert_problem(response, 400, "validation_error")


def test_empty_optional_query_values_mean_not_given(alice):
    fund(alice, 10_00)
    client = client_for(alice)
    for path in ("/api/v1/transactions", "/api/v1/notifications", "/api/v1/money-requests"):
        response = client.get(path, {"cursor": "", "page_size": ""})
        assert response.status_code == 200, (path, response.content)
    assert client.get("/api/v1/transactions", {"ordering": "", "kind": ""}).status_code == 200


def test_an_unknown_ordering_is_400_and_the_schema_lists_the_known_ones(alice):
    fund(alice, 1_00)
    fund(alice, 2_00)
    client = client_for(alice)
    assert_problem(
        client.get("/api/v1/transactions", {"ordering": "password"}), 400, "validation_error"
    )
    amounts = [
        row["amount"]
        for row in client.get("/api/v1/transactions", {"ordering": "amount"}).json()["results"]
    ]
    assert amounts == ["1.00", "2.00"]
    (ordering,) = [
        parameter
        for parameter in _schema()["paths"]["/api/v1/transactions"]["get"]["parameters"]
        if parameter["name"] == "ordering"
    ]
    assert set(ordering["schema"]["enum"]) == {"created_at", "-created_at", "amount", "-amount"}


def test_the_schema_declares_what_the_issue_lists():
    paths = _schema()["paths"]
    statuses = lambda path, method: set(paths[path][method]["responses"])  # noqa: E731
    assert "401" in statuses("/api/v1/auth/signin", "post")
    assert "401" in statuses("/api/v1/auth/refresh", "post")
    assert "401" in statuses("/api/v1/auth/signout", "post")
    assert "409" in statuses("/api/v1/auth/signup", "post")
    assert "403" in statuses("/api/v1/audit/verify", "get")
    assert "403" in statuses("/api/v1/analytics/kpi", "get")
    assert {"413", "415", "429"} <= statuses("/api/v1/money-requests", "post")
    assert {"413", "415", "429"} <= statuses("/api/v1/exports", "post")
    transactions = {p["name"]: p for p in paths["/api/v1/transactions"]["get"]["parameters"]}
    assert transactions["min_amount"]["schema"]["type"] == "string"
    assert transactions["created_after"]["schema"]["anyOf"][0]["format"] == "date"
    (key,) = [
        p
        for p in paths["/api/v1/transfers"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    assert key["schema"]["pattern"]
    download = paths["/api/v1/exports/{id}/download"]["get"]["responses"]["200"]["content"]
    assert {"application/pdf", "text/csv"} <= set(download)


def test_wallet_limits_schema_names_its_seven_keys(alice):
    schema = _schema()["components"]["schemas"]
    declared = set(schema["WalletLimits"]["properties"])
    assert len(declared) == 7
    assert set(client_for(alice).get("/api/v1/wallet").json()["limits"]) == declared
