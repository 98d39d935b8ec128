"""Read settings from the environment, failing loudly on a value that does not parse.

One small helper so every setting is documented in one place (the README lists them all)
and a typo in production stops the process at start instead of surfacing later.
"""

import os
import re

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_RATE = re.compile(r"^\d+/[smhd]$")


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_required(name: str, what: str) -> str:
    """A variable without a default: unset or empty stops the process, saying what it is."""
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set: {what}.")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_rate(name: str, default: str) -> str | None:
    """A DRF-style rate such as ``10/m``; ``off`` disables the limit (returns None)."""
    value = os.environ.get(name, default).strip().lower()
    if value == "off":
        return None
    if not _RATE.match(value):
        raise ImproperlyConfigured(f"{name} must look like '10/m' or be 'off', got {value!r}")
    return value


def env_paise(name: str, default: str, *, allow_zero: bool = False) -> int:
    """An amount of rupees such as ``100000.00``, returned as integer paise."""
    from quickpe.money import InvalidAmount, parse_amount

    value = os.environ.get(name, default).strip()
    if allow_zero and value in ("0", "0.0", "0.00"):
        return 0
    try:
        return parse_amount(value, ceiling=None)
    except InvalidAmount as error:
        raise ImproperlyConfigured(
            f"{name} must be a rupee amount, got {value!r}: {error}"
        ) from None
