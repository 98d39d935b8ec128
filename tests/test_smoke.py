from tests.conftest import client_for, fund


def test_deposit_then_transfer(alice, bob):
    fund(alice, 1000_00)
    response = client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "250.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="t-1",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["balance"] == "750.00"
    assert client_for(bob).get("/api/v1/wallet").json()["balance"] == "250.00"
