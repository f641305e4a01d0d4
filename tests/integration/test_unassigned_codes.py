"""Unassigned codes on the embedded servers, through the HTTP API: one code redeemed exactly
once under 100 concurrent redeems by 100 users (a `global` limit of 1, and a code's own limit
alone); a code's `uses_per_code` and the definition's limit together under concurrent
redeems and holds; the kept counts and slots agreeing after; a crash between the code's
slot and the redemption left to the sweep."""

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.mongo_schema import REDEMPTION_SLOTS
from phoenix_coupons.adapters.redemption_repo import MongoRedemptionRepo, sweep_slots, to_doc
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.codes import normalize
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.redemption import Redemption
from schemas.coupons import CouponDefinition
from schemas.redemptions import Coupon as Snapshot
from schemas.rewards import RewardItem
from tests.integration.test_redemption import refused
from tests.integration.test_reservations import held_slots

Json = dict[str, Any]


class Cards:
    """A random-format definition of the test's tenant and its unassigned codes."""

    def __init__(self, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]) -> None:
        self.client, self.tenant, self.headers = client, tenant, headers
        self.base = f"/v1/tenants/{tenant}/coupons"
        self.defn: Json = {}

    async def define(self, reward: Json, limit: Json, **config: Any) -> None:
        body = {
            "name": "printed cards",
            "config": {
                "reward_item_id": reward["item_id"],
                "code_format": "random",
                "code_prefix": "CARD-",
                "usage_limit": limit,
                **config,
            },
        }
        response = await self.client.post(self.base, json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        self.defn = response.json()

    async def print(self, container: Container, count: int) -> list[str]:
        """`count` unassigned codes of the definition, stored as a generation job stores them."""
        defn = CouponDefinition.model_validate(
            {k: self.defn[k] for k in CouponDefinition.model_fields}
        )
        make = CouponFactory.of(defn, "bulk")
        now = container.clock()
        cards = [
            make.coupon(f"test:{uuid.uuid4()}", f"CARD-{uuid.uuid4().hex[:10].upper()}", now)
            for _ in range(count)
        ]
        assert all(c.kind == "unassigned" and c.user_id is None for c in cards)
        assert await MongoCouponRepo(container.mongo).insert_unordered(cards) == []
        return [c.code for c in cards]

    async def post(self, path: str, body: Json) -> httpx.Response:
        return await self.client.post(f"{self.base}/{path}", json=body, headers=self.headers)

    async def redeem(self, code: str, user: str) -> httpx.Response:
        return await self.post("redeem", {"code": code, "user_id": user})

    async def reserve(self, code: str, user: str) -> httpx.Response:
        return await self.post("reserve", {"code": code, "user_id": user, "ttl_seconds": 600})


@pytest.fixture
def cards(client: httpx.AsyncClient, admin: Json, tenant: str) -> Cards:
    return Cards(client, tenant, admin["headers"])


async def coupon_id(container: Container, tenant: str, code: str) -> str:
    found = await MongoCouponRepo(container.mongo).by_code(tenant, normalize(code))
    assert found is not None
    return found.id


@pytest.mark.parametrize(
    "limit",
    [{"limit_type": "global", "max_uses": 1}, {"limit_type": "unlimited"}],
    ids=["global-1", "code-limit-alone"],
)
async def test_one_card_under_100_concurrent_redeems_by_100_users_is_redeemed_once(
    cards: Cards, container: Container, reward: Json, limit: Json
) -> None:
    await cards.define(reward, limit)
    (code,) = await cards.print(container, 1)
    answers = await asyncio.gather(*(cards.redeem(code, f"user-{n}") for n in range(100)))
    won = [a for a in answers if a.status_code == 201]
    assert len(won) == 1, Counter(a.status_code for a in answers)
    assert won[0].json()["coupon"]["kind"] == "unassigned"
    for lost in answers:
        if lost.status_code != 201:
            # The code is used up first (its own slot is claimed before the definition's).
            refused(lost, 409, "code_limit_reached")
    own = f"c:{await coupon_id(container, cards.tenant, code)}"
    assert await held_slots(container, own) == (1, 1)
    if limit["limit_type"] == "global":
        assert await held_slots(container, f"g:{cards.defn['id']}") == (1, 1)


async def test_codes_and_definition_limits_together_under_concurrent_redeems_and_holds(
    cards: Cards, container: Container, reward: Json
) -> None:
    """Five codes of 3 uses each (15) under a global limit of 7: 60 users, each trying a
    code by redeem or hold at once. Exactly 7 win, no code more than 3 times, and every
    refused use took nothing: the slots and kept counts agree."""
    await cards.define(reward, {"limit_type": "global", "max_uses": 7}, uses_per_code=3)
    codes = await cards.print(container, 5)
    tries = [
        (cards.reserve if n % 3 == 0 else cards.redeem)(codes[n % 5], f"user-{n}")
        for n in range(60)
    ]
    answers = await asyncio.gather(*tries)
    won = [a.json() for a in answers if a.status_code == 201]
    assert len(won) == 7, Counter(a.status_code for a in answers)
    per_code = Counter(w["coupon"]["code"] for w in won)
    assert max(per_code.values()) <= 3
    for a in answers:
        if a.status_code != 201:
            assert a.json()["error"] in ("code_limit_reached", "global_limit_reached"), a.text
    assert await held_slots(container, f"g:{cards.defn['id']}") == (7, 7)
    for code in codes:
        slots = await held_slots(container, f"c:{await coupon_id(container, cards.tenant, code)}")
        assert slots == (per_code[code], per_code[code])


async def test_a_rollback_frees_the_card_for_the_next_user(
    cards: Cards, container: Container, reward: Json
) -> None:
    await cards.define(reward, {"limit_type": "per_user", "max_uses": 1})
    (code,) = await cards.print(container, 1)
    first = await cards.redeem(code, "alice")
    assert first.status_code == 201, first.text
    refused(await cards.redeem(code, "bob"), 409, "code_limit_reached")
    back = await cards.post(f"redemptions/{first.json()['redemption_id']}/rollback", {})
    assert back.status_code == 200, back.text
    assert (await cards.redeem(code, "bob")).status_code == 201
    own = f"c:{await coupon_id(container, cards.tenant, code)}"
    assert await held_slots(container, own) == (1, 1)


async def test_a_crash_between_the_codes_slot_and_the_redemption_is_settled_by_the_sweep(
    cards: Cards, container: Container, reward: Json
) -> None:
    """A redeem that claimed the code's slot and died before storing its redemption holds
    the code only until the sweep's grace; one that stored it keeps it, confirmed."""
    await cards.define(reward, {"limit_type": "unlimited"})
    dead, alive = await cards.print(container, 2)
    repo = MongoRedemptionRepo(container.mongo)
    now = container.clock()
    for code in (dead, alive):
        cid = await coupon_id(container, cards.tenant, code)
        r = await redemption_of(cards, container, code, cid)
        await repo.claim_code_slot(r, f"c:{cid}", f"c:{cid}#1", 1, None)
        if code == alive:  # stored, and the process died before confirming the slot
            await container.mongo.redemptions.insert_one(to_doc(r, f"free:{r.id}", None))
    refused(await cards.redeem(dead, "bob"), 409, "code_limit_reached")
    await sweep_slots(container.mongo, now + timedelta(minutes=5), timedelta(seconds=60))
    slots = container.mongo.db[REDEMPTION_SLOTS.name]
    dead_id = await coupon_id(container, cards.tenant, dead)
    alive_id = await coupon_id(container, cards.tenant, alive)
    assert await slots.find_one({"_id": f"c:{dead_id}#1"}) is None
    kept = await slots.find_one({"_id": f"c:{alive_id}#1"})
    assert kept is not None and "unconfirmed" not in kept
    assert (await cards.redeem(dead, "bob")).status_code == 201
    refused(await cards.redeem(alive, "bob"), 409, "code_limit_reached")


async def redemption_of(cards: Cards, container: Container, code: str, cid: str) -> Redemption:
    """A redemption of `code` as the service builds one (its coupon and reward as stored)."""
    answer = await cards.post("validate", {"code": code, "user_id": "crashing"})
    body = answer.json()
    return Redemption(
        id=str(uuid.uuid4()),
        tenant_id=cards.tenant,
        user_id="crashing",
        group=f"n:{cards.defn['id']}",
        state="redeemed",
        redeemed_at=container.clock(),
        coupon=Snapshot.model_validate(body["coupon"]),
        reward=RewardItem.model_validate(body["reward"]),
        code_slot=f"c:{cid}#1",
    )
