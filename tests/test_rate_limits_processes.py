"""Rate limits hold across processes: two gunicorn workers share them through Redis, and a
throttled request changes nothing."""

import threading
from collections import Counter

import pytest

from tests.conftest import PASSWORD, make_user, snapshot
from tests.processes import running_stack
from wallet.models import IdempotencyKey
from wallet.services.users import tokens_issue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web(tmp_path):
    with running_stack(
        tmp_path,
        web_only=True,
        QUICKPE_MONEY_RATE="5/m",
        QUICKPE_SIGNIN_RATE="3/m",
        QUICKPE_SIGNIN_IP_RATE="off",
    ) as running:
        yield running


def at_once(count: int, call) -> list:
    """``count`` threads make ``call(index)`` together, each on its own connection."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def work(index: int) -> None:
        barrier.wait(timeout=30)
        results[index] = call(index)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_the_money_rate_holds_across_two_workers_and_a_throttled_request_changes_nothing(web):
    user = make_user("Burst")
    token = tokens_issue(user)["access"]
    before = snapshot()

    answers = at_once(
        16,
        lambda index: web.exchange(
            "POST", "/api/v1/wallet/deposits", {"amount": "10.00"}, token=token, key=f"k{index}"
        ),
    )

    assert Counter(status for status, _body, _headers in answers) == {201: 5, 429: 11}
    for status, body, headers in answers:
        if status == 429:
            assert body["code"] == "rate_limited"
            assert 1 <= int(headers["Retry-After"]) <= 60
    served_by = {pid for pid, _status, path in web.access_log() if path.endswith("/deposits")}
    assert len(served_by) == 2, "both workers must have served the burst"
    after = snapshot()
    user.wallet.refresh_from_db()
    assert user.wallet.balance == 5 * 10_00
    assert after["ledger"] == before["ledger"] + 5
    assert after["audit"] == before["audit"] + 5
    # Throttled requests were refused before the idempotency layer: no key remembers them, so
    # the client may retry the same key once the window allows.
    assert IdempotencyKey.objects.filter(user=user).count() == 5
    refused = next(index for index, (status, _b, _h) in enumerate(answers) if status == 429)
    assert (
        web.exchange(
            "POST", "/api/v1/wallet/deposits", {"amount": "10.00"}, token=token, key=f"k{refused}"
        )[0]
        == 429
    )


def sign_up(web, name: str) -> str:
    """An account made by the server itself (its password hasher, not the tests' fast one)."""
    email = f"{name.lower()}-{web.http_port}@example.com"
    status, body, _headers = web.exchange(
        "POST",
        "/api/v1/auth/signup",
        {"email": email, "password": PASSWORD, "first_name": name},
    )
    assert status == 201, body
    return email


def test_the_sign_in_rate_per_account_holds_across_two_workers(web):
    email = sign_up(web, "Guarded")

    answers = at_once(
        10,
        lambda _index: web.exchange(
            "POST", "/api/v1/auth/signin", {"email": email, "password": "wrong-" + PASSWORD}
        ),
    )

    assert Counter(status for status, _body, _headers in answers) == {401: 3, 429: 7}
    served_by = {pid for pid, _status, path in web.access_log() if path.endswith("/signin")}
    assert len(served_by) == 2
    # The right password is refused too while the account is throttled.
    status, body, _headers = web.exchange(
        "POST", "/api/v1/auth/signin", {"email": email, "password": PASSWORD}
    )
    assert (status, body["code"]) == (429, "rate_limited")
    # Another account from the same address is not affected (the per-IP limit is off here).
    other = sign_up(web, "Neighbour")
    status, _body, _headers = web.exchange(
        "POST", "/api/v1/auth/signin", {"email": other, "password": PASSWORD}
    )
    assert status == 200
