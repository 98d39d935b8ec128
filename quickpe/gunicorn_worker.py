"""gunicorn's sync worker, answering the requests gunicorn itself refuses in problem+json.

A request line longer than gunicorn's ``limit_request_line``, headers over
``limit_request_field_size`` or ``limit_request_fields``, or a request it cannot parse never
reaches Django: gunicorn answers it with an HTML page of its own. This worker gives the same
status as problem+json with a stable code, like every other answer of the API. Anything else
(gunicorn's 500 for an application that crashed outside Django, the rarer refusals) is left
to gunicorn.
"""

import json

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.sync import SyncWorker

# gunicorn's error -> (status, reason phrase, code, detail)
_REFUSALS = [
    (
        errors.LimitRequestLine,
        (414, "URI Too Long", "uri_too_long", "The request line (its URL) is too long."),
    ),
    (
        errors.LimitRequestHeaders,
        (
            431,
            "Request Header Fields Too Large",
            "header_fields_too_large",
            "The request has too many headers, or one is too large.",
        ),
    ),
    (
        (
            errors.InvalidRequestLine,
            errors.InvalidRequestMethod,
            errors.InvalidHTTPVersion,
            errors.InvalidHeader,
            errors.InvalidHeaderName,
        ),
        (400, "Bad Request", "bad_request", "The request could not be understood."),
    ),
]


def refusal_for(error: Exception) -> tuple[int, str, str, str] | None:
    return next((answer for kind, answer in _REFUSALS if isinstance(error, kind)), None)


class ProblemSyncWorker(SyncWorker):
    def handle_error(self, req, client, addr, exc):
        refusal = refusal_for(exc)
        if refusal is None:
            return super().handle_error(req, client, addr, exc)
        status, reason, code, detail = refusal
        from quickpe.errors import PROBLEM_CONTENT_TYPE, problem_body  # once Django is set up

        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        body = json.dumps(problem_body(status, code, detail, title=reason)).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except OSError:
            self.log.debug("Failed to send error message.")
        return None
