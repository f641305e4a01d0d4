"""Redemption rules, judged by the pure domain: why a redeem is refused (and in which
order the reasons are checked), the time window's edges, case rules of codes, which usage group
a redemption counts against, and the uses left. The clock is a plain `now` argument."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest

from phoenix_coupons.domain.errors import CodeNotFound, Refused
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.redemption import (
    UsageGroup,
    code_matches,
    free_slot,
    refusal,
    refused,
    remaining,
    usage_group,
)
from schemas.coupons import CouponDefinition
from schemas.redemptions import REFUSALS, RefusalReason

STARTS = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
EXPIRES = datetime(2030, 7, 1, 12, 0, tzinfo=UTC)
INSIDE = datetime(2030, 6, 15, tzinfo=UTC)
MICRO = timedelta(microseconds=1)


def definition(
    *,
    id: str = "def-1",
    status: str = "active",
    case_sensitive: bool = False,
    starts_at: datetime | None = STARTS,
    expires_at: datetime | None = EXPIRES,
    limit: dict[str, Any] | None = None,
) -> CouponDefinition:
    config: dict[str, Any] = {
        "reward_item_id": "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b",
        "code_format": "random",
        "code_length": 8,
        "case_sensitive": case_sensitive,
        "starts_at": starts_at,
        "expires_at": expires_at,
        "usage_limit": limit or {"limit_type": "per_user", "max_uses": 1},
    }
    return CouponDefinition.model_validate(
        {
            "id": id,
            "tenant_id": "tenant-1",
            "name": "Summer",
            "description": None,
            "config": config,
            "status": status,
            "created_at": STARTS - timedelta(days=10),
            "updated_at": STARTS - timedelta(days=10),
        }
    )


def coupon(
    code: str = "SUMMER-AbC9",
    *,
    kind: str = "issued",
    user_id: str | None = "alice",
    status: str = "active",
) -> Coupon:
    return Coupon(
        id="coupon-1",
        tenant_id="tenant-1",
        definition_id="def-1",
        reward_item_id="3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b",
        code=code,
        code_norm=code.upper(),
        kind=kind,  # type: ignore[arg-type]
        source="bulk" if kind == "issued" else "definition",
        issue_key="bulk:coupon-1",
        issued_at=STARTS - timedelta(days=1),
        user_id=user_id,
        status=status,  # type: ignore[arg-type]
    )


# --- refusal: every reason, and the order they are checked in ------------------------------


def test_an_active_owned_coupon_inside_its_window_is_redeemable_by_its_owner() -> None:
    assert refusal(coupon(), definition(), "alice", INSIDE) is None


def test_a_shared_code_is_redeemable_by_any_user() -> None:
    shared = coupon(kind="shared", user_id=None)
    for user in ("alice", "bob", "someone-else"):
        assert refusal(shared, definition(), user, INSIDE) is None


def test_a_definition_without_window_is_valid_at_any_time() -> None:
    open_ended = definition(starts_at=None, expires_at=None)
    for now in (datetime(1999, 1, 1, tzinfo=UTC), datetime(2999, 1, 1, tzinfo=UTC)):
        assert refusal(coupon(), open_ended, "alice", now) is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"coupon_status": "revoked"}, "coupon_revoked"),
        ({"status": "archived"}, "definition_archived"),
        ({"status": "paused"}, "definition_paused"),
        ({"now": STARTS - timedelta(days=1)}, "not_yet_valid"),
        ({"now": EXPIRES + timedelta(days=1)}, "expired"),
        ({"user": "bob"}, "not_owner"),
    ],
)
def test_each_reason_alone(changes: dict[str, Any], expected: str) -> None:
    c = coupon(status=changes.get("coupon_status", "active"))
    d = definition(status=changes.get("status", "active"))
    assert refusal(c, d, changes.get("user", "alice"), changes.get("now", INSIDE)) == expected


def test_refusal_order_revoked_archived_paused_window_owner() -> None:
    """With every rule broken at once, each reason shows only once the ones before it are
    cured: coupon_revoked, definition_archived, definition_paused, the time window, not_owner."""
    before, after = STARTS - MICRO, EXPIRES
    c, d = coupon(status="revoked"), definition(status="archived")
    assert refusal(c, d, "bob", before) == "coupon_revoked"
    assert refusal(c, d, "bob", after) == "coupon_revoked"
    c = replace(c, status="active")
    assert refusal(c, d, "bob", before) == "definition_archived"
    d = definition(status="paused")
    assert refusal(c, d, "bob", before) == "definition_paused"
    assert refusal(c, d, "bob", after) == "definition_paused"
    d = definition()
    assert refusal(c, d, "bob", before) == "not_yet_valid"
    assert refusal(c, d, "bob", after) == "expired"
    assert refusal(c, d, "bob", INSIDE) == "not_owner"
    assert refusal(c, d, "alice", INSIDE) is None


def test_a_revoked_shared_code_is_refused_for_everyone() -> None:
    shared = coupon(kind="shared", user_id=None, status="revoked")
    assert refusal(shared, definition(), "alice", INSIDE) == "coupon_revoked"


def test_not_owner_compares_user_ids_exactly() -> None:
    assert refusal(coupon(user_id="alice"), definition(), "Alice", INSIDE) == "not_owner"
    assert refusal(coupon(user_id="alice"), definition(), "alice ", INSIDE) == "not_owner"


# --- time window edges: starts_at inclusive, expires_at exclusive --------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (STARTS - MICRO, "not_yet_valid"),
        (STARTS, None),
        (STARTS + MICRO, None),
        (EXPIRES - MICRO, None),
        (EXPIRES, "expired"),
        (EXPIRES + MICRO, "expired"),
    ],
)
def test_time_window_edges(now: datetime, expected: str | None) -> None:
    assert refusal(coupon(), definition(), "alice", now) == expected


def test_only_starts_at_or_only_expires_at() -> None:
    only_start = definition(expires_at=None)
    assert refusal(coupon(), only_start, "alice", STARTS - MICRO) == "not_yet_valid"
    assert refusal(coupon(), only_start, "alice", datetime(2999, 1, 1, tzinfo=UTC)) is None
    only_end = definition(starts_at=None)
    assert refusal(coupon(), only_end, "alice", datetime(1999, 1, 1, tzinfo=UTC)) is None
    assert refusal(coupon(), only_end, "alice", EXPIRES) == "expired"


def test_window_edges_hold_across_time_zones() -> None:
    """starts_at is stored in UTC; a `now` in another offset is the same instant."""
    plus_two = timezone(timedelta(hours=2))
    assert refusal(coupon(), definition(), "alice", STARTS.astimezone(plus_two)) is None
    assert (
        refusal(coupon(), definition(), "alice", (STARTS - MICRO).astimezone(plus_two))
        == "not_yet_valid"
    )
    assert refusal(coupon(), definition(), "alice", EXPIRES.astimezone(plus_two)) == "expired"


# --- code_matches: case rules ---------------------------------------------------------------


@pytest.mark.parametrize("typed", ["SUMMER-AbC9", "summer-abc9", "SUMMER-ABC9", "sUmMeR-aBc9"])
def test_a_case_insensitive_definition_matches_any_case(typed: str) -> None:
    assert code_matches(coupon("SUMMER-AbC9"), definition(case_sensitive=False), typed)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("SUMMER-AbC9", True),
        ("summer-abc9", False),
        ("SUMMER-ABC9", False),
        ("SUMMER-aBC9", False),
    ],
)
def test_a_case_sensitive_definition_wants_the_exact_code(typed: str, expected: bool) -> None:
    assert code_matches(coupon("SUMMER-AbC9"), definition(case_sensitive=True), typed) is expected


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_another_code_never_matches(case_sensitive: bool) -> None:
    d = definition(case_sensitive=case_sensitive)
    for typed in ("SUMMER-AbC8", "SUMMER-AbC9 ", "SUMMER-AbC", ""):
        assert not code_matches(coupon("SUMMER-AbC9"), d, typed)


# --- usage groups and slots -----------------------------------------------------------------


def test_per_user_groups_one_user_across_the_definition() -> None:
    d = definition(limit={"limit_type": "per_user", "max_uses": 3})
    alice = usage_group(d, "alice")
    assert alice == usage_group(d, "alice")
    assert alice.limit == 3
    assert alice.refusal == "per_user_limit_reached"
    assert usage_group(d, "bob").key != alice.key
    assert usage_group(d, "Alice").key != alice.key
    other_definition = definition(id="def-2", limit={"limit_type": "per_user", "max_uses": 3})
    assert usage_group(other_definition, "alice").key != alice.key


def test_per_user_keys_stay_short_and_distinct_for_any_user_id() -> None:
    d = definition(limit={"limit_type": "per_user", "max_uses": 1})
    long_id, tricky = "u" * 255, "a:b#1"
    keys = {usage_group(d, u).key for u in (long_id, tricky, "a", "b#1", "a:b")}
    assert len(keys) == 5
    assert all(len(k) < 80 for k in keys)
    assert all("#" not in k for k in keys)  # a slot suffix can never be mistaken for a user


def test_global_groups_every_user_of_the_definition_together() -> None:
    d = definition(limit={"limit_type": "global", "max_uses": 10})
    alice, bob = usage_group(d, "alice"), usage_group(d, "bob")
    assert alice == bob
    assert alice.limit == 10
    assert alice.refusal == "global_limit_reached"
    other = definition(id="def-2", limit={"limit_type": "global", "max_uses": 10})
    assert usage_group(other, "alice").key != alice.key


def test_unlimited_has_no_limit() -> None:
    group = usage_group(definition(limit={"limit_type": "unlimited"}), "alice")
    assert group.limit is None
    assert group == usage_group(definition(limit={"limit_type": "unlimited"}), "bob")


def test_slots_are_numbered_within_their_group_and_free_slots_are_per_redemption() -> None:
    group = UsageGroup("g:def-1", 2, "global_limit_reached")
    assert group.slot(1) == "g:def-1#1"
    assert group.slot(2) != group.slot(1)
    other = UsageGroup("g:def-2", 2, "global_limit_reached")
    assert other.slot(1) != group.slot(1)
    assert free_slot("r-1") != free_slot("r-2")
    assert free_slot("r-1") not in {group.slot(n) for n in range(1, 3)}


# --- remaining uses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "used", "expected"),
    [(None, 0, None), (None, 99, None), (3, 0, 3), (3, 2, 1), (3, 3, 0), (3, 5, 0), (1, 0, 1)],
)
def test_remaining(limit: int | None, used: int, expected: int | None) -> None:
    assert remaining(limit, used) == expected


# --- refusal reasons: one list, the messages beside it ---------------------------------------


def test_each_refusal_reason_has_its_message_and_error() -> None:
    reasons = get_args(RefusalReason)
    assert list(REFUSALS) == list(reasons)
    for reason in reasons:
        error = refused(reason)
        assert (error.code, error.message) == (reason, REFUSALS[reason])
        expected = CodeNotFound if reason == "code_not_found" else Refused
        assert type(error) is expected
