"""Migration steps 0200-0202 (outbox flags -> `outbox` entries, redemption slots ->
`redemption_slots` and kept counts): old layout in, a crash mid-way, resume, run twice."""

from dataclasses import dataclass

import pytest

from phoenix_coupons.adapters.coupon_repo import to_doc as coupon_doc
from phoenix_coupons.adapters.migrations import (
    Db,
    Progress,
    m0200_coupon_outbox,
    m0201_redemption_outbox,
    m0202_redemption_slots,
    migrate,
    outbox_flags,
    pending,
)
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.mongo_schema import COUNTERS, MIGRATIONS, OUTBOX, REDEMPTION_SLOTS
from phoenix_coupons.adapters.redemption_repo import to_doc as redemption_doc
from phoenix_coupons.domain.outbox import issued, redeemed, rolled_back
from phoenix_coupons.domain.redemption import free_slot
from tests.integration.migration_support import Crash
from tests.integration.test_outbox_relay import new_coupons, redemption_row

STEPS = [m0200_coupon_outbox.STEP, m0201_redemption_outbox.STEP, m0202_redemption_slots.STEP]


@pytest.fixture
def db(own_mongo: Mongo, monkeypatch: pytest.MonkeyPatch) -> Db:
    monkeypatch.setattr(outbox_flags, "SIZE", 2)
    return own_mongo.db


@dataclass
class CrashingProgress(Progress):
    """Saves its first batch, then crashes (as a process would after it)."""

    def __post_init__(self) -> None:
        self.left = 1

    async def advance(self, last_id: object, count: int) -> None:
        await super().advance(last_id, count)
        self.left -= 1
        if self.left < 0:
            raise Crash


async def old_layout(db: Db) -> dict[str, object]:
    """Coupons: 3 pending, 2 announced. Redemptions: a pending redeem in slot 1, an announced
    one in slot 2, and a rolled back one whose rollback is pending."""
    coupons = new_coupons(5)
    docs = [
        {**coupon_doc(c), "publish_pending": i < 3, "publish_owner": None, "publish_lease": None}
        for i, c in enumerate(coupons)
    ]
    await db.coupons.insert_many(docs)
    made = [redemption_row("t-m", f"user-{i}") for i in range(3)]
    active = [
        {**redemption_doc(r, f"g:d#{n}", n), "state": "redeemed", "rolled_back_at": None}
        for n, r in ((1, made[0]), (2, made[1]))
    ]
    flags = [
        {"publish_pending": True, "rollback_publish_pending": False},
        {"publish_pending": False, "rollback_publish_pending": False},
        {"publish_pending": False, "rollback_publish_pending": True},
    ]
    rows = [*active, redemption_doc(made[2], free_slot(made[2].id), None)]
    await db.redemptions.insert_many(
        [
            {**row, "group": "g:d", **f, "publish_lease": None, "publish_owner": None}
            for row, f in zip(rows, flags, strict=True)
        ]
    )
    return {"coupons": coupons, "redemptions": made}


async def test_the_outbox_and_slot_steps_migrate_resume_and_run_twice(db: Db) -> None:
    given = await old_layout(db)
    coupons, made = given["coupons"], given["redemptions"]
    assert await pending(db, STEPS) == [s.name for s in STEPS]
    with pytest.raises(Crash):
        await m0200_coupon_outbox.STEP.run(
            db, CrashingProgress("0200_coupon_outbox", db[MIGRATIONS.name])
        )
    await migrate(db, STEPS)  # resumes 0200 after its first batch, then runs the others

    entries = {d["_id"]: d for d in await db[OUTBOX.name].find().to_list()}
    expected = [issued(c) for c in coupons[:3]]  # type: ignore[index]
    redemptions = made  # type: ignore[assignment]
    expected += [redeemed(redemptions[0]), rolled_back(redemptions[2])]
    assert set(entries) == {e.id for e in expected}
    assert {d["state"] for d in entries.values()} == {"ready"}
    assert entries[rolled_back(redemptions[2]).id]["after"] == redeemed(redemptions[2]).id
    flagged = {
        "$or": [{"publish_pending": {"$exists": True}}, {"publish_lease": {"$exists": True}}]
    }
    assert await db.coupons.find_one(flagged) is None
    assert await db.redemptions.find_one(flagged) is None
    assert await db.redemptions.find_one({"rollback_publish_pending": {"$exists": True}}) is None
    slots = await db[REDEMPTION_SLOTS.name].find().sort("_id", 1).to_list()
    assert [(s["_id"], s["redemption_id"]) for s in slots] == [
        ("g:d#1", redemptions[0].id),
        ("g:d#2", redemptions[1].id),
    ]
    assert "unconfirmed" not in slots[0]
    count = await db[COUNTERS.name].find_one({"_id": "uses:g:d"})
    assert count is not None and count["n"] == 2

    # Run twice: done steps are skipped; each step run again from the start changes nothing.
    report = await migrate(db, STEPS)
    assert {s.state for s in report.steps} == {"done before"}
    for step in STEPS:
        await step.run(db, Progress(step.name, db[MIGRATIONS.name], done=True))
    assert {d["_id"] for d in await db[OUTBOX.name].find().to_list()} == set(entries)
    assert await db[REDEMPTION_SLOTS.name].count_documents({}) == 2
    count = await db[COUNTERS.name].find_one({"_id": "uses:g:d"})
    assert count is not None and count["n"] == 2
    assert await pending(db, STEPS) == []


async def test_a_fresh_database_needs_none_of_them(db: Db) -> None:
    assert await pending(db, STEPS) == []
