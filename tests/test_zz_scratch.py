import pytest
from tests.conftest import client_for, fund


def show(r):
    print(r.status_code, r.get("Content-Type"), r.content[:300])


def test_probe(alice, bob):
    c = client_for(alice)
    for i, amt in enumerate(
        ['"1\u0665"', '"\uff11\uff10"', '"1.\u0665"', "10.500", '"5 "', '"\u0665"']
    ):
        show(
            c.post(
                "/api/v1/wallet/deposits",
                '{"amount": %s}' % amt,
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=f"k{i}",
            )
        )
    show(
        c.post(
            "/api/v1/transfers",
            {"recipient": bob.quickpe_id, "amount": "1", "note": "a\x00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="nul",
        )
    )
    show(c.patch("/api/v1/me", {"first_name": "a\x00"}, format="json"))
    show(c.post("/api/v1/auth/signin", {"email": "a\x00", "password": "x"}, format="json"))
