"""The signup bonus: credited by a background job, once, as an ordinary audited deposit."""

import pytest

from audit.models import AuditEntry
from notifications.models import Event
from tests.conftest import make_user
from tests.invariants import assert_money_invariants
from wallet.models import LedgerEntry
from wallet.services.money import signup_bonus_credit

pytestmark = pytest.mark.django_db


def test_signup_schedules_the_bonus_after_commit_and_starts_at_zero(
    api, settings, django_capture_on_commit_callbacks
):
    settings.QUICKPE_SIGNUP_BONUS = 50_00
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(
            "/api/v1/auth/signup",
            {"email": "new@example.com", "password": "a-long-test-passphrase", "first_name": "N"},
            format="json",
        )
    assert response.status_code == 201
    # The job is queued only once the signup commits (beside the events' doorbell).
    assert [getattr(cb, "__qualname__", "").split(".")[0] for cb in callbacks].count(
        "dispatch_after_commit"
    ) == 1
    token = response.json()["access"]
    wallet = api.get("/api/v1/wallet", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert wallet["balance"] == "0.00"


def test_the_bonus_is_credited_once_however_often_the_job_runs(settings):
    settings.QUICKPE_SIGNUP_BONUS = 50_00
    user = make_user("Lucky")
    first = signup_bonus_credit(user=user)
    again = signup_bonus_credit(user=user)  # a redelivered job
    assert first is not None and again is None
    line = LedgerEntry.objects.get(wallet__user=user)
    assert (line.kind, line.amount, line.description) == ("deposit", 50_00, "Welcome bonus")
    assert AuditEntry.objects.filter(actor=user, action="wallet.signup_bonus").count() == 1
    types = list(Event.objects.filter(user=user).order_by("seq").values_list("type", flat=True))
    assert types == [
        "audit:new",
        "balance:update",
        "transaction:new",
        "notification:new",
        "audit:new",
    ]
    assert_money_invariants()


def test_no_bonus_configured_credits_nothing(settings):
    settings.QUICKPE_SIGNUP_BONUS = 0
    user = make_user("Plain")
    assert signup_bonus_credit(user=user) is None
    assert not LedgerEntry.objects.filter(wallet__user=user).exists()
