"""Validate, redeem and roll back (services/redemptions.py) on the fakes: the refusals,
usage limits per user and global (slots), keyed redeems and rollbacks, with the clock set."""

from datetime import timedelta
from typing import Any

import pytest

from phoenix_coupons.domain.errors import (
    CodeNotFound,
    Conflict,
    NotFound,
    Refused,
    ValidationFailed,
)
from phoenix_coupons.services.redemptions import RedemptionService
from schemas.coupons import CouponDefinition
from schemas.redemptions import RedeemRequest
from schemas.rewards import RewardItem
from tests.fakes import Fakes, coupon
from tests.unit.services import given
from tests.unit.services.given import TENANT

CALLER = "key-1"


class World:
    """A tenant with one reward and one definition, and the service over them."""

    def __init__(self, status: str = "active", **config: Any) -> None:
        self.fk = Fakes()
        self.reward: RewardItem = given.reward(self.fk)
        self.defn: CouponDefinition = given.definition(
            self.fk, self.reward.item_id, status=status, **config
        )
        self.announced = 0
        self.service = RedemptionService(
            self.fk.coupons,
            self.fk.definitions,
            self.fk.rewards,
            self.fk.redemptions,
            self.fk.clock,
            self._redeemed,
            self.fk.lookups,
            self.fk.outbox,
        )

    def _redeemed(self) -> None:
        self.announced += 1

    def issue(self, code: str, user: str | None = "u-1", **fields: Any) -> None:
        """A coupon of the definition (`user` None: its shared code)."""
        shared = user is None
        self.fk.coupons.add(
            coupon(
                f"k-{code}",
                code,
                TENANT,
                definition_id=self.defn.id,
                reward_item_id=self.reward.item_id,
                user_id=user,
                kind="shared" if shared else "issued",
                source="definition" if shared else "bulk",
                **fields,
            )
        )

    async def reason(self, code: str, user: str = "u-1") -> str | None:
        """What validate says, and that redeem refuses with the same reason."""
        body = RedeemRequest(code=code, user_id=user)
        answer = await self.service.validate(TENANT, body, CALLER)
        if answer.reason is not None:
            with pytest.raises((Refused, CodeNotFound)) as refused:
                await self.service.redeem(TENANT, body, CALLER)
            assert refused.value.code == answer.reason
        return answer.reason

    async def redeem(self, code: str, user: str = "u-1", key: str | None = None) -> str:
        view, _ = await self.service.redeem(
            TENANT, RedeemRequest(code=code, user_id=user), CALLER, key
        )
        return view.redemption_id


# --- the rules, validate and redeem alike ---------------------------------------------------


async def test_a_valid_code_validates_and_redeems_once_per_user() -> None:
    w = World()
    w.issue("WIN-AAAA")
    answer = await w.service.validate(TENANT, RedeemRequest(code="win-aaaa", user_id="u-1"), CALLER)
    assert (answer.valid, answer.reason, answer.reward) == (True, None, w.reward)
    assert answer.coupon is not None and answer.coupon.code == "WIN-AAAA"
    view, new = await w.service.redeem(
        TENANT, RedeemRequest(code="win-aaaa", user_id="u-1"), CALLER
    )
    assert (new, view.status, view.redeemed_at, view.reward) == (
        True,
        "redeemed",
        w.fk.clock(),
        w.reward,
    )
    assert w.announced == 1
    assert await w.reason("WIN-AAAA") == "per_user_limit_reached"


async def test_a_window_refuses_before_it_starts_and_from_its_end() -> None:
    now = Fakes().clock()
    w = World(starts_at=now + timedelta(hours=1), expires_at=now + timedelta(days=1))
    w.issue("WIN-AAAA")
    assert await w.reason("WIN-AAAA") == "not_yet_valid"
    w.fk.clock.advance(hours=1)
    assert await w.reason("WIN-AAAA") is None
    w.fk.clock.advance(hours=23)
    assert await w.reason("WIN-AAAA") == "expired"


@pytest.mark.parametrize(
    ("status", "reason"), [("paused", "definition_paused"), ("archived", "definition_archived")]
)
async def test_a_paused_or_archived_definition_refuses(status: str, reason: str) -> None:
    w = World(status=status)
    w.issue("WIN-AAAA")
    assert await w.reason("WIN-AAAA") == reason


async def test_an_issued_code_is_its_user_s_a_shared_one_anyone_s() -> None:
    w = World()
    w.issue("WIN-AAAA", user="u-1")
    w.issue("SUMMER", user=None)
    assert await w.reason("WIN-AAAA", user="u-2") == "not_owner"
    assert await w.reason("SUMMER", user="u-2") is None
    assert await w.reason("SUMMER", user="u-3") is None


async def test_a_revoked_code_refuses() -> None:
    w = World()
    w.issue("WIN-AAAA")
    await w.fk.coupons.revoke(TENANT, "WIN-AAAA", w.fk.clock())
    assert await w.reason("WIN-AAAA") == "coupon_revoked"


async def test_a_case_sensitive_definition_wants_the_exact_code() -> None:
    w = World(case_sensitive=True)
    w.issue("WIN-aBcD")
    assert await w.reason("WIN-abcd") == "code_not_found"
    assert await w.reason("WIN-aBcD") is None


async def test_another_tenant_s_code_is_not_found() -> None:
    w = World()
    w.fk.coupons.add(coupon("k-x", "WIN-AAAA", given.OTHER_TENANT, user_id="u-1"))
    assert await w.reason("WIN-AAAA") == "code_not_found"


async def test_unknown_codes_count_against_the_caller_s_look_up_limit() -> None:
    """Each code not found is reported against the caller in the tenant (the refusal at the
    limit is the API's, before the call: tests/integration/test_lookup_limit.py)."""
    w = World()
    w.issue("WIN-AAAA")
    assert await w.reason("WIN-ZZZZ") == "code_not_found"  # validate and redeem: two failures
    answer = await w.service.validate(TENANT, RedeemRequest(code="WIN-AAAA", user_id="u-1"), CALLER)
    assert answer.valid  # a hit is not counted
    assert w.fk.lookups.failures == {(CALLER, TENANT): 2}


async def test_the_reward_granted_now_is_the_definition_s_current_one() -> None:
    w = World()
    w.issue("WIN-AAAA")
    newer = given.reward(w.fk, name="200 points")
    w.fk.definitions.add(
        w.defn.model_copy(
            update={"config": w.defn.config.model_copy(update={"reward_item_id": newer.item_id})}
        )
    )
    view, _ = await w.service.redeem(TENANT, RedeemRequest(code="WIN-AAAA", user_id="u-1"), CALLER)
    assert view.reward == newer


# --- usage limits ---------------------------------------------------------------------------


async def test_a_per_user_limit_counts_each_user_apart() -> None:
    w = World(usage_limit={"limit_type": "per_user", "max_uses": 2})
    w.issue("SUMMER", user=None)
    for _ in range(2):
        await w.redeem("SUMMER", "u-1")
    assert await w.reason("SUMMER", "u-1") == "per_user_limit_reached"
    assert await w.reason("SUMMER", "u-2") is None


@pytest.mark.parametrize("limit", [2, 6])  # tried in order; past SMALL_LIMIT, from a hint
async def test_a_global_limit_is_exact_and_a_rollback_gives_a_use_back(limit: int) -> None:
    w = World(usage_limit={"limit_type": "global", "max_uses": limit})
    w.issue("SUMMER", user=None)
    ids = [await w.redeem("SUMMER", f"u-{i}") for i in range(limit)]
    assert await w.reason("SUMMER", "u-late") == "global_limit_reached"
    await w.service.rollback(TENANT, ids[0])
    await w.redeem("SUMMER", "u-late")
    assert await w.reason("SUMMER", "u-later") == "global_limit_reached"
    assert w.announced == limit + 2  # each redemption and the rollback


async def test_unlimited_never_refuses_for_uses() -> None:
    w = World(usage_limit={"limit_type": "unlimited"})
    w.issue("SUMMER", user=None)
    for _ in range(5):
        await w.redeem("SUMMER", "u-1")
    assert await w.reason("SUMMER", "u-1") is None


# --- keyed redeems and rollbacks ------------------------------------------------------------


async def test_a_keyed_redeem_replays_its_redemption_even_at_the_limit() -> None:
    w = World()
    w.issue("WIN-AAAA")
    body = RedeemRequest(code="WIN-AAAA", user_id="u-1")
    first, new = await w.service.redeem(TENANT, body, CALLER, "idem-1")
    again, new_again = await w.service.redeem(TENANT, body, CALLER, "idem-1")
    assert (new, new_again) == (True, False)
    assert again == first
    assert w.announced == 1
    assert len(w.fk.redemptions.rows) == 1


async def test_a_redeem_key_reused_with_another_body_is_refused_naming_the_header() -> None:
    w = World()
    w.issue("WIN-AAAA")
    w.issue("WIN-BBBB")
    await w.redeem("WIN-AAAA", key="idem-1")
    with pytest.raises(ValidationFailed) as caught:
        await w.redeem("WIN-BBBB", key="idem-1")
    assert caught.value.code == "idempotency_key_reused"
    assert [d.field for d in caught.value.details] == ["Idempotency-Key"]


async def test_a_rollback_happens_once_and_only_to_a_known_redemption() -> None:
    w = World()
    w.issue("WIN-AAAA")
    rid = await w.redeem("WIN-AAAA")
    w.fk.clock.advance(minutes=5)
    view = await w.service.rollback(TENANT, rid)
    assert (view.status, view.rolled_back_at) == ("rolled_back", w.fk.clock())
    with pytest.raises(Conflict) as twice:
        await w.service.rollback(TENANT, rid)
    assert twice.value.code == "already_rolled_back"
    with pytest.raises(NotFound) as unknown:
        await w.service.rollback(TENANT, "no-such-redemption")
    assert unknown.value.code == "redemption_not_found"
    with pytest.raises(NotFound):  # another tenant's redemption is not found
        await w.service.rollback(given.OTHER_TENANT, rid)
    assert await w.reason("WIN-AAAA") is None  # the use came back


# --- the outbox -----------------------------------------------------------------------------


async def test_a_redeem_and_its_rollback_are_announced_through_the_outbox_in_order() -> None:
    w = World()
    w.issue("WIN-AAAA")
    rid = await w.redeem("WIN-AAAA")
    [entry] = w.fk.outbox.in_state("ready")
    assert (entry.event.event_type, entry.subject.id, entry.after) == ("coupon.redeemed", rid, None)
    await w.service.rollback(TENANT, rid)
    back = next(e for e in w.fk.outbox.in_state("ready") if e.id != entry.id)
    assert back.event.event_type == "coupon.redemption_rolled_back"
    assert (back.after, back.subject.state) == (entry.id, "rolled_back")
    assert w.fk.outbox.in_state("prepared") == []


async def test_a_refused_redeem_leaves_no_outbox_entry() -> None:
    w = World()
    w.issue("WIN-AAAA")
    await w.redeem("WIN-AAAA")
    with pytest.raises(Refused):
        await w.redeem("WIN-AAAA")
    assert len(w.fk.outbox.entries) == 1
    assert w.fk.outbox.in_state("prepared") == []
