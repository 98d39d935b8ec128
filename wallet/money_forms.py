"""The dashboard's money forms (send, add money, pay a request), each run once per idempotency
key like the API's requests."""

import uuid

from django.contrib import messages
from django.db import OperationalError

from quickpe.dashboard import error_words
from quickpe.errors import QuickPeError, is_timeout
from wallet.idempotency import Outcome, fingerprint, run_once

KEY_FIELD = "idempotency_key"


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
    fields = {k: v for k, v in request.POST.items() if k not in (KEY_FIELD, "csrfmiddlewaretoken")}
    form_fingerprint = fingerprint(method="POST", path=request.path, body=[name, fields])

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
            fingerprint=form_fingerprint,
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
