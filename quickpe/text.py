"""Text composed for a bounded column, fitted to it.

Titles, descriptions and device names are built from things users choose (names of up to
150 + 150 characters, notes, user agents), so a composition can be longer than its column;
PostgreSQL would refuse the whole change. Every such text goes through ``fit``, which cuts it
to the column's ``max_length`` with an ellipsis. Input a user typed into a field of its own is
validated at the edge instead (a note that is too long is a 400, not silently cut).

Lengths are in characters, as PostgreSQL's ``varchar(n)`` counts them. A cut never separates
a base character from what is drawn with it (Devanagari vowel signs and viramas, emoji skin
tones, variation selectors, the joiner of an emoji sequence).
"""

import unicodedata

from django.db import models

ELLIPSIS = "…"
# Characters drawn together with the one before them (besides combining marks).
_JOINED = {"\u200c", "\u200d", "\ufe0e", "\ufe0f"} | {chr(code) for code in range(0x1F3FB, 0x1F400)}


def _attached(char: str) -> bool:
    """Drawn with the character before it."""
    return char in _JOINED or unicodedata.category(char).startswith("M")


def _joins_next(char: str) -> bool:
    """Draws the character after it into one shape (a conjunct, an emoji sequence)."""
    return char == "\u200d" or unicodedata.name(char, "").endswith("SIGN VIRAMA")


def fit_length(text: str, max_length: int) -> str:
    """``text`` if it fits in ``max_length`` characters, else its longest cut that does with
    ``…`` appended, cut between two characters that are drawn apart."""
    if len(text) <= max_length:
        return text
    end = max_length - len(ELLIPSIS)
    # Step back over a cut inside a cluster: the first dropped character belongs to the last
    # kept one, or the last kept one joins what follows.
    while end > 0 and (_attached(text[end]) or _joins_next(text[end - 1])):
        end -= 1
    return text[:end].rstrip() + ELLIPSIS


def fit(model: type[models.Model], field: str, text: str) -> str:
    """``text`` fitted to ``model.field``'s ``max_length``."""
    return fit_length(text, model._meta.get_field(field).max_length)
