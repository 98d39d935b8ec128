"""Formats shared by every public shape (REST and WebSocket)."""

from datetime import UTC, datetime


def timestamp(moment: datetime) -> str:
    """The contract's time format: ISO 8601, UTC, microseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
