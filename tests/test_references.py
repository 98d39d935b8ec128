"""Human-readable references: the shape the contract shows, and all of their 60 bits used."""

import re

from wallet.references import new_reference


def test_a_reference_is_the_prefix_and_twelve_crockford_letters():
    for _ in range(200):
        assert re.fullmatch(r"TRF[0-9A-HJKMNP-TV-Z]{12}", new_reference("TRF"))


def test_every_position_takes_every_letter():
    """Each of the twelve letters is its own 5 bits: a shift off by one would pin a position
    (the first to a few letters, or the last to even ones)."""
    seen = [set() for _ in range(12)]
    for _ in range(3000):
        for position, letter in enumerate(new_reference("")):
            seen[position].add(letter)
    assert [len(letters) for letters in seen] == [32] * 12
