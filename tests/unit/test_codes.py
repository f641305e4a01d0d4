"""Code generation with an injected, scripted RNG: alphabet, case, prefix, collisions, capacity."""

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_coupons.domain.codes import (
    LOWER_EXTENSION,
    MAX_FILL,
    UPPER_ALPHABET,
    CodeGenerator,
    CodeSpec,
    SecureChoices,
    alphabet,
    check_capacity,
    duplicates_ignoring_case,
    normalize,
)
from phoenix_coupons.domain.errors import CodeSpaceExhausted, ValidationFailed


class ScriptedRandom:
    """Returns the scripted draws in order; records every population and k it was asked for."""

    def __init__(self, *draws: str) -> None:
        self.draws = list(draws)
        self.calls: list[tuple[str, int]] = []

    def choices(self, population: str, *, k: int) -> list[str]:
        self.calls.append((population, k))
        assert self.draws, "the generator drew more often than scripted"
        draw = self.draws.pop(0)
        assert len(draw) == k
        assert set(draw) <= set(population), f"{draw!r} is not drawn from {population!r}"
        return list(draw)


class SeededRandom:
    """Deterministic RNG for property tests."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def choices(self, population: str, *, k: int) -> list[str]:
        return self._random.choices(population, k=k)


def spec(prefix: str, length: int, case_sensitive: bool = False) -> CodeSpec:
    return CodeSpec.random(prefix, length, case_sensitive)


# --- alphabet -------------------------------------------------------------------------------


def test_upper_alphabet_has_no_look_alikes() -> None:
    assert not set("0O1IL") & set(UPPER_ALPHABET)
    assert set(UPPER_ALPHABET) == set(string.ascii_uppercase + string.digits) - set("0O1IL")
    assert len(set(UPPER_ALPHABET)) == len(UPPER_ALPHABET) == 31


def test_lower_extension_mirrors_the_upper_letters_without_i_l_o() -> None:
    assert not set("ilo") & set(LOWER_EXTENSION)
    assert set(LOWER_EXTENSION) == set(string.ascii_lowercase) - set("ilo")
    assert {c.upper() for c in LOWER_EXTENSION} <= set(UPPER_ALPHABET)


def test_alphabet_by_case_sensitivity() -> None:
    assert alphabet(False) == UPPER_ALPHABET
    assert set(alphabet(True)) == set(UPPER_ALPHABET) | set(LOWER_EXTENSION)
    assert not set("0O1ILilo") & set(alphabet(True))


def test_code_space_counts_codes_ignoring_case() -> None:
    assert spec("", 1).size == 31
    assert spec("", 8).size == 31**8
    assert spec("", 8, case_sensitive=True).size == 31**8


# --- one code -------------------------------------------------------------------------------


def test_one_draws_length_characters_from_the_upper_alphabet() -> None:
    rng = ScriptedRandom("ABCD2345")
    assert CodeGenerator(rng).one(spec("WELCOME", 8)) == "WELCOME" + "ABCD2345"
    assert rng.calls == [(UPPER_ALPHABET, 8)]


def test_one_is_upper_case_unless_case_sensitive() -> None:
    rng = ScriptedRandom("ABXY", "abXY")
    generator = CodeGenerator(rng)
    assert generator.one(spec("vip-", 4)) == "VIP-ABXY"
    assert generator.one(spec("vip-", 4, True)) == "vip-abXY"
    assert rng.calls[1] == (alphabet(True), 4)


def test_one_without_prefix() -> None:
    assert CodeGenerator(ScriptedRandom("Z9Z9")).one(spec("", 4)) == "Z9Z9"


def test_default_generator_uses_a_secure_source() -> None:
    codes = CodeGenerator().unique(50, spec("P-", 12))
    assert len({normalize(c) for c in codes}) == 50
    for code in codes:
        assert code.startswith("P-")
        assert len(code) == 14
        assert set(code[2:]) <= set(UPPER_ALPHABET)


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_secure_choices_cover_the_alphabet_evenly(case_sensitive: bool) -> None:
    """Bytes above the largest multiple of the alphabet's size are dropped: no character is
    favoured. 2,000 draws per character on average; a plain modulo would draw the first
    256 % size characters 12% (31 characters) or 25% (54) more often than the others."""
    chars = alphabet(case_sensitive)
    drawn = SecureChoices().choices(chars, k=2_000 * len(chars))
    assert len(drawn) == 2_000 * len(chars)
    counts = [drawn.count(c) for c in chars]
    assert set(drawn) == set(chars)
    # Six standard deviations (sqrt(2000) ~ 45) either side: fails by chance ~1e-9 per char.
    assert all(2_000 - 270 < n < 2_000 + 270 for n in counts), counts
    head = sum(counts[: 256 % len(chars)]) / (256 % len(chars))
    tail = sum(counts[256 % len(chars) :]) / (len(chars) - 256 % len(chars))
    assert abs(head - tail) / tail < 0.06  # about 6 standard deviations


@pytest.mark.parametrize("k", [0, 1, 10, 300])
def test_secure_choices_draw_exactly_k(k: int) -> None:
    assert len(SecureChoices().choices(UPPER_ALPHABET, k=k)) == k


@pytest.mark.parametrize("population", ["", "é", "x" * 257])
def test_secure_choices_refuse_what_bytes_cannot_cover(population: str) -> None:
    with pytest.raises(ValueError):
        SecureChoices().choices(population, k=1)


# --- unique ---------------------------------------------------------------------------------


def test_unique_redraws_a_repeated_code() -> None:
    rng = ScriptedRandom("AAAA", "AAAA", "BBBB")
    codes = CodeGenerator(rng).unique(2, spec("", 4))
    assert codes == ["AAAA", "BBBB"]
    assert len(rng.calls) == 3


def test_unique_redraws_codes_that_differ_only_in_case() -> None:
    rng = ScriptedRandom("abCD", "ABcd", "AbCd", "wxyz")
    codes = CodeGenerator(rng).unique(2, spec("", 4, True))
    assert codes == ["abCD", "wxyz"]
    assert rng.draws == []


def test_unique_honours_taken_with_normalized_codes() -> None:
    asked: list[str] = []
    existing = {"PX-AAAA", "PX-BBBB"}

    def taken(code: str) -> bool:
        asked.append(code)
        return code in existing

    rng = ScriptedRandom("aaaa", "BbBb", "cccc")
    codes = CodeGenerator(rng).unique(1, spec("px-", 4, True), taken=taken)
    assert codes == ["px-cccc"]
    assert asked == ["PX-AAAA", "PX-BBBB", "PX-CCCC"]


def test_unique_counts_taken_collisions_against_the_budget() -> None:
    rng = ScriptedRandom("AAAA", "AAAA", "AAAA")
    with pytest.raises(CodeSpaceExhausted) as info:
        CodeGenerator(rng).unique(1, spec("", 4), taken=lambda c: c == "AAAA", max_attempts=3)
    assert rng.draws == []
    assert info.value.code == "code_space_exhausted"
    assert isinstance(info.value, ValidationFailed)
    assert [d.field for d in info.value.details] == ["user_ids"]
    assert "code space" in info.value.message


def test_unique_succeeds_on_the_last_attempt_of_the_budget() -> None:
    rng = ScriptedRandom("AAAA", "AAAA", "BBBB")
    codes = CodeGenerator(rng).unique(2, spec("", 4), max_attempts=3)
    assert codes == ["AAAA", "BBBB"]


def test_unique_raises_when_the_budget_runs_out() -> None:
    rng = ScriptedRandom("AAAA", "AAAA", "AAAA", "BBBB")
    with pytest.raises(CodeSpaceExhausted):
        CodeGenerator(rng).unique(2, spec("", 4), max_attempts=3)
    assert rng.draws == ["BBBB"], "no draw beyond the budget"


def test_default_budget_scales_with_count() -> None:
    """count * 20 + 100 draws: a generator stuck on one code gives up after exactly that."""
    rng = ScriptedRandom(*["AAAA"] * 120)
    with pytest.raises(CodeSpaceExhausted):
        CodeGenerator(rng).unique(1, spec("", 4), taken=lambda _: True)
    assert len(rng.calls) == 120


def test_unique_of_zero_draws_nothing() -> None:
    rng = ScriptedRandom()
    assert CodeGenerator(rng).unique(0, spec("", 4)) == []
    assert rng.calls == []


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    count=st.integers(min_value=1, max_value=40),
    prefix=st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=6),
    length=st.integers(min_value=1, max_value=6),
    case_sensitive=st.booleans(),
)
def test_generated_codes_match_prefix_and_alphabet_and_are_unique_ignoring_case(
    seed: int, count: int, prefix: str, length: int, case_sensitive: bool
) -> None:
    # Keep the request within the allowed fill, as the service's capacity check does.
    count = min(count, int(spec(prefix, length).size * MAX_FILL))
    codes = CodeGenerator(SeededRandom(seed)).unique(
        count, spec(prefix, length, case_sensitive), max_attempts=100_000
    )
    assert len(codes) == count
    assert len({normalize(c) for c in codes}) == count
    expected_prefix = prefix if case_sensitive else prefix.upper()
    for code in codes:
        assert code.startswith(expected_prefix)
        assert len(code) == len(prefix) + length
        assert set(code[len(prefix) :]) <= set(alphabet(case_sensitive))
        if not case_sensitive:
            assert code == code.upper()


# --- capacity -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 4])
def test_check_capacity_allows_up_to_max_fill(length: int) -> None:
    limit = int(spec("", length).size * MAX_FILL)
    assert spec("", length).capacity == limit
    check_capacity(spec("", length), existing=0, requested=limit)
    check_capacity(spec("", length), existing=limit - 1, requested=1)
    check_capacity(spec("", length), existing=limit, requested=0)


@pytest.mark.parametrize("length", [1, 2, 4])
def test_check_capacity_refuses_one_beyond_max_fill(length: int) -> None:
    limit = int(spec("", length).size * MAX_FILL)
    with pytest.raises(CodeSpaceExhausted) as info:
        check_capacity(spec("", length), existing=0, requested=limit + 1)
    assert info.value.code == "code_space_exhausted"
    assert [d.field for d in info.value.details] == ["user_ids"]
    assert "code_length" in info.value.message
    with pytest.raises(CodeSpaceExhausted):
        check_capacity(spec("", length), existing=limit, requested=1)


def test_check_capacity_boundary_in_numbers() -> None:
    # 31 ** 2 = 961 codes; half of them, rounded down, may be used.
    check_capacity(spec("X", 2), existing=400, requested=80)
    with pytest.raises(CodeSpaceExhausted):
        check_capacity(spec("X", 2), existing=400, requested=81)


def test_check_capacity_is_no_concern_for_the_default_length() -> None:
    check_capacity(spec("", 8), existing=10_000_000, requested=10_000)


# --- duplicates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], []),
        (["A", "B", "C"], []),
        (["A", "a"], ["a"]),
        (["Summer", "SUMMER", "summer", "Winter"], ["SUMMER"]),
        (["x", "y", "X", "Y", "x"], ["X", "Y"]),
        (["dup", "dup"], ["dup"]),
    ],
)
def test_duplicates_ignoring_case(codes: list[str], expected: list[str]) -> None:
    assert duplicates_ignoring_case(codes) == expected


def test_duplicates_accepts_any_iterable() -> None:
    assert duplicates_ignoring_case(c for c in ["ab", "AB"]) == ["AB"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("acme-shared_1", "ACME-SHARED_1"),
        ("ACME\u017fHARED", "ACME\u017fHARED"),  # str.upper() would fold the long s onto S
        ("straße", "STRAßE"),  # and ß onto SS, changing the length
        ("\ufb01x", "\ufb01X"),  # and the ligature onto FI
        ("\uff58", "\uff58"),  # full-width letters stay as they are
    ],
)
def test_normalize_upper_cases_ascii_letters_only(code: str, expected: str) -> None:
    assert normalize(code) == expected
    assert len(normalize(code)) == len(code)


def test_no_non_ascii_code_normalizes_onto_an_ascii_one() -> None:
    for char in map(chr, range(0x80, 0x3000)):
        assert not normalize("ACME" + char).isascii(), repr(char)
