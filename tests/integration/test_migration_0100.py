"""Helper A's migration steps (0100_ to 0104_): the code registry, the list keys and the kept
counts from data stored in the layout before them; each cut short by a crash, resumed, and
run twice; and `migrate --recount` mending counts a crash left wrong."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.code_registry import claim_id
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.coupon_repo import BY_DEFINITION, BY_USER, MongoCouponRepo, to_doc
from phoenix_coupons.adapters.definition_repo import MongoDefinitionRepo
from phoenix_coupons.adapters.migrations import (
    m0100_code_registry,
    m0101_list_keys,
    migrate,
    pending,
)
from phoenix_coupons.adapters.migrations.registry import RECOUNTS, STEPS
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.reward_repo import MongoRewardRepo
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.models import Coupon
from tests.integration.migration_support import Crash

# The steps of the code registry, list keys and counts (other steps have tests of their own).
OURS = [s for s in STEPS if s.name.startswith("01")]
RECOUNTS_OURS = [r for r in RECOUNTS if r.name.startswith("01")]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SPACE = "A-Z0-9:8"


@pytest.fixture
def mongo(own_mongo: Mongo) -> Mongo:
    return own_mongo


def old_coupon(n: int, tenant: str, definition: str, user: str | None) -> Doc:
    key = f"bulk:{n}"
    coupon = Coupon(
        id=issue_keys.coupon_id(key),
        tenant_id=tenant,
        definition_id=definition,
        reward_item_id="r-1",
        code=f"CODE{n:04d}",
        code_norm=f"CODE{n:04d}",
        kind="issued" if user else "shared",
        source="bulk" if user else "definition",
        issue_key=key,
        issued_at=T0 + timedelta(minutes=n),
        user_id=user,
        code_space=SPACE if user else None,
    )
    doc = to_doc(coupon)
    del doc[BY_DEFINITION]
    doc.pop(BY_USER, None)
    return doc


def old_definition(n: int, tenant: str, status: str) -> Doc:
    return {
        "_id": f"d-{n}",
        "tenant_id": tenant,
        "name": f"def {n}",
        "description": None,
        "config": {
            "reward_item_id": "r-1",
            "code_format": "random",
            "code_length": 8,
            "usage_limit": {"limit_type": "unlimited"},
        },
        "status": status,
        "created_at": T0 + timedelta(hours=n),
        "updated_at": T0 + timedelta(hours=n),
    }


def old_reward(n: int, tenant: str) -> Doc:
    at = T0 + timedelta(hours=n)
    return {
        "_id": f"r-{n}",
        "tenant_id": tenant,
        "name": f"reward {n}",
        "description": None,
        "reward_type": "points",
        "payload": {},
        "created_at": at,
        "updated_at": at,
    }


async def old_layout(mongo: Mongo) -> None:
    """25 coupons (user-1 holds every third of def d-1), a shared code, in two tenants;
    three definitions, two reward items."""
    coupons = [old_coupon(n, "t-a", "d-1", "user-1" if n % 3 == 0 else f"u-{n}") for n in range(20)]
    coupons += [old_coupon(20 + n, "t-b", "d-3", f"u-{n}") for n in range(4)]
    coupons.append(old_coupon(99, "t-a", "d-2", None))
    await mongo.coupons.insert_many(coupons)
    await mongo.definitions.insert_many(
        [
            old_definition(1, "t-a", "active"),
            old_definition(2, "t-a", "paused"),
            old_definition(3, "t-b", "archived"),
        ]
    )
    await mongo.rewards.insert_many([old_reward(1, "t-a"), old_reward(2, "t-a")])


def crash_once(monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
    """The step writes its first batch (of 10), then the process dies."""
    write = module.write
    calls = [0]

    async def crashing(*args: Any) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise Crash
        await write(*args)

    monkeypatch.setattr(module, "BATCH", 10)
    monkeypatch.setattr(module, "write", crashing)


async def test_old_layout_in_crash_resume_run_twice_new_layout_out(
    mongo: Mongo, monkeypatch: pytest.MonkeyPatch
) -> None:
    await old_layout(mongo)
    assert len(await pending(mongo.db, OURS)) == 5
    crash_once(monkeypatch, m0100_code_registry)
    with pytest.raises(Crash):
        await migrate(mongo.db, OURS)
    assert await mongo.db["codes"].count_documents({}) == 10
    crash_once(monkeypatch, m0101_list_keys)
    with pytest.raises(Crash):
        await migrate(mongo.db, OURS)
    report = await migrate(mongo.db, OURS)
    assert [s.state for s in report.steps] == ["done before"] + ["done"] * 4
    assert (await migrate(mongo.db, OURS)).steps[-1].state == "done before"
    assert await pending(mongo.db, OURS) == []

    claims = {d["_id"]: d async for d in mongo.db["codes"].find()}
    assert len(claims) == 25 and not any("unconfirmed" in c for c in claims.values())
    assert claims[claim_id("t-a", "CODE0099")]["coupon_id"] == issue_keys.coupon_id("bulk:99")
    await assert_new_layout(mongo)


async def assert_new_layout(mongo: Mongo) -> None:
    coupons = MongoCouponRepo(mongo)
    found = await coupons.by_code("t-a", "CODE0007")
    assert found is not None and found.issue_key == "bulk:7"
    assert await coupons.taken("t-b", ["CODE0021", "CODE0007"]) == {"CODE0021"}
    assert await coupons.count_in_space("t-a", SPACE) == 20
    page = await coupons.definition_codes("t-a", "d-1", None, 5, 0)
    assert page.total == 20 and [c.code for c in page.items] == [
        f"CODE{n:04d}" for n in (19, 18, 17, 16, 15)
    ]
    assert page.next_after is not None
    later = await coupons.definition_codes("t-a", "d-1", None, 5, 0, page.next_after)
    assert [c.code for c in later.items] == [f"CODE{n:04d}" for n in (14, 13, 12, 11, 10)]
    wallet = await coupons.wallet("t-a", "user-1", 50, 0)
    assert wallet.total == 7 and wallet.items[0].code == "CODE0018"
    assert (await coupons.definition_codes("t-a", "d-1", "user-1", 2, 0)).total == 7
    definitions = MongoDefinitionRepo(mongo, coupons)
    listed = await definitions.page("t-a", ["active", "paused"], 10, 0)
    assert ([d.id for d in listed.items], listed.total) == (["d-2", "d-1"], 2)
    everyone = await definitions.page(None, ["active", "paused", "archived"], 10, 0)
    assert ([d.id for d in everyone.items], everyone.total) == (["d-3", "d-2", "d-1"], 3)
    rewards = await MongoRewardRepo(mongo).page("t-a", 10, 0)
    assert ([r.item_id for r in rewards.items], rewards.total) == (["r-2", "r-1"], 2)


async def test_recount_mends_counts_a_crash_left_wrong(mongo: Mongo) -> None:
    await old_layout(mongo)
    await migrate(mongo.db, OURS)
    counters = MongoCounters(mongo)
    await counters.set(counter_keys.codes("t-a", "d-1"), 99)
    await counters.set(counter_keys.wallet("t-a", "nobody"), 3)
    await counters.set(counter_keys.space("t-a", SPACE), 1)
    await counters.set(counter_keys.definitions("t-a", "active"), 0)
    await counters.set(counter_keys.rewards("t-a"), 7)
    report = await migrate(mongo.db, OURS, recount=True)
    assert {r for r in report.recounted if r.startswith("01")} == {c.name for c in RECOUNTS_OURS}
    assert len(RECOUNTS_OURS) == 5
    assert await counters.get(counter_keys.wallet("t-a", "nobody")) == 0
    await assert_new_layout(mongo)
    await migrate(mongo.db, OURS, recount=True)  # again: the same counts
    await assert_new_layout(mongo)


async def test_a_fresh_database_needs_none_of_them(mongo: Mongo) -> None:
    assert await pending(mongo.db) == []
