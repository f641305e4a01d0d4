"""Shared by the steps that move the outbox flags of coupons and redemptions (the document
was its own outbox entry) into `outbox` entries (adapters/outbox.py)."""

from collections.abc import Callable, Sequence

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from phoenix_coupons.adapters.migrations import BATCH, Db, Progress, batches
from phoenix_coupons.adapters.mongo import Doc, duplicates_only
from phoenix_coupons.adapters.mongo_schema import OUTBOX
from phoenix_coupons.adapters.outbox import READY, entry_doc
from phoenix_coupons.domain.outbox import OutboxEntry

SIZE = BATCH  # tests make it small


async def insert_ready(db: Db, entries: Sequence[OutboxEntry]) -> None:
    """Ready entries; one there already (a repeated batch) is kept."""
    if not entries:
        return
    try:
        await db[OUTBOX.name].insert_many([entry_doc(e, READY) for e in entries], ordered=False)
    except BulkWriteError as exc:
        duplicates_only(exc)


async def move_flags(
    db: Db,
    progress: Progress,
    col: AsyncCollection[Doc],
    prefixes: Sequence[str],
    entries: Callable[[Doc], list[OutboxEntry]],
) -> None:
    """Each document holding `<prefix>_pending`: its pending events become ready entries,
    then its flags go (entries first: a crash between repeats the batch, keeping them)."""
    flag = f"{prefixes[0]}_pending"
    async for batch in batches(col, progress, {flag: {"$exists": True}}, size=SIZE):
        await insert_ready(db, [e for doc in batch for e in entries(doc)])
        fields = {f"{p}_{f}": "" for p in prefixes for f in ("pending", "owner", "lease")}
        await col.update_many({"_id": {"$in": [d["_id"] for d in batch]}}, {"$unset": fields})
