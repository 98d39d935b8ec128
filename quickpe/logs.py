"""Structured logs: one JSON object per line in production (``LOG_FORMAT=json``), readable
lines in development (``make run`` sets ``LOG_FORMAT=console``).

Every record passes through structlog's processors, the standard library's too (Django,
Celery, daphne), so all of them carry the request id of the request or task they belong to and
go through ``scrub``: passwords, tokens and idempotency keys never reach a log, and email
addresses are masked (``al***@example.com``).
"""

import re
import uuid
from contextvars import ContextVar

import structlog

from quickpe.formats import mask_email

REQUEST_ID_HEADER = "X-Request-ID"
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_SECRET_KEYS = re.compile(
    r"pass(word)?|secret|token|authorization|cookie|idempotency|api[_-]?key|refresh|access",
    re.IGNORECASE,
)
# Also URL-encoded ("%40"), as in a query string in the repr of a request.
_EMAIL = re.compile(r"[\w.+%-]+(@|%40)[\w-]+(\.[\w-]+)+", re.IGNORECASE)
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_QUERY_TOKEN = re.compile(r"(token|access|refresh)=[^&\s\"']+", re.IGNORECASE)


def valid_request_id(value: str | None) -> str:
    """The client's X-Request-ID when it is a sane one (printable ASCII, at most 128
    characters), else a new one."""
    if value and len(value) <= 128 and all(0x21 <= ord(char) <= 0x7E for char in value):
        return value
    return uuid.uuid4().hex


def _clean(value):
    if isinstance(value, str):
        value = _JWT.sub("[token]", value)
        value = _QUERY_TOKEN.sub(lambda match: f"{match.group(1)}=[token]", value)
        return _EMAIL.sub(lambda match: mask_email(match.group(0).replace("%40", "@")), value)
    if isinstance(value, dict):
        return {key: _scrub_pair(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else would be rendered as text by the JSON renderer, unscrubbed: Django's error
    # records carry the request, whose text holds the full path with its query string.
    return _clean(str(value))


def _scrub_pair(key, value):
    if isinstance(key, str) and _SECRET_KEYS.search(key) and key not in _ALLOWED_KEYS:
        return "[redacted]"
    return _clean(value)


# Keys that look secret by name but are not.
_ALLOWED_KEYS = {"access_log", "event"}


def scrub(_logger, _method, event_dict: dict) -> dict:
    """structlog processor: what must never be logged, removed or masked."""
    return {key: _scrub_pair(key, value) for key, value in event_dict.items()}


def _add_request_id(_logger, _method, event_dict: dict) -> dict:
    current = request_id.get()
    if current and "request_id" not in event_dict:
        event_dict["request_id"] = current
    return event_dict


def logging_config(*, log_format: str, level: str) -> dict:
    """Django's LOGGING: every record, structlog's and the standard library's, rendered by
    structlog as JSON or for the console."""
    stamp = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *stamp,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": [*stamp, structlog.stdlib.ExtraAdder()],
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    scrub,
                    renderer,
                ],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "pgserver": {"level": "WARNING"},
            # Django's own per-request lines would repeat ours (quickpe.requests).
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "WARNING"},
        },
    }


def get_logger(name: str):
    return structlog.get_logger(name)
