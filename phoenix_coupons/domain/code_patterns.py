"""What random codes look like: character sets and code patterns.

A pattern is literal code characters plus placeholders: `#` a digit, `?` a letter, `*` any
character of the definition's charset. A prefix plus `code_length` random characters is the
pattern `prefix + "*" * length`, so both kinds of definition share one draw, one code space
naming and one capacity rule."""

import re
import string
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import prod
from typing import NamedTuple

from schemas.bounds import CODE_MAX_LENGTH, CODE_TEMPLATE_PATTERN, PLACEHOLDERS_MAX
from schemas.coupons import Charset


class CharacterSet(NamedTuple):
    """What the placeholders draw from: `#` the digits, `?` the upper-case letters (and the
    lower-case ones on case-sensitive definitions), `*` all of them."""

    digits: str
    upper: str
    lower: str


# Upper case without 0/O and 1/I/L; the lower-case letters (case-sensitive definitions)
# also leave out i, l and o.
UNAMBIGUOUS = CharacterSet("23456789", "ABCDEFGHJKMNPQRSTUVWXYZ", "abcdefghjkmnpqrstuvwxyz")
CHARSETS: dict[Charset, CharacterSet] = {
    "unambiguous": UNAMBIGUOUS,
    "alphanumeric": CharacterSet(string.digits, string.ascii_uppercase, string.ascii_lowercase),
    "alphabetic": CharacterSet("", string.ascii_uppercase, string.ascii_lowercase),
    "numeric": CharacterSet(string.digits, "", ""),
}
DEFAULT_CHARSET: Charset = "unambiguous"
DIGIT, LETTER, ANY = "#", "?", "*"
PLACEHOLDERS = DIGIT + LETTER + ANY
PLACEHOLDERS_MIN = 1
_TEMPLATE_CHARS = re.compile(CODE_TEMPLATE_PATTERN)
# A request may fill at most this share of a code space: beyond it collisions make random
# generation slow and a later request could not find free codes at all. A fraction: the
# capacity of a space of any size is exact.
MAX_FILL = Fraction(1, 2)


def placeholder_alphabet(placeholder: str, charset: Charset, case_sensitive: bool) -> str:
    """The characters `placeholder` draws from (empty: the charset has none of its kind).
    The order (upper case, digits, lower case) keeps the unambiguous `*` today's alphabet."""
    chars = CHARSETS[charset]
    lower = chars.lower if case_sensitive else ""
    if placeholder == DIGIT:
        return chars.digits
    if placeholder == LETTER:
        return chars.upper + lower
    return chars.upper + chars.digits + lower


def pattern_reason(pattern: str, charset: Charset) -> str | None:
    """Why `pattern` is not a valid code pattern under `charset`, or None when it is."""
    if len(pattern) > CODE_MAX_LENGTH:
        return f"must be at most {CODE_MAX_LENGTH} characters"
    if pattern and not _TEMPLATE_CHARS.fullmatch(pattern):
        return (
            "only ASCII letters, digits, hyphens and underscores (literals) and the "
            "placeholders # (digit), ? (letter) and * (any character of the charset) "
            "are allowed"
        )
    placeholders = sum(pattern.count(p) for p in PLACEHOLDERS)
    if not PLACEHOLDERS_MIN <= placeholders <= PLACEHOLDERS_MAX:
        return (
            f"must hold {PLACEHOLDERS_MIN} to {PLACEHOLDERS_MAX} placeholders "
            f"(# digit, ? letter, * any character of the charset), not {placeholders}"
        )
    if DIGIT in pattern and not CHARSETS[charset].digits:
        return f"'#' draws a digit and charset '{charset}' has none"
    if LETTER in pattern and not CHARSETS[charset].upper:
        return f"'?' draws a letter and charset '{charset}' has none"
    return None


class CodeSpec(NamedTuple):  # a tuple: hashed per code drawn, in the worker's hot path
    """The random codes of a definition: `pattern`'s literals and placeholders (valid by
    `pattern_reason`), drawn from `charset`; upper case unless `case_sensitive`."""

    pattern: str
    case_sensitive: bool = False
    charset: Charset = DEFAULT_CHARSET

    @classmethod
    def random(
        cls, prefix: str, length: int, case_sensitive: bool, charset: Charset = DEFAULT_CHARSET
    ) -> "CodeSpec":
        """`prefix` then `length` characters of the charset (the spec's fields)."""
        return cls(prefix + ANY * length, case_sensitive, charset)

    @property
    def layout(self) -> "Layout":
        return _layout(self)

    @property
    def space(self) -> str:
        """The code space's name, stored on each coupon (counted for the capacity check).
        Two specs share a name exactly when their codes, ignoring case, are the same set."""
        return _layout(self).space

    @property
    def size(self) -> int:
        """Distinct codes of the space, counted ignoring case (as codes are unique)."""
        return _layout(self).size

    @property
    def capacity(self) -> int:
        """Codes the space may hold (`MAX_FILL` of its size): what the capacity check of
        every request that draws codes of this spec counts against."""
        return int(self.size * MAX_FILL)

    @property
    def placeholders(self) -> int:
        """Random characters per code."""
        return _layout(self).placeholders


@dataclass(frozen=True, slots=True)
class Layout:
    """A spec worked out once. `head` + a run of `tail` = (alphabet, count) when the
    placeholders are one run of one alphabet at the end (a prefix-and-length spec: one draw
    per code); otherwise `template` (literals in place) and, per alphabet, the positions it
    fills (one draw per alphabet)."""

    head: str
    tail: tuple[str, int] | None
    template: tuple[str, ...]
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    space: str
    size: int
    placeholders: int


@lru_cache(maxsize=4096)
def _layout(spec: CodeSpec) -> Layout:
    template: list[str] = []
    at: dict[str, list[int]] = {}
    folded: list[tuple[str, str]] = []  # per position: (literal, "") or ("", alphabet)
    for i, c in enumerate(spec.pattern):
        if c in PLACEHOLDERS:
            at.setdefault(placeholder_alphabet(c, spec.charset, spec.case_sensitive), []).append(i)
            # Codes are unique ignoring case: the space counts the upper-case alphabet.
            folded.append(("", placeholder_alphabet(c, spec.charset, False)))
            template.append(c)
        else:
            template.append(c if spec.case_sensitive else c.upper())
            folded.append((c.upper(), ""))  # literals are ASCII (pattern_reason)
    groups = tuple((alpha, tuple(positions)) for alpha, positions in at.items())
    head, tail = "", None
    if len(groups) == 1:
        alpha, positions = groups[0]
        if positions == tuple(range(positions[0], len(template))):
            head, tail = "".join(template[: positions[0]]), (alpha, len(positions))
    return Layout(
        head,
        tail,
        tuple(template),
        groups,
        _space_name(folded),
        prod(len(alpha) for _, alpha in folded if alpha),
        sum(len(positions) for _, positions in groups),
    )


# The upper-case alphabets a position draws from, as space names call them.
_DEFAULT_ALPHABET = placeholder_alphabet(ANY, DEFAULT_CHARSET, False)
_ALPHABET_NAMES = {
    _DEFAULT_ALPHABET: "ualnum",
    UNAMBIGUOUS.digits: "udigit",
    UNAMBIGUOUS.upper: "uletter",
    string.digits: "digit",
    string.ascii_uppercase: "letter",
    string.ascii_uppercase + string.digits: "alnum",
}


def _space_name(folded: list[tuple[str, str]]) -> str:
    """`<literals>:<n>` for literals then n characters of the default alphabet (the names
    spaces had before patterns), else the literals and `{<alphabet>:<n>}` runs, e.g.
    `SUMMER-{udigit:4}-{uletter:4}`: literals are code characters, never braces."""
    runs: list[tuple[str, int]] = []  # (literal, 0) or (alphabet, count)
    for literal, alpha in folded:
        if literal:
            runs.append((literal, 0))
        elif runs and runs[-1][1] and runs[-1][0] == alpha:
            runs[-1] = (alpha, runs[-1][1] + 1)
        else:
            runs.append((alpha, 1))
    if runs and runs[-1][0] == _DEFAULT_ALPHABET and not any(n for _, n in runs[:-1]):
        return f"{''.join(literal for literal, _ in runs[:-1])}:{runs[-1][1]}"
    return "".join(text if not n else f"{{{_ALPHABET_NAMES[text]}:{n}}}" for text, n in runs)
