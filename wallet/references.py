"""Human-readable identifiers: QuickPe IDs and transaction references."""

import secrets

# Crockford's base32 without I, L, O, U: easy to read aloud and to type from a statement.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_quickpe_id() -> str:
    return "QP" + "".join(secrets.choice("0123456789") for _ in range(8))


def new_reference(prefix: str) -> str:
    """``TXN`` + 12 random characters (60 bits): collisions are not a practical concern, and
    the unique constraint turns the impossible one into an error rather than a duplicate.
    One read of the system's randomness cut into twelve 5-bit letters: a transfer makes three
    references, and a ``secrets.choice`` per letter draws about twice per letter, several times
    the cost (docs/performance.md)."""
    bits = int.from_bytes(secrets.token_bytes(8), "big") >> 4
    return prefix + "".join(_ALPHABET[(bits >> shift) & 31] for shift in range(55, -1, -5))
