"""Parsing the `--scopes a,b` option of `api-key create`."""

import pytest

from phoenix_coupons.domain.scopes import (
    ALL_SCOPES,
    COUPONS_READ,
    COUPONS_REDEEM,
    COUPONS_WRITE,
    REWARDS_READ,
    REWARDS_WRITE,
    parse_scopes,
)


def test_known_scopes() -> None:
    assert {
        "coupons:read",
        "coupons:write",
        "coupons:redeem",
        "rewards:read",
        "rewards:write",
    } == ALL_SCOPES


def test_parse_keeps_order() -> None:
    assert parse_scopes("coupons:write,coupons:read") == (COUPONS_WRITE, COUPONS_READ)


def test_parse_single_scope() -> None:
    assert parse_scopes("rewards:read") == (REWARDS_READ,)


def test_parse_strips_blanks_and_empty_items_and_drops_repeats() -> None:
    text = " coupons:read , ,rewards:write,coupons:read,, coupons:redeem "
    assert parse_scopes(text) == (COUPONS_READ, REWARDS_WRITE, COUPONS_REDEEM)


def test_parse_all_scopes() -> None:
    assert set(parse_scopes(",".join(sorted(ALL_SCOPES)))) == ALL_SCOPES


@pytest.mark.parametrize("text", ["coupons:admin", "coupons:read,bogus", "COUPONS:READ"])
def test_unknown_scopes_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="unknown scopes") as info:
        parse_scopes(text)
    message = str(info.value)
    for scope in text.split(","):
        if scope not in ALL_SCOPES:
            assert scope in message
    assert "coupons:read" in message  # the known ones are listed


def test_unknown_scopes_are_listed_sorted() -> None:
    with pytest.raises(ValueError, match="unknown scopes: a, b "):
        parse_scopes("b,coupons:read,a")


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_no_scope_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="at least one scope"):
        parse_scopes(text)
