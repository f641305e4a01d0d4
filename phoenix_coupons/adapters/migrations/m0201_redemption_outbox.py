"""0201: redemptions lose their outbox flags (`publish_*`, `rollback_publish_*`); pending
events become ready `outbox` entries (a rollback after its redemption's), and a redemption
event set aside as dead is findable by its entry id (the relay's `after` check)."""

from phoenix_coupons.adapters.migrations import Db, Progress, Step
from phoenix_coupons.adapters.migrations.outbox_flags import move_flags
from phoenix_coupons.adapters.mongo import Doc
from phoenix_coupons.adapters.mongo_schema import OUTBOX_DEAD
from phoenix_coupons.adapters.redemption_repo import from_doc
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.outbox import OutboxEntry, redeemed, rolled_back

PREFIXES = ["publish", "rollback_publish"]


def _entries(doc: Doc) -> list[OutboxEntry]:
    found = []
    if doc.get("publish_pending"):
        found.append(redeemed(from_doc(doc)))
    if doc.get("rollback_publish_pending") and doc.get("rolled_back_at") is not None:
        found.append(rolled_back(from_doc(doc)))
    return found


async def run(db: Db, progress: Progress) -> None:
    dead = db[OUTBOX_DEAD.name]
    async for doc in dead.find({"source": "coupon.redeemed", "entry_id": {"$exists": False}}):
        await dead.update_one(
            {"_id": doc["_id"]}, {"$set": {"entry_id": event_id("coupon.redeemed", doc["row_id"])}}
        )
    await move_flags(db, progress, db.redemptions, PREFIXES, _entries)


async def needed(db: Db) -> bool:
    query = {"publish_pending": {"$exists": True}}
    return await db.redemptions.find_one(query, {"_id": 1}) is not None


STEP = Step(
    "0201_redemption_outbox", "pending redemption event flags -> outbox entries", run, needed
)
