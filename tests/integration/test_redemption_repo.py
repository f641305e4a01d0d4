"""The redemption repository speaks domain records; its rows (the slot, the flat copies the
indexes read, the outbox fields) are laid out by the adapter alone."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from phoenix_coupons.adapters.redemption_repo import MongoRedemptionRepo
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
    assert (row["publish_pending"], row["publish_lease"]) == (True, None)
    assert (row["rollback_publish_pending"], row["rollback_publish_lease"]) == (False, None)


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
    made = redemption(tenant, "coupon-3")
    await repo.insert(made, f"g:{tenant}#1", 1)
    later = AT + timedelta(minutes=5, microseconds=123000)
    back = await repo.roll_back(tenant, made.id, free_slot(made.id), later)
    assert back is not None
    assert (back.state, back.rolled_back_at) == ("rolled_back", later)
    assert back.coupon == made.coupon and back.reward == made.reward
    assert await repo.get(tenant, made.id) == back
    assert await repo.roll_back(tenant, made.id, free_slot(made.id), later) is None
    row = await container.mongo.redemptions.find_one({"_id": made.id})
    # Truthy, not `is True`: nx-27017 stores a boolean `$set` as 1 (adapters/nx27017_compat.py).
    assert row is not None and row["rollback_publish_pending"]
    assert row["slot"] == free_slot(made.id) and row["slot_no"] is None


async def test_a_coupons_history_is_newest_first(container: Container, tenant: str) -> None:
    repo = MongoRedemptionRepo(container.mongo)
    coupon = f"coupon-{tenant}"
    made = [redemption(tenant, coupon, AT + timedelta(minutes=n)) for n in (2, 0, 1)]
    for r in made:
        await repo.insert(r, free_slot(r.id), None)
    history = await repo.for_coupon(coupon)
    assert [r.redeemed_at for r in history] == sorted((r.redeemed_at for r in made), reverse=True)
