"""0300: API keys keyed by their hash. Old layout: `_id` = the key's id, a unique index on
`key_hash`. New: `_id` = the hash, the id in the field `key_id` (api_key_repo.py).

A document's `_id` cannot change, so each key is inserted anew under its hash, then the old
document is deleted: a crash in between leaves both, and the resumed step inserts nothing
new (the hash is taken) and deletes the old one. The old unique index goes first: the new
documents carry no `key_hash` field, which that index would take for a duplicate null."""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from phoenix_coupons.adapters.migrations import BATCH, Db, Progress, Step, batches
from phoenix_coupons.adapters.mongo import Doc, duplicates_only
from phoenix_coupons.adapters.mongo_schema import API_KEYS, keys_of

NAME = "0300_api_keys_by_hash"
OLD = {"key_id": {"$exists": False}}  # new documents carry their id in `key_id`
OLD_INDEX = (("key_hash", 1),)
size = BATCH  # the tests walk in smaller batches


def new_layout(old: Doc) -> Doc:
    doc: dict[str, Any] = {k: v for k, v in old.items() if k not in ("_id", "key_hash")}
    return {"_id": old["key_hash"], "key_id": old["_id"], **doc}


async def drop_old_index(col: AsyncCollection[Doc]) -> None:
    for name, info in (await col.index_information()).items():
        if keys_of(info) == OLD_INDEX:
            await col.drop_index(name)


async def insert_new(col: AsyncCollection[Doc], docs: list[Doc]) -> None:
    """Inserts each key under its hash; one there already (a cut-short run) stays."""
    try:
        await col.insert_many([new_layout(d) for d in docs], ordered=False)
    except BulkWriteError as exc:
        duplicates_only(exc)


async def delete_old(col: AsyncCollection[Doc], docs: list[Doc]) -> None:
    await col.delete_many({"_id": {"$in": [d["_id"] for d in docs]}, **OLD})


async def run(db: Db, progress: Progress) -> None:
    col = db[API_KEYS.name]
    await drop_old_index(col)
    async for batch in batches(col, progress, OLD, size):
        await insert_new(col, batch)
        await delete_old(col, batch)


async def needed(db: Db) -> bool:
    return await db[API_KEYS.name].find_one(OLD) is not None


STEP = Step(NAME, "API keys keyed by their hash (`_id`), their id in `key_id`", run, needed)
