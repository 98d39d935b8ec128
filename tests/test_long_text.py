"""Text composed from what users choose (names of up to 150 + 150 characters, notes, user
agents) goes into bounded columns fitted to them: every flow answers, nothing is a 5xx.

``quickpe.text.fit`` is the one helper; these tests drive the flows end to end with the
longest inputs each field accepts, in Devanagari and emoji, and a property test drives every
composed column with arbitrary text up to its input limit.
"""

import csv
import io
import unicodedata
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client, RequestFactory
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from analytics.models import Export
from analytics.tasks import export_build
from audit.services import audit_verify
from notifications.models import Notification
from quickpe.text import ELLIPSIS, fit_length
from tests.conftest import PASSWORD, client_for, make_user
from tests.invariants import assert_money_invariants
from tests.test_admin import run_action, staff_in
from wallet.models import DeviceSession, LedgerEntry, MoneyRequest, Transfer, User
from wallet.services import support
from wallet.services.money import deposit_create, transfer_create
from wallet.services.requests import (
    money_request_create,
    money_request_decline,
    money_request_pay,
    money_requests_expire,
)
from wallet.services.sessions import describe_device
from wallet.services.users import user_signin

pytestmark = pytest.mark.django_db

# 150 characters each: Devanagari with its vowel signs and viramas, and emoji sequences.
FIRST = ("प्रिया शर्मा 👩🏽‍💻 " * 20)[:150]
LAST = ("क्षत्रिय-ज्ञान 🇮🇳👨‍👩‍👧 " * 20)[:150]
NOTE = ("किराया 🏠 rent ‍ " * 30)[:255]
# A user agent whose device name is 78 characters and more.
LONG_DEVICE_AGENT = (
    "Mozilla/5.0 (Linux; Android 13; " + "Q" * 100 + " Build/TP1A.220624.014) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
)


def bounded_columns_hold_their_text() -> None:
    """Every composed column is within its length (PostgreSQL would have refused otherwise,
    but this also checks the fitted text ends in an ellipsis, not mid-character)."""
    for model, field in [
        (Notification, "title"),
        (Notification, "body"),
        (LedgerEntry, "description"),
        (Transfer, "note"),
        (MoneyRequest, "note"),
        (DeviceSession, "device"),
    ]:
        limit = model._meta.get_field(field).max_length
        for value in model.objects.values_list(field, flat=True):
            assert len(value) <= limit


def signup(email: str, **headers) -> dict:
    response = client_for().post(
        "/api/v1/auth/signup",
        {"email": email, "password": PASSWORD, "first_name": FIRST, "last_name": LAST},
        format="json",
        **headers,
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_the_longest_names_notes_and_user_agents_go_through_every_flow(export_folder, settings):
    settings.QUICKPE_EXPORT_RATE = None
    agent = {"HTTP_USER_AGENT": LONG_DEVICE_AGENT}
    asha = signup("asha@example.com")
    ravi = signup("ravi@example.com")
    asha_user, ravi_user = (
        User.objects.get(pk=asha["user"]["id"]),
        User.objects.get(pk=ravi["user"]["id"]),
    )

    # Sign-in from a device with a long name: a new-device notification.
    for email in ("asha@example.com", "ravi@example.com"):
        signed_in = client_for().post(
            "/api/v1/auth/signin", {"email": email, "password": PASSWORD}, format="json", **agent
        )
        assert signed_in.status_code == 200, signed_in.content
    assert Notification.objects.filter(title__startswith="New sign-in on").count() == 2

    asha_api, ravi_api = client_for(token=asha["access"]), client_for(token=ravi["access"])
    for api, key in ((asha_api, "a"), (ravi_api, "r")):
        deposit = api.post(
            "/api/v1/wallet/deposits",
            {"amount": "500.00", "description": NOTE},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"dep-{key}",
        )
        assert deposit.status_code == 201, deposit.content

    # Transfers both ways, with and without a note (the description is composed from names).
    for api, other, key in ((asha_api, ravi, "1"), (ravi_api, asha, "2")):
        for note in ("", NOTE):
            sent = api.post(
                "/api/v1/transfers",
                {"recipient": other["user"]["quickpe_id"], "amount": "10.00", "note": note},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"t-{key}-{len(note)}",
            )
            assert sent.status_code == 201, sent.content

    # Requests: ask and pay (the payment's note is composed from the requester's name),
    # decline, cancel, expire.
    def ask(api, payer, note=""):
        asked = api.post(
            "/api/v1/money-requests",
            {"payer": payer["user"]["quickpe_id"], "amount": "5.00", "note": note},
            format="json",
        )
        assert asked.status_code == 201, asked.content
        return asked.json()["id"]

    for note in ("", NOTE):
        paid = ravi_api.post(
            f"/api/v1/money-requests/{ask(asha_api, ravi, note)}/pay",
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"pay-{len(note)}",
        )
        assert paid.status_code == 201, paid.content
    declined = ravi_api.post(f"/api/v1/money-requests/{ask(asha_api, ravi)}/decline")
    assert declined.status_code == 200, declined.content
    cancelled = asha_api.post(f"/api/v1/money-requests/{ask(asha_api, ravi, NOTE)}/cancel")
    assert cancelled.status_code == 200, cancelled.content
    ask(ravi_api, asha, NOTE)
    assert money_requests_expire(now=timezone.now() + timedelta(days=8)) == 1

    # Support reverses a transfer in the admin; the texts name both parties.
    _staff, browser = staff_in(None, is_superuser=True)
    transfer = Transfer.objects.filter(sender=asha_user, note="").first()
    reversed_ = run_action(
        browser, "/admin/wallet/transfer/", "reverse", [transfer.pk], reason="Mistake"
    )
    assert reversed_.status_code == 302
    transfer.refresh_from_db()
    assert transfer.status == "reversed"
    for page in (
        f"/admin/wallet/user/{asha_user.pk}/change/",
        f"/admin/wallet/transfer/{transfer.pk}/change/",
        "/admin/wallet/ledgerentry/",
        "/admin/notifications/notification/",
        "/admin/wallet/devicesession/",
    ):
        assert browser.get(page).status_code == 200, page

    # Exports: a statement in both formats, the names and notes as they are.
    for export_format in ("csv", "pdf"):
        queued = asha_api.post(
            "/api/v1/exports", {"kind": "statement", "format": export_format}, format="json"
        )
        assert queued.status_code == 202, queued.content
        export_build(queued.json()["id"])
        assert Export.objects.get(pk=queued.json()["id"]).status == "done"
        download = asha_api.get(f"/api/v1/exports/{queued.json()['id']}/download")
        assert download.status_code == 200
        if export_format == "csv":
            text = b"".join(download.streaming_content).decode("utf-8-sig")
            assert NOTE.strip() in text or NOTE in text
            assert len(list(csv.reader(io.StringIO(text)))) > 5

    # The dashboard shows it all.
    browser = Client(HTTP_USER_AGENT=LONG_DEVICE_AGENT)
    signed = browser.post("/signin", {"email": "ravi@example.com", "password": PASSWORD})
    assert signed.status_code == 302
    for page in ("/app/", "/app/transactions", "/app/requests", "/app/settings"):
        assert browser.get(page).status_code == 200, page

    titles = Notification.objects.filter(user=ravi_user).values_list("title", flat=True)
    assert any(title.endswith(ELLIPSIS) for title in titles)
    bounded_columns_hold_their_text()
    assert_money_invariants()
    assert audit_verify().valid


def test_a_long_device_name_is_fitted_with_an_ellipsis():
    name, _key = describe_device(LONG_DEVICE_AGENT)
    assert len(name) == DeviceSession._meta.get_field("device").max_length
    assert name.endswith(ELLIPSIS)


# Text a user can type: anything but surrogates and the NUL PostgreSQL refuses (and other
# control characters the API's fields refuse).
typed = st.characters(blacklist_categories=("Cs", "Cc"))


def typed_text(min_size: int, max_size: int):
    """Text of a length drawn evenly up to ``max_size`` (long inputs as often as short)."""
    return st.integers(min_size, max_size).flatmap(
        lambda size: st.text(typed, min_size=size, max_size=size)
    )


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=typed_text(1, 150),
    last=typed_text(0, 150),
    note=typed_text(0, 255),
    agent=typed_text(0, 512),
)
def test_every_composed_column_takes_any_name_and_note_up_to_the_input_limits(
    db, first, last, note, agent
):
    """Names, notes and user agents up to what signup, the money forms and a request carry,
    through a sign-in from a new device, a deposit, a transfer both ways, a request paid, one
    declined and one expired, and a reversal: each composed text fits its column."""
    with transaction.atomic():
        sender = make_user(first, last)
        recipient = make_user(last or "R", first)
        staff = make_user("Support", "Desk", is_staff=True, is_superuser=True)
        request = RequestFactory().get("/", HTTP_USER_AGENT=agent)
        user_signin(email=sender.email, password=PASSWORD, request=request)
        deposit_create(user=sender, amount=100_00, description=note)
        sent = transfer_create(sender=sender, recipient=recipient, amount=2_00, note=note)
        transfer_create(sender=recipient, recipient=sender, amount=1_00)
        asked = money_request_create(requester=recipient, payer=sender, amount=1_00, note=note)
        money_request_pay(user=sender, money_request_id=asked.pk)
        declined = money_request_create(requester=sender, payer=recipient, amount=1_00, note=note)
        money_request_decline(user=recipient, money_request_id=declined.pk)
        money_request_create(requester=sender, payer=recipient, amount=1_00)
        money_requests_expire(now=timezone.now() + timedelta(days=8))
        support.transfer_reverse(
            transfer=sent.transfer, actor=staff, reason=note.strip() or "Mistake"
        )
        bounded_columns_hold_their_text()
        transaction.set_rollback(True)


def _drawn_with_previous(char: str) -> bool:
    return (
        unicodedata.category(char).startswith("M")
        or char in "\u200c\u200d\ufe0e\ufe0f"
        or (0x1F3FB <= ord(char) <= 0x1F3FF)
    )


@given(text=st.text(max_size=400), limit=st.integers(min_value=2, max_value=300))
def test_fitted_text_fits_keeps_what_fits_and_never_splits_a_cluster(text, limit):
    fitted = fit_length(text, limit)
    assert len(fitted) <= limit
    if len(text) <= limit:
        assert fitted == text
        return
    assert fitted.endswith(ELLIPSIS)
    kept = fitted.removesuffix(ELLIPSIS)
    assert text.startswith(kept)
    # The cut is after ``kept`` and any spaces dropped before the ellipsis; what follows it is
    # not drawn with what precedes it.
    end = len(kept) + len(text[len(kept) :]) - len(text[len(kept) :].lstrip())
    cut = min(end, len(text) - 1)
    assert cut == 0 or not _drawn_with_previous(text[cut]) or text[:cut].strip() == ""
    assert not kept or not (
        kept[-1] == "\u200d" or unicodedata.name(kept[-1], "").endswith("VIRAMA")
    )
