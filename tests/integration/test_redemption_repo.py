"""The redemption repository speaks domain records; its rows (the slot, the flat copies the
indexes read, the outbox fields) are laid out by the adapter alone."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo_schema import REDEMPTION_SLOTS
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.adapters.redemption_repo import MongoRedemptionRepo, sweep_slots, uses_key
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.errors import SlotTaken
from phoenix_coupons.domain.redemption import Redemption, free_slot
from schemas.redemptions import Coupon as CouponSnapshot
from schemas.rewards import RewardItem

AT = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def redemption(tenant: str, coupon_id: str, at: datetime = AT) -> Redemption:
    coupon = CouponSnapshot(
        id=coupon_id,
        tenant_id=tenant,
        definition_id="def-1",
        reward_item_id="reward-1",
        code="SUMMER-ABC",
        kind="issued",
        source="bulk",
        user_id="alice",
        status="active",
        issued_at=AT - timedelta(days=1),
    )
    reward = RewardItem(
        item_id="reward-1",
        tenant_id=tenant,
        name="Free coffee",
        description=None,
        reward_type="voucher",
        payload={"size": "large", "at": "counter"},
        created_at=AT - timedelta(days=9),
        updated_at=AT - timedelta(days=2),
    )
    return Redemption(
        id=str(uuid.uuid4()),
        tenant_id=tenant,
        user_id="alice",
        group="g:def-1",
        state="redeemed",
        redeemed_at=at,
        coupon=coupon,
        reward=reward,
        request_hash="0" * 64,
    )


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def test_a_redemption_is_stored_and_read_back_as_it_was(
    container: Container, tenant: str
) -> None:
    repo = MongoRedemptionRepo(container.mongo)
    made = redemption(tenant, "coupon-1")
    await repo.insert(made, "g:def-1#1", 1)
    assert await repo.get(tenant, made.id) == made
    assert await repo.get("another-tenant", made.id) is None
    assert await repo.used_slots("g:def-1") >= {1}
    row = await container.mongo.redemptions.find_one({"_id": made.id})
    assert row is not None
    # The adapter's own fields: the slot, flat copies for the indexes, both outboxes.
    assert (row["slot"], row["slot_no"], row["coupon_id"], row["code"]) == (
        "g:def-1#1",
        1,
        "coupon-1",
        "SUMMER-ABC",
    )
    assert not {k for k in row if "publish" in k}, "events wait in the outbox, not here"
    slot = await container.mongo.db[REDEMPTION_SLOTS.name].find_one({"_id": "g:def-1#1"})
    assert slot is not None and (slot["redemption_id"], slot["slot_no"]) == (made.id, 1)
    assert "unconfirmed" not in slot, "confirmed once the redemption is stored"
    assert await repo.active_count("g:def-1") >= 1


async def test_a_taken_slot_or_id_is_refused(container: Container, tenant: str) -> None:
    repo = MongoRedemptionRepo(container.mongo)
    first = redemption(tenant, "coupon-2")
    slot = f"g:{tenant}#1"
    await repo.insert(first, slot, 1)
    with pytest.raises(SlotTaken):
        await repo.insert(redemption(tenant, "coupon-2"), slot, 1)
    with pytest.raises(SlotTaken):
        await repo.insert(first, free_slot(first.id), None)


async def test_a_rollback_answers_the_rolled_back_record_once(
    container: Container, tenant: str
) -> None:
    repo = MongoRedemptionRepo(container.mongo)
    made = replace(redemption(tenant, "coupon-3"), group=f"g:{tenant}")
    await repo.insert(made, f"g:{tenant}#1", 1)
    later = AT + timedelta(minutes=5, microseconds=123000)
    back = await repo.roll_back(tenant, made.id, later)
    assert back is not None
    assert (back.state, back.rolled_back_at) == ("rolled_back", later)
    assert back.coupon == made.coupon and back.reward == made.reward
    assert await repo.get(tenant, made.id) == back
    assert await repo.roll_back(tenant, made.id, later) is None
    row = await container.mongo.redemptions.find_one({"_id": made.id})
    assert row is not None
    assert row["slot"] == free_slot(made.id) and row["slot_no"] is None
    # Its slot is free again, and no longer counted.
    assert (
        await container.mongo.db[REDEMPTION_SLOTS.name].find_one({"_id": f"g:{tenant}#1"}) is None
    )
    assert await repo.active_count(f"g:{tenant}") == 0
    assert await repo.used_slots(f"g:{tenant}") == set()


async def test_a_coupons_history_is_newest_first(container: Container, tenant: str) -> None:
    repo = MongoRedemptionRepo(container.mongo)
    coupon = f"coupon-{tenant}"
    made = [redemption(tenant, coupon, AT + timedelta(minutes=n)) for n in (2, 0, 1)]
    for r in made:
        await repo.insert(r, free_slot(r.id), None)
    history = await repo.for_coupon(coupon)
    assert [r.redeemed_at for r in history] == sorted((r.redeemed_at for r in made), reverse=True)


async def test_the_sweep_releases_slots_whose_redemption_never_came_and_confirms_the_others(
    container: Container, tenant: str
) -> None:
    """A crash between the slot's claim and the redemption (or its confirmation, or a
    rollback's slot delete) leaves an unconfirmed slot: past the grace, the sweep settles
    it by the redemption's state, and the group's count follows."""
    repo = MongoRedemptionRepo(container.mongo)
    slots = container.mongo.db[REDEMPTION_SLOTS.name]
    group = f"g:{tenant}"
    kept, rolled = (replace(redemption(tenant, f"c-{n}"), group=group) for n in (1, 2))
    await repo.insert(kept, f"{group}#1", 1)
    await repo.insert(rolled, f"{group}#2", 2)
    claimed = epoch_ms(AT)
    await slots.update_many({"group": group}, {"$set": {"unconfirmed": claimed}})
    # A rollback cut after the redemption left its slot, and a claim whose insert never came.
    await container.mongo.redemptions.update_one(
        {"_id": rolled.id}, {"$set": {"state": "rolled_back", "slot": free_slot(rolled.id)}}
    )
    await slots.insert_one(
        {
            "_id": f"{group}#3",
            "redemption_id": "never",
            "group": group,
            "slot_no": 3,
            "unconfirmed": claimed,
        }
    )
    await MongoCounters(container.mongo).add({uses_key(group): 1})
    assert await repo.active_count(group) == 3
    grace = timedelta(minutes=2)
    assert await sweep_slots(container.mongo, AT + timedelta(minutes=1), grace) == 0
    assert await sweep_slots(container.mongo, AT + timedelta(minutes=3), grace) >= 3
    assert await repo.used_slots(group) == {1}
    assert await repo.active_count(group) == 1
    [left] = await slots.find({"group": group}).to_list()
    assert "unconfirmed" not in left


async def test_a_rollback_that_keeps_the_use_keeps_the_slot_held(
    container: Container, tenant: str
) -> None:
    """`rollback_restores_use` false: the rolled-back redemption still holds its slot (and
    is counted), and the slots sweep leaves it so."""
    repo = MongoRedemptionRepo(container.mongo)
    made = replace(redemption(tenant, "coupon-4"), group=f"g:{tenant}")
    await repo.insert(made, f"g:{tenant}#1", 1)
    later = AT + timedelta(minutes=5)
    back = await repo.roll_back(tenant, made.id, later, "order cancelled", keep_use=True)
    assert back is not None
    assert (back.state, back.rollback_reason, back.use_kept) == (
        "rolled_back",
        "order cancelled",
        True,
    )
    assert await repo.get(tenant, made.id) == back
    slot = await container.mongo.db[REDEMPTION_SLOTS.name].find_one({"_id": f"g:{tenant}#1"})
    assert slot is not None and slot["redemption_id"] == made.id
    assert await repo.active_count(f"g:{tenant}") == 1
    assert await repo.used_slots(f"g:{tenant}") == {1}
