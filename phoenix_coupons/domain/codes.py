"""Coupon code generation: secure randomness (injected), the draw of a code spec
(code_patterns.py: character sets, patterns, code spaces), uniqueness ignoring case,
collision retry and a capacity check that fails fast."""

import os
import string
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from phoenix_coupons.domain.code_patterns import (
    ANY,
    DEFAULT_CHARSET,
    UNAMBIGUOUS,
    placeholder_alphabet,
)
from phoenix_coupons.domain.code_patterns import MAX_FILL as MAX_FILL  # re-exported
from phoenix_coupons.domain.code_patterns import CodeSpec as CodeSpec  # re-exported
from phoenix_coupons.domain.errors import CodeSpaceExhausted, FieldError
from schemas.coupons import Charset

# Today's alphabet: the unambiguous charset's upper case and digits; case-sensitive
# definitions add its lower-case letters.
UPPER_ALPHABET = UNAMBIGUOUS.upper + UNAMBIGUOUS.digits
LOWER_EXTENSION = UNAMBIGUOUS.lower
# Draws allowed per code wanted (plus a floor) before a draw gives up on distinct codes.
DRAWS_PER_CODE, DRAWS_FLOOR = 20, 100


class RandomSource(Protocol):
    def choices(self, population: str, *, k: int) -> list[str]: ...


class SecureChoices:
    """Characters from the operating system's CSPRNG (what `secrets` uses), one system call
    per draw: `secrets.SystemRandom().choices` makes one per character (11 for a 10-character
    code). A byte maps onto the alphabet only below the largest multiple of its size (the
    others are dropped), so every character stays equally likely."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple[bytes, bytes]] = {}

    def choices(self, population: str, *, k: int) -> list[str]:
        table, dropped = self._tables.get(population) or self._table(population)
        drawn = b""
        while len(drawn) < k:
            drawn += os.urandom(k + k // 2 + 4).translate(table, dropped)
        return list(drawn[:k].decode("ascii"))

    def _table(self, population: str) -> tuple[bytes, bytes]:
        size = len(population)
        if not 0 < size <= 256 or not population.isascii():
            raise ValueError("the population must be 1 to 256 ASCII characters")
        keep = 256 - 256 % size
        table = bytes(ord(population[b % size]) if b < keep else 0 for b in range(256))
        self._tables[population] = (table, bytes(range(keep, 256)))
        return self._tables[population]


def secure_random() -> RandomSource:
    return SecureChoices()


def alphabet(case_sensitive: bool, charset: Charset = DEFAULT_CHARSET) -> str:
    """What the random characters of a prefix-and-length spec (`*`) are drawn from."""
    return placeholder_alphabet(ANY, charset, case_sensitive)


_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def normalize(code: str) -> str:
    """The form codes are unique under within a tenant: the case of ASCII letters is ignored.
    Only ASCII is folded: `str.upper()` maps the long s (U+017F) to `S` and `ß` to `SS`,
    which would make a non-ASCII look-alike find an ASCII code."""
    return code.upper() if code.isascii() else code.translate(_ASCII_UPPER)


# What to change when a code space is too small.
MORE_ROOM = (
    "use more random characters (a longer code_length, more placeholders in code_pattern) "
    "or a larger charset"
)


def check_capacity(spec: CodeSpec, existing: int, requested: int, field: str = "user_ids") -> None:
    """Fail fast when `requested` more codes of `spec` cannot fit beside `existing` ones
    (`field`: what the request asked for them with)."""
    if existing + requested > spec.capacity:
        raise CodeSpaceExhausted(
            message=(
                f"code space exhausted: {requested} new codes of {spec.placeholders} random "
                f"characters cannot fit beside {existing} existing ones (space {spec.size}, "
                f"at most {int(MAX_FILL * 100)}% may be used); {MORE_ROOM}"
            ),
            details=[FieldError(field, "too many codes for the definition's code space")],
        )


class CodeGenerator:
    def __init__(self, rng: RandomSource | None = None) -> None:
        self._rng = rng or secure_random()

    def one(self, spec: CodeSpec) -> str:
        """A code of `spec`: one draw per alphabet its placeholders use."""
        layout = spec.layout
        if layout.tail is not None:
            alpha, k = layout.tail
            return layout.head + "".join(self._rng.choices(alpha, k=k))
        chars = list(layout.template)
        for alpha, positions in layout.groups:
            for at, char in zip(positions, self._rng.choices(alpha, k=len(positions)), strict=True):
                chars[at] = char
        return "".join(chars)

    def draw(self, specs: Sequence[CodeSpec]) -> list[str | None]:
        """A code per spec, distinct ignoring case. Draws that keep colliding stop after
        `DRAWS_PER_CODE` per code: the codes still missing are None."""
        budget = len(specs) * DRAWS_PER_CODE + DRAWS_FLOOR
        seen: set[str] = set()
        out: list[str | None] = []
        for spec in specs:
            code = None
            while budget > 0:
                budget -= 1
                drawn = self.one(spec)
                key = normalize(drawn)
                if key not in seen:
                    seen.add(key)
                    code = drawn
                    break
            out.append(code)
        return out

    def unique(
        self,
        count: int,
        spec: CodeSpec,
        taken: Callable[[str], bool] = lambda _: False,
        max_attempts: int | None = None,
    ) -> list[str]:
        """`count` codes, distinct ignoring case and not `taken` (called with normalized codes).
        Collisions are drawn again; a draw that keeps colliding raises CodeSpaceExhausted."""
        budget = max_attempts if max_attempts is not None else count * 20 + 100
        seen: set[str] = set()
        out: list[str] = []
        while len(out) < count:
            if budget <= 0:
                raise CodeSpaceExhausted(
                    message="could not draw enough distinct codes: the code space is too full",
                    details=[FieldError("user_ids", "too many collisions drawing codes")],
                )
            budget -= 1
            code = self.one(spec)
            key = normalize(code)
            if key in seen or taken(key):
                continue
            seen.add(key)
            out.append(code)
        return out


def duplicates_ignoring_case(codes: Iterable[str]) -> list[str]:
    """Codes that repeat in `codes` when case is ignored (each reported once)."""
    seen: set[str] = set()
    reported: set[str] = set()
    dup: list[str] = []
    for code in codes:
        key = normalize(code)
        if key in seen and key not in reported:
            dup.append(code)
            reported.add(key)
        seen.add(key)
    return dup
