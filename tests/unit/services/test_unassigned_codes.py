"""Unassigned codes (owned by no user: whoever presents one first redeems it) on the fakes:
each code's own use count (`uses_per_code`) with the definition's usage limit on top, for
redeems and holds alike; a use refused by either limit takes nothing; rollbacks, released
and expired holds give the code's use back."""

from typing import Any

import pytest

from phoenix_coupons.domain.codes import normalize
from phoenix_coupons.domain.config_rules import validated
from phoenix_coupons.domain.errors import ValidationFailed
from schemas.coupons import CouponConfig
from tests.fakes import coupon
from tests.unit.services.given import TENANT
from tests.unit.services.test_reservations import Holds

PER_USER_1 = {"limit_type": "per_user", "max_uses": 1}
GLOBAL_3 = {"limit_type": "global", "max_uses": 3}
UNLIMITED = {"limit_type": "unlimited"}


class Cards(Holds):
    """A definition whose codes are printed on cards: unassigned."""

    def card(self, code: str) -> None:
        self.fk.coupons.add(
            coupon(
                f"k-{code}",
                code,
                TENANT,
                definition_id=self.defn.id,
                reward_item_id=self.reward.item_id,
                kind="unassigned",
                source="bulk",
            )
        )

    async def uses(self, code: str) -> int:
        found = await self.fk.coupons.by_code(TENANT, normalize(code))
        assert found is not None
        return await self.fk.redemptions.active_count(f"c:{found.id}")


async def test_a_card_is_redeemed_once_by_whoever_comes_first() -> None:
    w = Cards(usage_limit=UNLIMITED)
    w.card("CARD-0001")
    assert await w.reason("CARD-0001", "u-1") is None
    await w.redeem("CARD-0001", "u-1")
    assert await w.reason("CARD-0001", "u-2") == "code_limit_reached"
    assert await w.reason("CARD-0001", "u-1") == "code_limit_reached"
    assert await w.uses("CARD-0001") == 1


async def test_uses_per_code_lets_that_many_people_redeem_one_code() -> None:
    w = Cards(usage_limit=UNLIMITED, uses_per_code=3)
    w.card("CARD-0001")
    for user in ("u-1", "u-2", "u-3"):
        await w.redeem("CARD-0001", user)
    assert await w.reason("CARD-0001", "u-4") == "code_limit_reached"


async def test_per_user_limit_holds_across_the_definitions_codes() -> None:
    w = Cards(usage_limit=PER_USER_1)
    w.card("CARD-0001")
    w.card("CARD-0002")
    await w.redeem("CARD-0001", "u-1")
    # The second card is refused to u-1 by the definition's limit, and its use stays free.
    assert await w.reason("CARD-0002", "u-1") == "per_user_limit_reached"
    assert await w.uses("CARD-0002") == 0
    await w.redeem("CARD-0002", "u-2")
    assert await w.uses("CARD-0002") == 1


async def test_global_limit_holds_across_the_definitions_codes() -> None:
    w = Cards(usage_limit=GLOBAL_3, uses_per_code=2)
    for n in range(3):
        w.card(f"CARD-000{n}")
    await w.redeem("CARD-0000", "u-1")
    await w.redeem("CARD-0000", "u-2")
    await w.redeem("CARD-0001", "u-3")
    assert await w.reason("CARD-0002", "u-4") == "global_limit_reached"
    assert await w.uses("CARD-0002") == 0  # refused by the definition: the code's use given back


async def test_a_rollback_gives_the_codes_use_back_unless_the_definition_keeps_it() -> None:
    w = Cards(usage_limit=UNLIMITED)
    w.card("CARD-0001")
    first = await w.redeem("CARD-0001", "u-1")
    await w.service.rollback(TENANT, first)
    assert await w.uses("CARD-0001") == 0
    await w.redeem("CARD-0001", "u-2")

    kept = Cards(usage_limit=UNLIMITED, rollback_restores_use=False)
    kept.card("CARD-0002")
    done = await kept.redeem("CARD-0002", "u-1")
    await kept.service.rollback(TENANT, done)
    assert await kept.reason("CARD-0002", "u-2") == "code_limit_reached"


async def test_a_hold_on_a_card_keeps_it_from_others_until_released_or_over() -> None:
    w = Cards(usage_limit=UNLIMITED)
    w.card("CARD-0001")
    hold = await w.reserve("CARD-0001", "u-1", ttl=60)
    assert await w.refusal("CARD-0001", "u-2", reserve=False) == "code_limit_reached"
    await w.holds.release(TENANT, hold, "key-1")
    assert await w.uses("CARD-0001") == 0
    hold = await w.reserve("CARD-0001", "u-2", ttl=60)
    w.fk.clock.advance(seconds=60)  # over: the code's use is free without a sweep
    assert await w.reason("CARD-0001", "u-3") is None
    await w.redeem("CARD-0001", "u-3")
    assert await w.uses("CARD-0001") == 1


async def test_a_confirmed_hold_on_a_card_is_its_one_use() -> None:
    w = Cards(usage_limit=PER_USER_1)
    w.card("CARD-0001")
    hold = await w.reserve("CARD-0001", "u-1")
    view, new = await w.holds.confirm(TENANT, hold, "key-1")
    assert new and view.coupon.kind == "unassigned"
    assert await w.uses("CARD-0001") == 1
    assert await w.reason("CARD-0001", "u-2") == "code_limit_reached"
    await w.service.rollback(TENANT, view.redemption_id)
    assert await w.uses("CARD-0001") == 0


async def test_a_hold_refused_by_the_definition_leaves_the_code_free() -> None:
    w = Cards(usage_limit=PER_USER_1)
    w.card("CARD-0001")
    w.card("CARD-0002")
    await w.redeem("CARD-0001", "u-1")
    assert await w.refusal("CARD-0002", "u-1") == "per_user_limit_reached"
    assert await w.uses("CARD-0002") == 0


def test_uses_per_code_is_for_random_codes_and_at_least_one() -> None:
    def config(**fields: Any) -> CouponConfig:
        return CouponConfig.model_validate(
            {
                "reward_item_id": "0b3c8a5e-1f2d-4c6b-9a7e-5d4f3c2b1a09",
                "code_format": "random",
                "usage_limit": UNLIMITED,
                **fields,
            }
        )

    assert validated(config(uses_per_code=5)).uses_per_code == 5
    with pytest.raises(ValidationFailed) as low:
        validated(config(uses_per_code=0))
    assert low.value.details[0].field == "config.uses_per_code"
    with pytest.raises(ValidationFailed) as custom:
        validated(config(uses_per_code=2, code_format="custom", custom_code="SUMMER"))
    assert custom.value.details[0].field == "config.uses_per_code"
