"""The one place where money crosses the edge: JSON strings/numbers <-> integer paise.

Amounts are integer paise everywhere inside QuickPe. Clients send a string or a JSON number with
at most two decimals; the JSON parser hands numbers over as ``Decimal`` (never float), so
``1.005`` and ``1e3`` can be told apart from ``1.00`` and ``1000``.
"""

import re
from decimal import Decimal, InvalidOperation

PAISE_PER_RUPEE = 100
# ASCII digits only, matched in full: ``\d`` would admit other scripts' digits ("1\u0665" is 15 to
# Decimal) and ``$`` a trailing newline.
_AMOUNT_TEXT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?")
_TOO_MANY_DECIMALS = re.compile(r"[0-9]+\.[0-9]{3,}")
# A bound that no real amount reaches, so arithmetic never nears BIGINT overflow.
_ABSOLUTE_CEILING = 10**15


class InvalidAmount(ValueError):
    """The value is not an amount of money QuickPe accepts; ``code`` says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_amount(value: object, *, ceiling: int | None) -> int:
    """Parse a client amount into paise: positive, at most two decimals, no exponent.

    ``ceiling`` (paise) rejects absurd values with a 400 before any business rule runs;
    business limits such as the per-transaction maximum are checked later and answer 409.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidAmount("invalid_amount", "Amount must be a string or a number.")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidAmount("invalid_amount", "Amount must be a finite number.")
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidAmount("invalid_amount", "Amount must be a string or a number.")

    if "e" in text.lower():
        raise InvalidAmount("invalid_amount", "Exponent notation is not accepted for amounts.")
    if text.startswith("-"):
        raise InvalidAmount("invalid_amount", "Amount must be positive.")
    if len(text) > 32 or not _AMOUNT_TEXT.fullmatch(text):
        if _TOO_MANY_DECIMALS.fullmatch(text):
            raise InvalidAmount("invalid_amount", "Amount can have at most two decimals.")
        raise InvalidAmount("invalid_amount", "Amount must look like 1250 or 1250.50.")
    try:
        paise = int((Decimal(text) * PAISE_PER_RUPEE).to_integral_exact())
    except InvalidOperation:  # pragma: no cover - the regex admits only plain decimals
        raise InvalidAmount("invalid_amount", "Amount is not a number.") from None
    if paise == 0:
        raise InvalidAmount("invalid_amount", "Amount must be greater than zero.")
    limit = _ABSOLUTE_CEILING if ceiling is None else min(ceiling, _ABSOLUTE_CEILING)
    if paise > limit:
        raise InvalidAmount("amount_too_large", f"Amount must not exceed {format_paise(limit)}.")
    return paise


def format_paise(paise: int) -> str:
    """Integer paise -> the contract's string with exactly two decimals: ``"1250.00"``."""
    sign = "-" if paise < 0 else ""
    rupees, rest = divmod(abs(paise), PAISE_PER_RUPEE)
    return f"{sign}{rupees}.{rest:02d}"


def format_inr(paise: int) -> str:
    """Indian grouping for people: 10000000 paise -> ``₹1,00,000.00``."""
    text = format_paise(abs(paise))
    rupees, decimals = text.split(".")
    if len(rupees) > 3:
        head, tail = rupees[:-3], rupees[-3:]
        groups = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        if head:
            groups.insert(0, head)
        rupees = ",".join([*groups, tail])
    return f"{'-' if paise < 0 else ''}₹{rupees}.{decimals}"
