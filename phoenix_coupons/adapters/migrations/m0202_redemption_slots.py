"""0202: each active redemption's numbered slot becomes a `redemption_slots` document (the
unique `slot` index goes), and each group's held slots are counted (`uses:<group>`)."""

from collections import Counter

from pymongo import UpdateOne

from phoenix_coupons.adapters.migrations import Db, Progress, Step, batches, outbox_flags
from phoenix_coupons.adapters.mongo_schema import COUNTERS, REDEMPTION_SLOTS
from phoenix_coupons.adapters.redemption_repo import uses_key

HELD = {"state": "redeemed", "slot_no": {"$gt": 0}}


async def run(db: Db, progress: Progress) -> None:
    slots = db[REDEMPTION_SLOTS.name]
    async for batch in batches(db.redemptions, progress, HELD, size=outbox_flags.SIZE):
        ops = [
            UpdateOne(
                {"_id": d["slot"]},
                {
                    "$setOnInsert": {
                        "redemption_id": d["_id"],
                        "group": d["group"],
                        "slot_no": d["slot_no"],
                    }
                },
                upsert=True,
            )
            for d in batch
        ]
        await slots.bulk_write(ops, ordered=False)
    await recount(db, progress)


async def recount(db: Db, progress: Progress) -> None:
    """Every group's `uses:` count from its held slots (`migrate --recount` too)."""
    held: Counter[str] = Counter()
    async for d in db[REDEMPTION_SLOTS.name].find({}, {"group": 1}):
        held[uses_key(d["group"])] += 1
    counts = db[COUNTERS.name]
    async for d in counts.find({"_id": {"$regex": "^uses:"}}, {"_id": 1}):
        held.setdefault(d["_id"], 0)
    for key, n in held.items():
        await counts.update_one({"_id": key}, {"$set": {"n": n}}, upsert=True)


async def needed(db: Db) -> bool:
    return await db.redemptions.find_one(HELD, {"_id": 1}) is not None


STEP = Step(
    "0202_redemption_slots", "redemption slots -> redemption_slots + uses counts", run, needed
)
RECOUNT = Step("uses", "held redemption slots per usage group", recount, needed)
