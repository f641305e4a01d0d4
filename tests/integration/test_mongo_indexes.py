"""`ensure_indexes` on the session's MongoDB: it converges to the declared indexes from any
earlier state, in any number of processes at once, and each sorted list uses its index."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from phoenix_coupons.adapters import nx27017_compat
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.mongo_schema import CODE_HISTORY, COUPONS, DEFINITIONS, REWARDS
from phoenix_coupons.settings import Settings

MongoFactory = Callable[..., Mongo]


@pytest.fixture
async def fresh(settings: Settings) -> AsyncIterator[MongoFactory]:
    """Clients on a database of this test's own, dropped at the end."""
    name = f"indexes_{uuid.uuid4().hex[:8]}"
    made: list[Mongo] = []

    def make(ttl_seconds: int = 3600) -> Mongo:
        made.append(Mongo(settings.mongodb_uri or "", name, ttl_seconds))
        return made[-1]

    yield make
    await made[0].client.drop_database(name)
    for mongo in made:
        await mongo.close()


async def ttl_of(mongo: Mongo) -> Any:
    indexes = await mongo.idempotency.index_information()
    return [
        i.get("expireAfterSeconds") for i in indexes.values() if i["key"] == [("created_at", 1)]
    ]


async def assert_exactly_declared(mongo: Mongo) -> None:
    for collection in mongo.collections:
        todo = await mongo.index_plan(collection)
        assert todo.done, (collection.name, todo)
        indexes = await mongo.db[collection.name].index_information()
        others = {n for n, i in indexes.items() if i["key"] != [("_id", 1)]}
        # nx-27017 builds them as it can serve them (nx27017_compat.as_served).
        served = nx27017_compat.as_served(collection) if await mongo.stand_in() else collection
        assert len(others) == len(served.indexes), (collection.name, indexes)


async def test_ensure_indexes_creates_exactly_the_declared_indexes(fresh: MongoFactory) -> None:
    mongo = fresh()
    await mongo.ensure_indexes()
    await assert_exactly_declared(mongo)
    await mongo.ensure_indexes()  # nothing left to do
    await assert_exactly_declared(mongo)


async def test_a_changed_idempotency_ttl_converges_to_the_new_setting(fresh: MongoFactory) -> None:
    await fresh(ttl_seconds=3600).ensure_indexes()
    restarted = fresh(ttl_seconds=7200)
    await restarted.ensure_indexes()
    assert await ttl_of(restarted) == [7200]
    await assert_exactly_declared(restarted)


@pytest.mark.parametrize(
    "keys",
    [
        [("trigger_event_id", 1)],
        [("issue_key", 1)],
        [("tenant_id", 1), ("user_id", 1)],
        [("definition_id", 1), ("user_id", 1)],
    ],
)
async def test_indexes_older_versions_kept_are_dropped(
    fresh: MongoFactory, keys: list[tuple[str, int]]
) -> None:
    mongo = fresh()
    await mongo.coupons.create_index(keys)
    await mongo.ensure_indexes()
    indexes = await mongo.coupons.index_information()
    assert all(i["key"] != keys for i in indexes.values()), indexes
    await assert_exactly_declared(mongo)


async def test_processes_starting_together_all_succeed(fresh: MongoFactory) -> None:
    """Each finds the same old index to drop, the same TTL to change and the same indexes to
    create; whoever comes second finds the work done and does not fail."""
    old = fresh(ttl_seconds=3600)
    await old.ensure_indexes()
    await old.coupons.create_index([("trigger_event_id", 1)])
    processes = [fresh(ttl_seconds=60) for _ in range(3)]
    await asyncio.gather(*(p.ensure_indexes() for p in processes))
    assert await ttl_of(processes[0]) == [60]
    await assert_exactly_declared(processes[0])


def _stages(plan: Any) -> list[dict[str, Any]]:
    """Every stage of an explain plan, classic or slot-based, nested or not."""
    found: list[dict[str, Any]] = []
    if isinstance(plan, dict):
        if "stage" in plan:
            found.append(plan)
        for value in plan.values():
            found += _stages(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _stages(value)
    return found


def _range(field: str, prefix: str) -> dict[str, Any]:
    """A list page: a list key's range (list_keys.py)."""
    return {field: {"$gte": prefix + "|", "$lt": prefix + "|\x7f"}}


QUERIES = [
    (COUPONS.name, _range("by_definition", "t|d"), [("by_definition", 1)]),
    (COUPONS.name, {**_range("by_user", "t|u"), "definition_id": "d"}, [("by_user", 1)]),
    (COUPONS.name, _range("by_user", "t|u"), [("by_user", 1)]),
    (DEFINITIONS.name, _range("by_status", "active"), [("by_status", 1)]),
    (DEFINITIONS.name, _range("by_tenant", "t|active"), [("by_tenant", 1)]),
    (REWARDS.name, _range("by_tenant", "t"), [("by_tenant", 1)]),
    # A code's timeline (services/history.py): its `_id` range.
    (CODE_HISTORY.name, {"_id": {"$gt": "t:C|0", "$lt": "t:C}"}}, [("_id", 1)]),
]


@pytest.mark.parametrize(("collection", "query", "order"), QUERIES)
async def test_each_sorted_list_reads_an_index_in_order(
    fresh: MongoFactory, collection: str, query: dict[str, Any], order: list[tuple[str, int]]
) -> None:
    mongo = fresh()
    if await mongo.stand_in():
        pytest.skip("nx-27017 explains SQLite plans; the declared keys are checked above")
    await mongo.ensure_indexes()
    plan = await mongo.db[collection].find(query).sort(order).skip(20).limit(20).explain()
    stages = _stages(plan["queryPlanner"]["winningPlan"])
    names = {s["stage"] for s in stages}
    assert "IXSCAN" in names, plan
    assert "SORT" not in names, plan  # no in-memory sort
