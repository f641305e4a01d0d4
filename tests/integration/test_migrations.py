"""The migration framework on the session's MongoDB: a step walks its collection in `_id`
order, resumes after the last batch it finished, is skipped once done, is marked done
without walking where the database does not need it; the service refuses to start while a
needed step is not done."""

import pytest

from phoenix_coupons.adapters import migrations
from phoenix_coupons.adapters.migrations import (
    Db,
    Progress,
    Step,
    batches,
    migrate,
    pending,
    registry,
)
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.domain.errors import ConfigurationError
from tests.integration.migration_support import Crash


@pytest.fixture
def db(own_mongo: Mongo) -> Db:
    return own_mongo.db


def doubling_step(crash_after: int | None = None) -> Step:
    """Old layout: `v`; new layout: `w = 2 v`. Crashes once after `crash_after` batches."""
    left = [crash_after]

    async def run(db: Db, progress: Progress) -> None:
        handled = 0
        async for batch in batches(db.items, progress, {"w": {"$exists": False}}, size=10):
            for doc in batch:
                await db.items.update_one(
                    {"_id": doc["_id"], "w": {"$exists": False}}, {"$set": {"w": 2 * doc["v"]}}
                )
            handled += 1
            if left[0] is not None and handled == left[0]:
                left[0] = None
                raise Crash

    async def needed(db: Db) -> bool:
        return await db.items.find_one({"w": {"$exists": False}}) is not None

    return Step("0001_double", "w = 2 v", run, needed)


async def test_a_step_resumes_after_its_last_batch_and_runs_once(db: Db) -> None:
    await db.items.insert_many([{"_id": f"i{n:03d}", "v": n} for n in range(35)])
    step = doubling_step(crash_after=2)
    with pytest.raises(Crash):
        await migrate(db, [step])
    saved = await db.migrations.find_one({"_id": step.name})
    assert saved is not None and saved["done"] is False
    assert saved["last_id"] == "i009"  # the second batch was in hand: it is walked again

    report = await migrate(db, [step])
    assert [(s.state, s.migrated) for s in report.steps] == [("done", 35 - 10)]
    assert [d["w"] async for d in db.items.find().sort("_id", 1)] == [2 * n for n in range(35)]

    again = await migrate(db, [step])
    assert [s.state for s in again.steps] == ["done before"]


async def test_a_database_without_old_data_marks_the_step_done_without_walking(db: Db) -> None:
    step = doubling_step()
    assert await pending(db, [step]) == []
    assert [s.state for s in (await migrate(db, [step])).steps] == ["done before"]


async def test_the_service_refuses_to_start_on_data_in_the_old_layout(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = doubling_step()
    monkeypatch.setattr(registry, "STEPS", [step])
    await db.items.insert_one({"_id": "old", "v": 1})
    with pytest.raises(ConfigurationError, match=r"phoenix-coupons migrate.*0001_double"):
        await migrations.require_migrated(db)
    await migrate(db)
    await migrations.require_migrated(db)
