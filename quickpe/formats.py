"""Formats shared by every public shape (REST and WebSocket), the audit log and the logs."""

from datetime import UTC, datetime


def timestamp(moment: datetime) -> str:
    """The contract's time format: ISO 8601, UTC, microseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``al***@example.com`` (the contract's format)."""
    local, at, domain = email.partition("@")
    if not at:
        return local[:2] + "***"
    return f"{local[:2]}***@{domain}"
