"""Domain errors and their one mapping to RFC 9457 problem+json.

Services raise ``QuickPeError`` subclasses; the DRF exception handler and the Django error
views below turn every error into the same shape, so clients see one format for everything,
including 404/405/429/500 and the two retryable 503s (``busy``, ``unavailable``) a database
timeout or outage gives. Nothing internal (stack traces, SQL, class names) reaches a client.
"""

import logging
import math
import sys
from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from psycopg import OperationalError as PgOperationalError
from psycopg import errors as pg_errors
from rest_framework import exceptions as drf
from rest_framework.response import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TIMED_OUT = (pg_errors.LockNotAvailable, pg_errors.QueryCanceled)
# The server is gone or will not take this connection: stopped, crashed, restarting, out of
# connection slots, or it ended this session (an idle transaction past its limit). A retry
# after a pause reaches the server again; nothing about the request itself is wrong.
_SERVER_GONE = (
    pg_errors.ConnectionException,
    pg_errors.AdminShutdown,
    pg_errors.CrashShutdown,
    pg_errors.CannotConnectNow,
    pg_errors.TooManyConnections,
    pg_errors.IdleInTransactionSessionTimeout,
    pg_errors.IdleSessionTimeout,
)
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


def is_timeout(error: BaseException | None) -> bool:
    """A database lock or statement timeout: the transaction is rolled back, a retry may work."""
    return isinstance(error, OperationalError) and isinstance(error.__cause__, _TIMED_OUT)


def is_unavailable(error: BaseException | None) -> bool:
    """PostgreSQL could not be reached, or the connection was lost under the request (a
    restart, a crash, a session the server ended). Errors in what was asked of it (integrity,
    programming, data) are not: those are bugs and stay 500s."""
    if isinstance(error, InterfaceError):  # a connection that was already closed
        return True
    if not isinstance(error, DatabaseError):
        return False
    cause = error.__cause__
    # libpq's own failures (cannot connect, the server closed the connection) have no SQLSTATE.
    return isinstance(cause, _SERVER_GONE) or (
        isinstance(cause, PgOperationalError) and cause.sqlstate is None
    )


def _retryable_problem(error: BaseException | None) -> tuple[str, str, str] | None:
    """The 503's code, detail and Retry-After for a database failure a client should simply
    retry, or None."""
    if is_timeout(error):
        # A lock or statement timeout (DATABASE_*_TIMEOUT_MS): rolled back, nothing changed.
        return "busy", "QuickPe is busy; nothing was changed. Please try again.", "1"
    if is_unavailable(error):
        # Not "nothing changed": a commit may have reached the server just before the
        # connection dropped. Retrying with the same Idempotency-Key is safe either way.
        logger.warning("database unavailable: %s", type(error.__cause__ or error).__name__)
        detail = (
            "QuickPe cannot reach its database right now. Please try again in a few seconds; "
            "a money request retried with the same Idempotency-Key takes effect at most once."
        )
        return "unavailable", detail, "5"
    return None


def problem_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every exception a view raises becomes problem+json."""
    if isinstance(exc, QuickPeError):
        return problem_response(exc.status, exc.code, exc.detail, exc.errors)
    retryable = _retryable_problem(exc)
    if retryable is not None:
        code, detail, retry_after = retryable
        return problem_response(503, code, detail, headers={"Retry-After": retry_after})
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


def _json_problem(status: int, code: str, detail: str, headers=None) -> JsonResponse:
    return JsonResponse(
        problem_body(status, code, detail),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


# Django-level handlers, for requests that never reach a DRF view.
def handler400(request, exception=None):
    return _json_problem(400, "bad_request", "The request could not be understood.")


def handler403(request, exception=None):
    return _json_problem(403, "permission_denied", "You do not have permission to do this.")


def handler404(request, exception=None):
    return _json_problem(404, "not_found", "Nothing lives at this address.")


def handler500(request):
    """Django calls this while it handles an exception nothing else did (a page, the admin, a
    middleware), so that exception is the one being handled here: a database outage or lock
    timeout is the same retryable 503 the API gives; anything else is a bug."""
    retryable = _retryable_problem(sys.exc_info()[1])
    if retryable is not None:
        code, detail, retry_after = retryable
        return _json_problem(503, code, detail, headers={"Retry-After": retry_after})
    return _json_problem(500, "internal_error", "Something went wrong on our side; it is logged.")
