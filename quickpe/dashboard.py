"""What every dashboard page shares: the check that the browser's device session is still
active, the API's rate limits applied to forms, and domain errors put into words next to their
field.

The pages call the same services as the API; these helpers only adapt HTTP forms to them.
"""

from functools import wraps
from types import SimpleNamespace

from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.utils import timezone

from quickpe.authentication import DEVICE_SESSION
from quickpe.business_day import business_zone
from quickpe.errors import QuickPeError
from quickpe.money import format_inr


def signed_in(view):
    """Pages for signed-in users: anyone else goes to /signin. A browser whose device session
    was revoked (Settings, a password change, support) is signed out at its next request."""

    @wraps(view)
    def page(request, *args, **kwargs):
        if request.user.is_authenticated and request.user.has_active_session(
            request.session.get(DEVICE_SESSION)
        ):
            # Times on the pages are the customers' (Asia/Kolkata), as on their statements.
            with timezone.override(business_zone()):
                return view(request, *args, **kwargs)
        if request.user.is_authenticated:
            logout(request)
            messages.info(request, "This device was signed out. Sign in again.")
        return redirect(f"/signin?next={request.path}")

    return page


def throttled(request, throttle_class, scope: str = "", data=None) -> float | None:
    """The API's shared rate limit for a form post: seconds to wait, or None when allowed.
    The throttle classes read DRF's ``request.data`` (the form, or ``data`` where a form names
    its fields otherwise, as the admin's login does) and ``view.throttle_scope``."""
    call = SimpleNamespace(
        data=request.POST if data is None else data,
        user=request.user,
        META=request.META,
        headers=request.headers,
    )
    throttle = throttle_class()
    if throttle.allow_request(call, SimpleNamespace(throttle_scope=scope)):
        return None
    return throttle.wait() or 1.0


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
