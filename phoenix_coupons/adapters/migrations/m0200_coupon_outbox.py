"""0200: coupons lose their outbox flags (`publish_pending/owner/lease`); the pending ones'
`coupon.issued` become ready `outbox` entries."""

from phoenix_coupons.adapters.coupon_repo import from_doc
from phoenix_coupons.adapters.migrations import Db, Progress, Step
from phoenix_coupons.adapters.migrations.outbox_flags import move_flags
from phoenix_coupons.adapters.mongo import Doc
from phoenix_coupons.domain.outbox import OutboxEntry, issued


def _entries(doc: Doc) -> list[OutboxEntry]:
    return [issued(from_doc(doc))] if doc.get("publish_pending") else []


async def run(db: Db, progress: Progress) -> None:
    await move_flags(db, progress, db.coupons, ["publish"], _entries)


async def needed(db: Db) -> bool:
    return await db.coupons.find_one({"publish_pending": {"$exists": True}}, {"_id": 1}) is not None


STEP = Step("0200_coupon_outbox", "pending coupon.issued flags -> outbox entries", run, needed)
