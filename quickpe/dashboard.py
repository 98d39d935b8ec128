"""What every dashboard page shares: signing a browser in as a device session, the check that
the session is still active, the API's rate limits applied to forms, money forms run once per
idempotency key, and domain errors put into words next to their field.

The pages call the same services as the API; this module only adapts HTTP forms to them.
"""

import hashlib
import uuid
from functools import wraps
from types import SimpleNamespace

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.db import OperationalError
from django.shortcuts import redirect
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from quickpe.business_day import business_zone
from quickpe.errors import QuickPeError, is_timeout
from quickpe.money import InvalidAmount, format_inr, parse_amount
from wallet.idempotency import Outcome, run_once
from wallet.models import DeviceSession
from wallet.services.sessions import SESSION_CLAIM

DEVICE_SESSION = "device_session"  # the browser's DeviceSession id, in its Django session
KEY_FIELD = "idempotency_key"


def dashboard_context(request) -> dict:
    """Template context of the signed-in pages: the bell's count and the event stream's URL."""
    if not request.path.startswith("/app/") or not request.user.is_authenticated:
        return {}
    from notifications.models import Notification
    from notifications.selectors import stream_position

    unread = Notification.objects.filter(user=request.user, read_at__isnull=True).count()
    return {
        "unread": unread,
        "websocket_url": settings.QUICKPE_WEBSOCKET_URL,
        # The page shows the state as of this event: the socket replays anything after it.
        "last_event_id": stream_position(user_id=request.user.pk),
    }


def browser_sign_in(request, user, tokens: dict) -> None:
    """Sign the browser in with the device session the sign-in service just opened."""
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[DEVICE_SESSION] = RefreshToken(tokens["refresh"], verify=False)[SESSION_CLAIM]


def signed_in(view):
    """Pages for signed-in users: anyone else goes to /signin. A browser whose device session
    was revoked (Settings, a password change, support) is signed out at its next request."""

    @wraps(view)
    def page(request, *args, **kwargs):
        if (
            request.user.is_authenticated
            and DeviceSession.objects.filter(
                pk=request.session.get(DEVICE_SESSION),
                user=request.user,
                revoked_at__isnull=True,
                expires_at__gt=timezone.now(),
            ).exists()
        ):
            # Times on the pages are the customers' (Asia/Kolkata), as on their statements.
            with timezone.override(business_zone()):
                return view(request, *args, **kwargs)
        if request.user.is_authenticated:
            logout(request)
            messages.info(request, "This device was signed out. Sign in again.")
        return redirect(f"/signin?next={request.path}")

    return page


def throttled(request, throttle_class, scope: str = "") -> float | None:
    """The API's shared rate limit for a form post: seconds to wait, or None when allowed.
    The throttle classes read DRF's ``request.data`` and ``view.throttle_scope``."""
    call = SimpleNamespace(
        data=request.POST, user=request.user, META=request.META, headers=request.headers
    )
    throttle = throttle_class()
    if throttle.allow_request(call, SimpleNamespace(throttle_scope=scope)):
        return None
    return throttle.wait() or 1.0


def amount_from(text: str, *, ceiling: int | None) -> tuple[int | None, str | None]:
    """Paise from a form's amount, or the reason it is not one (in words)."""
    try:
        return parse_amount(text.strip(), ceiling=ceiling), None
    except InvalidAmount as error:
        return None, str(error)


# Errors the services raise without naming a field, shown next to the field they are about.
_FIELD_OF = {
    "insufficient_funds": "amount",
    "recipient_not_found": "recipient",
    "self_transfer": "recipient",
    "payer_not_found": "payer",
}


def error_words(error: QuickPeError | dict) -> tuple[str, str]:
    """(field, message) of a domain error or of a remembered problem body; a limit adds what
    is left of it today."""
    if isinstance(error, dict):
        body, code = error, ""
    else:
        body, code = {"detail": error.detail, "errors": error.errors}, error.code
    first = (body.get("errors") or [{"field": _FIELD_OF.get(code)}])[0]
    message = first.get("detail") or body.get("detail") or "That did not work."
    if first.get("remaining") is not None:
        message += f" You can still use {format_inr(round(float(first['remaining']) * 100))} today."
    return first.get("field") or "", message


def new_key() -> str:
    return uuid.uuid4().hex


# Form names -> the movement kinds the API's endpoints count under (metrics, logs).
_KINDS = {"send": "transfer", "deposit": "deposit", "pay": "money_request_pay"}


def money_post(request, *, name: str, action) -> tuple[bool, dict[str, str]]:
    """Run a money form once per its idempotency key (the API's machinery: the key row lives in
    the movement's transaction). ``action()`` calls the service and returns the message shown
    after the redirect. Returns (done, field errors). A refresh or a double submit of the same
    form finds its key and gets the first outcome again, never a second payment."""
    key = request.POST.get(KEY_FIELD, "")
    if not key or len(key) > 255:
        return False, {"": "This form has expired; please try again."}
    fields = sorted(
        (k, v) for k, v in request.POST.items() if k not in (KEY_FIELD, "csrfmiddlewaretoken")
    )
    fingerprint = hashlib.sha256(repr((name, request.path, fields)).encode()).hexdigest()

    def handler() -> Outcome:
        return Outcome(201, {"message": action()})

    def refusal(error: Exception) -> Outcome:
        field, message = error_words(error)
        return Outcome(
            getattr(error, "status", 400), {"errors": [{"field": field, "detail": message}]}
        )

    try:
        outcome = run_once(
            user=request.user,
            key=f"form:{key}",
            fingerprint=fingerprint,
            handler=handler,
            refusal=refusal,
            kind=_KINDS.get(name.split("-")[0], name),
        )
    except QuickPeError as error:  # in flight elsewhere, or the key reused for other values
        return False, {"": error.detail}
    except OperationalError as error:
        if not is_timeout(error):
            raise
        return False, {"": "QuickPe is busy; nothing was changed. Please try again."}
    if outcome.status < 400:
        messages.success(request, outcome.body["message"])
        return True, {}
    first = outcome.body["errors"][0]
    return False, {first["field"] or "": first["detail"]}
