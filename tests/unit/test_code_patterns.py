"""Code patterns and character sets (domain/code_patterns.py): what each placeholder draws
under each charset and case sensitivity, the draw with an injected RNG, the pattern rules,
the code space's name and size, and the capacity every request that draws codes checks."""

import re
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_coupons.domain.code_patterns import (
    CHARSETS,
    MAX_FILL,
    CodeSpec,
    pattern_reason,
    placeholder_alphabet,
)
from phoenix_coupons.domain.codes import UPPER_ALPHABET, CodeGenerator, check_capacity, normalize
from phoenix_coupons.domain.config_rules import code_spec, config_errors, validated
from phoenix_coupons.domain.errors import CodeSpaceExhausted, ValidationFailed
from schemas.coupons import Charset, CouponConfig
from tests.unit.test_codes import ScriptedRandom, SeededRandom

U_DIGITS, U_UPPER, U_LOWER = "23456789", "ABCDEFGHJKMNPQRSTUVWXYZ", "abcdefghjkmnpqrstuvwxyz"
UP, LOW, DIG = string.ascii_uppercase, string.ascii_lowercase, string.digits
ALL_CHARSETS: list[Charset] = ["unambiguous", "alphanumeric", "alphabetic", "numeric"]


# --- what each placeholder draws ------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "case_sensitive", "digit", "letter", "any_char"),
    [
        ("unambiguous", False, U_DIGITS, U_UPPER, U_UPPER + U_DIGITS),
        ("unambiguous", True, U_DIGITS, U_UPPER + U_LOWER, U_UPPER + U_DIGITS + U_LOWER),
        ("alphanumeric", False, DIG, UP, UP + DIG),
        ("alphanumeric", True, DIG, UP + LOW, UP + DIG + LOW),
        ("alphabetic", False, "", UP, UP),
        ("alphabetic", True, "", UP + LOW, UP + LOW),
        ("numeric", False, DIG, "", DIG),
        ("numeric", True, DIG, "", DIG),
    ],
)
def test_each_placeholder_draws_from_its_part_of_the_charset(
    charset: Charset, case_sensitive: bool, digit: str, letter: str, any_char: str
) -> None:
    assert placeholder_alphabet("#", charset, case_sensitive) == digit
    assert placeholder_alphabet("?", charset, case_sensitive) == letter
    assert placeholder_alphabet("*", charset, case_sensitive) == any_char


def test_the_default_charset_is_today_s_alphabet() -> None:
    assert placeholder_alphabet("*", "unambiguous", False) == UPPER_ALPHABET
    assert not set("0O1ILilo") & set(placeholder_alphabet("*", "unambiguous", True))
    assert CodeSpec("X****") == CodeSpec.random("X", 4, False, "unambiguous")


# --- the draw ---------------------------------------------------------------------------------


def test_a_pattern_draws_once_per_alphabet_and_keeps_its_literals() -> None:
    rng = ScriptedRandom("2345", "ABCD")
    code = CodeGenerator(rng).one(CodeSpec("SUMMER-####-????"))
    assert code == "SUMMER-2345-ABCD"
    assert rng.calls == [(U_DIGITS, 4), (U_UPPER, 4)]


def test_interleaved_placeholders_are_filled_in_order() -> None:
    rng = ScriptedRandom("79", "Q", "Z3")
    assert CodeGenerator(rng).one(CodeSpec("a#b?c#-**")) == "A7BQC9-Z3"
    assert rng.calls == [(U_DIGITS, 2), (U_UPPER, 1), (UPPER_ALPHABET, 2)]


def test_literals_are_upper_case_unless_case_sensitive() -> None:
    rng = ScriptedRandom("x1", "X1")
    generator = CodeGenerator(rng)
    assert generator.one(CodeSpec("vip-**", True, "alphanumeric")) == "vip-x1"
    assert generator.one(CodeSpec("vip-**", False, "alphanumeric")) == "VIP-X1"
    assert rng.calls == [(UP + DIG + LOW, 2), (UP + DIG, 2)]


def test_a_prefix_and_length_draws_once_per_code_as_before_patterns() -> None:
    rng = ScriptedRandom("ABCD2345")
    assert CodeGenerator(rng).one(CodeSpec.random("WELCOME", 8, False)) == "WELCOMEABCD2345"
    assert rng.calls == [(UPPER_ALPHABET, 8)]


def test_a_draw_of_mixed_specs_keeps_codes_distinct_ignoring_case() -> None:
    """The worker draws one batch for several definitions: a code one spec drew is drawn
    again for another whose space overlaps it (`A#` and `a*` both make A7)."""
    rng = ScriptedRandom("7", "7", "8")
    specs = [CodeSpec("A#"), CodeSpec("a*", True, "numeric")]
    assert CodeGenerator(rng).draw(specs) == ["A7", "a8"]
    assert rng.calls == [(U_DIGITS, 1), (DIG, 1), (DIG, 1)]


def shape(spec: CodeSpec) -> re.Pattern[str]:
    """The regular expression of a spec's codes, built apart from the generator."""
    parts = []
    for c in spec.pattern:
        if c in "#?*":
            parts.append(
                f"[{re.escape(placeholder_alphabet(c, spec.charset, spec.case_sensitive))}]"
            )
        else:
            parts.append(re.escape(c if spec.case_sensitive else c.upper()))
    return re.compile("".join(parts))


patterns = st.text(alphabet="AB-x_9#?*", min_size=1, max_size=12).filter(
    lambda p: 1 <= sum(p.count(c) for c in "#?*") <= 6
)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    pattern=patterns,
    charset=st.sampled_from(ALL_CHARSETS),
    case_sensitive=st.booleans(),
)
def test_every_charset_draws_distinct_codes_of_the_pattern(
    seed: int, pattern: str, charset: Charset, case_sensitive: bool
) -> None:
    if pattern_reason(pattern, charset):
        return  # e.g. '#' under alphabetic: refused by the rules, never drawn
    spec = CodeSpec(pattern, case_sensitive, charset)
    count = min(30, spec.capacity)
    drawn = CodeGenerator(SeededRandom(seed)).unique(count, spec, max_attempts=100_000)
    assert len({normalize(c) for c in drawn}) == count
    expected = shape(spec)
    assert all(expected.fullmatch(code) for code in drawn), (drawn, expected)


def test_the_secure_source_draws_every_charset() -> None:
    for charset in ALL_CHARSETS:
        for case_sensitive in (False, True):
            spec = CodeSpec("P-" + "*" * 12, case_sensitive, charset)
            drawn = CodeGenerator().unique(200, spec)
            chars = set("".join(c[2:] for c in drawn))
            # 2,400 characters: every one of at most 62 shows up (miss chance < 1e-15).
            assert chars == set(placeholder_alphabet("*", charset, case_sensitive)), charset


# --- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "charset", "words"),
    [
        ("", "unambiguous", "placeholders"),
        ("SUMMER", "unambiguous", "not 0"),
        ("#" * 33, "numeric", "not 33"),
        ("A" * 256, "unambiguous", "255"),
        ("SUMMER ####", "unambiguous", "only ASCII"),
        ("SOMMER-ÄÄ-##", "unambiguous", "only ASCII"),
        ("{ualnum:4}", "unambiguous", "only ASCII"),
        ("X-##\n", "unambiguous", "only ASCII"),
        ("CODE-####", "alphabetic", "'#' draws a digit and charset 'alphabetic' has none"),
        ("CODE-????", "numeric", "'?' draws a letter and charset 'numeric' has none"),
    ],
)
def test_bad_patterns_are_refused_with_the_reason(
    pattern: str, charset: Charset, words: str
) -> None:
    reason = pattern_reason(pattern, charset)
    assert reason is not None and words in reason, reason


@pytest.mark.parametrize(
    ("pattern", "charset"),
    [
        ("#", "numeric"),
        ("*" * 32, "unambiguous"),
        ("A" * 223 + "#" * 32, "alphanumeric"),
        ("SUMMER-####-????", "unambiguous"),
        ("lower_case-0O1IL-**", "unambiguous"),  # literals are any code characters
        ("NUM-****", "numeric"),
        ("ABC-???", "alphabetic"),
    ],
)
def test_good_patterns_pass(pattern: str, charset: Charset) -> None:
    assert pattern_reason(pattern, charset) is None


REWARD = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"


def config(**fields: Any) -> CouponConfig:
    return CouponConfig.model_validate(
        {
            "reward_item_id": REWARD,
            "code_format": "random",
            "usage_limit": {"limit_type": "unlimited"},
            **fields,
        }
    )


def refused_fields(cfg: CouponConfig) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as info:
        validated(cfg)
    return {d.field: d.reason for d in info.value.details}


def test_a_pattern_gets_no_default_code_length_and_charset_stays_unset() -> None:
    cfg = validated(config(code_pattern="SUMMER-####-????"))
    assert (cfg.code_pattern, cfg.code_length, cfg.code_prefix, cfg.charset) == (
        "SUMMER-####-????",
        None,
        None,
        None,
    )
    assert "charset" not in cfg.model_dump() and "code_pattern" not in config().model_dump()


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"code_prefix": "SUMMER-"}, {"config.code_prefix"}),
        ({"code_length": 8}, {"config.code_length"}),
        ({"code_prefix": "", "code_length": 8}, {"config.code_prefix", "config.code_length"}),
    ],
)
def test_a_pattern_with_a_prefix_or_length_is_refused_naming_them(
    fields: dict[str, Any], refused: set[str]
) -> None:
    reasons = refused_fields(config(code_pattern="####", **fields))
    assert set(reasons) == refused
    assert all("code_pattern" in r and "null" in r for r in reasons.values())


def test_a_bad_pattern_is_refused_naming_code_pattern() -> None:
    reasons = refused_fields(config(code_pattern="CODE-####", charset="alphabetic"))
    assert reasons == {"config.code_pattern": "'#' draws a digit and charset 'alphabetic' has none"}


def test_patterns_and_charsets_are_random_format_only() -> None:
    custom = {"code_format": "custom", "custom_code": "GIFT"}
    errors = config_errors(config(**custom, code_pattern="####", charset="numeric"))
    assert {e.field: e.reason for e in errors} == {
        "config.code_pattern": "is only allowed with code_format 'random'",
        "config.charset": "is only allowed with code_format 'random'",
    }


def test_an_unknown_charset_is_refused_by_the_schema() -> None:
    with pytest.raises(ValueError, match="charset"):
        config(charset="hex")


def test_a_charset_without_a_pattern_draws_the_prefix_and_length_from_it() -> None:
    cfg = validated(config(code_prefix="N-", code_length=6, charset="numeric"))
    assert cfg.code_length == 6
    assert code_spec(cfg) == CodeSpec("N-******", False, "numeric")
    assert code_spec(validated(config(code_prefix="W"))) == CodeSpec.random("W", 8, False)


def test_the_config_s_spec_is_its_pattern() -> None:
    cfg = validated(config(code_pattern="s-##", case_sensitive=True, charset="alphanumeric"))
    assert code_spec(cfg) == CodeSpec("s-##", True, "alphanumeric")


# --- code spaces ------------------------------------------------------------------------------


def test_a_prefix_and_length_keeps_the_space_name_of_stored_coupons() -> None:
    assert CodeSpec.random("ac-", 10, False).space == "AC-:10"
    assert CodeSpec.random("ac-", 10, True).space == "AC-:10"
    assert CodeSpec.random("", 8, False).space == ":8"
    # The same codes written as a pattern: the same space.
    assert CodeSpec("AC-**********").space == "AC-:10"


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        (CodeSpec("SUMMER-####-????"), "SUMMER-{udigit:4}-{uletter:4}"),
        (CodeSpec("summer-####-????", True, "alphanumeric"), "SUMMER-{digit:4}-{letter:4}"),
        (CodeSpec.random("N-", 6, False, "numeric"), "N-{digit:6}"),
        (CodeSpec.random("A", 4, False, "alphanumeric"), "A{alnum:4}"),
        (CodeSpec.random("A", 4, False, "alphabetic"), "A{letter:4}"),
        (CodeSpec("**-X"), "{ualnum:2}-X"),
        (CodeSpec("*#*"), "{ualnum:1}{udigit:1}{ualnum:1}"),
    ],
)
def test_space_names_of_patterns_and_charsets(spec: CodeSpec, name: str) -> None:
    assert spec.space == name


def folded(spec: CodeSpec) -> tuple[str, ...]:
    """The set each position of a code takes, ignoring case: what a space is."""
    return tuple(
        "".join(sorted(placeholder_alphabet(c, spec.charset, False))) if c in "#?*" else c.upper()
        for c in spec.pattern
    )


@settings(max_examples=400, deadline=None)
@given(
    a=st.tuples(patterns, st.booleans(), st.sampled_from(ALL_CHARSETS)),
    b=st.tuples(patterns, st.booleans(), st.sampled_from(ALL_CHARSETS)),
)
def test_two_specs_share_a_space_name_exactly_when_they_share_a_space(
    a: tuple[str, bool, Charset], b: tuple[str, bool, Charset]
) -> None:
    one, two = CodeSpec(*a), CodeSpec(*b)
    if pattern_reason(one.pattern, one.charset) or pattern_reason(two.pattern, two.charset):
        return
    assert (one.space == two.space) == (folded(one) == folded(two)), (one, two)


def test_charsets_that_draw_the_same_characters_share_a_space() -> None:
    assert (
        CodeSpec("X-###", False, "alphanumeric").space == CodeSpec("X-***", True, "numeric").space
    )
    assert CodeSpec("??", False, "alphabetic").space == CodeSpec("**", False, "alphabetic").space
    assert CodeSpec("##").space != CodeSpec("##", False, "numeric").space  # 2-9 against 0-9


# --- capacity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (CodeSpec("SUMMER-####-????"), 8**4 * 23**4),
        (CodeSpec("SUMMER-####-????", True), 8**4 * 23**4),  # case is ignored
        (CodeSpec("SUMMER-####-????", True, "alphanumeric"), 10**4 * 26**4),
        (CodeSpec.random("P", 8, False), 31**8),
        (CodeSpec.random("P", 8, True, "alphanumeric"), 36**8),
        (CodeSpec.random("", 6, False, "numeric"), 10**6),
        (CodeSpec("#"), 8),
        (CodeSpec("?", False, "alphabetic"), 26),
        (CodeSpec("*" * 32, True, "alphanumeric"), 36**32),
    ],
)
def test_the_size_is_the_product_of_the_per_position_alphabets(spec: CodeSpec, size: int) -> None:
    assert spec.size == size
    assert spec.capacity == size // 2 == int(size * MAX_FILL)


def test_capacity_is_exact_for_odd_and_huge_spaces() -> None:
    assert CodeSpec("?").capacity == 11  # 23 codes
    huge = CodeSpec("*" * 32, False, "alphanumeric")
    assert huge.capacity == 36**32 // 2  # a float would round it


def test_check_capacity_counts_the_pattern_s_space() -> None:
    spec = CodeSpec("CARD-####", False, "numeric")  # 10,000 codes: 5,000 may be used
    check_capacity(spec, existing=4_000, requested=1_000)
    with pytest.raises(CodeSpaceExhausted) as info:
        check_capacity(spec, existing=4_000, requested=1_001, field="count")
    assert info.value.code == "code_space_exhausted"
    assert [d.field for d in info.value.details] == ["count"]
    assert "space 10000" in info.value.message and "code_pattern" in info.value.message


def test_every_charset_has_letters_or_digits() -> None:
    for chars in CHARSETS.values():
        assert chars.digits or chars.upper
        assert len(chars.upper) == len(chars.lower)
        assert {c.upper() for c in chars.lower} == set(chars.upper)
