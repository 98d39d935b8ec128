"""Domain errors and their one mapping to RFC 9457 problem+json.

Services raise ``QuickPeError`` subclasses; the DRF exception handler and the Django error
views below turn every error into the same shape, so clients see one format for everything,
including 404/405/429/500. Nothing internal (stack traces, SQL, class names) reaches a client.
"""

import logging
import math
from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import Http404, JsonResponse
from psycopg import errors as pg_errors
from rest_framework import exceptions as drf
from rest_framework.response import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TIMED_OUT = (pg_errors.LockNotAvailable, pg_errors.QueryCanceled)
logger = logging.getLogger(__name__)


class QuickPeError(Exception):
    """Base of every domain error: an HTTP status and a stable machine-readable code."""

    status = 400
    code = "bad_request"
    default_detail = "The request could not be processed."

    def __init__(self, detail: str | None = None, *, errors: list[dict] | None = None):
        self.detail = detail or self.default_detail
        self.errors = errors or []
        super().__init__(self.detail)

    @classmethod
    def on_field(cls, field: str, detail: str | None = None) -> "QuickPeError":
        """This error, also listed under ``errors`` as a problem of one request field."""
        detail = detail or cls.default_detail
        return cls(detail, errors=[{"field": field, "code": cls.code, "detail": detail}])


class InsufficientFunds(QuickPeError):
    status, code = 409, "insufficient_funds"
    default_detail = "The wallet balance is too low for this amount."


class RecipientNotFound(QuickPeError):
    status, code = 404, "recipient_not_found"
    default_detail = "No QuickPe user matches that QuickPe ID or email."


class SelfTransfer(QuickPeError):
    status, code = 400, "self_transfer"
    default_detail = "You cannot send money to yourself."


class WalletFrozen(QuickPeError):
    status, code = 403, "wallet_frozen"
    default_detail = "The wallet is frozen; money cannot move in or out of it."


class LimitExceeded(QuickPeError):
    status, code = 409, "limit_exceeded"
    default_detail = "This amount is over a limit."


class IdempotencyKeyRequired(QuickPeError):
    status, code = 400, "idempotency_key_required"
    default_detail = "Send an Idempotency-Key header (1-255 printable ASCII characters)."


class IdempotencyKeyInvalid(QuickPeError):
    status, code = 400, "idempotency_key_invalid"
    default_detail = "The Idempotency-Key must be 1-255 printable ASCII characters."


class IdempotencyKeyReused(QuickPeError):
    status, code = 422, "idempotency_key_reused"
    default_detail = "This Idempotency-Key was already used with a different request."


class IdempotencyKeyInUse(QuickPeError):
    status, code = 409, "idempotency_key_in_use"
    default_detail = "A request with this Idempotency-Key is still being processed; retry later."


class InvalidCredentials(QuickPeError):
    status, code = 401, "invalid_credentials"
    default_detail = "The email or password is wrong."


class InvalidState(QuickPeError):
    status, code = 409, "invalid_state"
    default_detail = "The object is not in a state that allows this."


class NotAllowed(QuickPeError):
    status, code = 403, "permission_denied"
    default_detail = "You are not allowed to do this."


class NotFound(QuickPeError):
    status, code = 404, "not_found"
    default_detail = "Not found."


class RateLimited(QuickPeError):
    """A rate-limited action outside DRF's throttles (support tooling)."""

    status, code = 429, "rate_limited"
    default_detail = "Too many requests; try again later."


def problem_body(
    status: int, code: str, detail: str, errors: list[dict] | None = None, title: str = ""
) -> dict:
    return {
        "type": f"urn:quickpe:problem:{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": errors or [],
    }


def problem_response(
    status: int, code: str, detail: str, errors: list[dict] | None = None, headers=None
) -> Response:
    return Response(
        problem_body(status, code, detail, errors),
        status=status,
        headers=headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _field_errors(detail, prefix: str = "") -> list[dict]:
    """Flatten DRF's nested ValidationError detail into ``[{field, code, detail}]``."""
    if isinstance(detail, dict):
        items = []
        for key, value in detail.items():
            name = "" if key in ("non_field_errors", "__all__") else str(key)
            items += _field_errors(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return items
    if isinstance(detail, list):
        items = []
        for index, value in enumerate(detail):
            nested = isinstance(value, dict | list)
            items += _field_errors(value, f"{prefix}.{index}" if nested else prefix)
        return items
    return [
        {"field": prefix or None, "code": getattr(detail, "code", "invalid"), "detail": str(detail)}
    ]


def _validation_detail(errors: list[dict]) -> str:
    if len(errors) == 1:
        error = errors[0]
        return f"{error['field']}: {error['detail']}" if error["field"] else error["detail"]
    return "The request has invalid fields; see errors."


def is_timeout(error: Exception) -> bool:
    """A database lock or statement timeout: the transaction is rolled back, a retry may work."""
    return isinstance(error, OperationalError) and isinstance(error.__cause__, _TIMED_OUT)


def problem_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every exception a view raises becomes problem+json."""
    if isinstance(exc, QuickPeError):
        return problem_response(exc.status, exc.code, exc.detail, exc.errors)
    if is_timeout(exc):
        # A lock or statement timeout (DATABASE_*_TIMEOUT_MS): rolled back, nothing changed.
        return problem_response(
            503,
            "busy",
            "QuickPe is busy; nothing was changed. Please try again.",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return problem_response(413, "payload_too_large", "The request body is too large.")
    if not isinstance(exc, drf.APIException):
        return None  # a bug: Django logs it and handler500 answers

    headers = {}
    if isinstance(exc, drf.Throttled):
        wait = max(1, math.ceil(exc.wait or 1))  # whole seconds, rounded up
        headers["Retry-After"] = str(wait)
        return problem_response(
            429, "rate_limited", f"Too many requests; retry in {wait} s.", headers=headers
        )
    if isinstance(exc, drf.ValidationError):
        errors = _field_errors(exc.detail)
        return problem_response(400, "validation_error", _validation_detail(errors), errors)
    if isinstance(exc, drf.ParseError):
        return problem_response(400, "malformed_request", str(exc.detail))
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        detail = exc.detail
        code = "not_authenticated" if isinstance(exc, drf.NotAuthenticated) else "invalid_token"
        message = detail.get("detail", "") if isinstance(detail, dict) else str(detail)
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return problem_response(401, code, str(message), headers=headers)

    codes = {
        drf.PermissionDenied: "permission_denied",
        drf.NotFound: "not_found",
        drf.MethodNotAllowed: "method_not_allowed",
        drf.NotAcceptable: "not_acceptable",
        drf.UnsupportedMediaType: "unsupported_media_type",
    }
    code = next((value for kind, value in codes.items() if isinstance(exc, kind)), "error")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if isinstance(exc, drf.MethodNotAllowed) and context.get("view") is not None:
        headers["Allow"] = ", ".join(context["view"].allowed_methods)
    return problem_response(exc.status_code, code, detail, headers=headers)


def _json_problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse(
        problem_body(status, code, detail), status=status, content_type=PROBLEM_CONTENT_TYPE
    )


# Django-level handlers, for requests that never reach a DRF view.
def handler400(request, exception=None):
    return _json_problem(400, "bad_request", "The request could not be understood.")


def handler403(request, exception=None):
    return _json_problem(403, "permission_denied", "You do not have permission to do this.")


def handler404(request, exception=None):
    return _json_problem(404, "not_found", "Nothing lives at this address.")


def handler500(request):
    return _json_problem(500, "internal_error", "Something went wrong on our side; it is logged.")
