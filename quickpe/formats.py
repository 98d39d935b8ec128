"""Formats shared by every public shape (REST and WebSocket), the audit log and the logs."""

from datetime import UTC, datetime


def timestamp(moment: datetime) -> str:
    """The contract's time format: ISO 8601, UTC, microseconds, ``Z``. (``strftime("%Y")``
    would write the year 258 as ``258``, not the ``0258`` RFC 3339 requires.)"""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``al***@example.com`` (the contract's format)."""
    local, at, domain = email.partition("@")
    if not at:
        return local[:2] + "***"
    return f"{local[:2]}***@{domain}"
