"""The timeline of each code in MongoDB (`code_history`): one document per step, `_id` =
`HistoryEntry.id` ("<tenant>:<code_norm>|<epoch ms>|<kind>|<ref>"), so a code's steps are
one `_id` range in time order and a step recorded twice is stored once."""

from collections.abc import Sequence
from typing import Any

from pymongo.errors import BulkWriteError

from phoenix_coupons.adapters import nx27017_compat
from phoenix_coupons.adapters.mongo import Doc, Mongo, duplicates_only
from phoenix_coupons.adapters.mongo_schema import CODE_HISTORY
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.domain.history import Actor, HistoryEntry


def history_doc(entry: HistoryEntry) -> Doc:
    return {
        "_id": entry.id,
        "tenant_id": entry.tenant_id,
        "code_norm": entry.code_norm,
        "at": entry.at,
        "kind": entry.kind,
        "ref": entry.ref,
        "actor": None if entry.actor is None else {"kind": entry.actor.kind, "id": entry.actor.id},
        "details": dict(entry.details),
    }


def from_doc(doc: Doc) -> HistoryEntry:
    actor: dict[str, Any] | None = doc.get("actor")
    return HistoryEntry(
        tenant_id=doc["tenant_id"],
        code_norm=doc["code_norm"],
        at=aware(doc["at"]),
        kind=doc["kind"],
        ref=doc["ref"],
        actor=None if actor is None else Actor(actor["kind"], actor.get("id")),
        details=doc.get("details") or {},
    )


async def insert_history(mongo: Mongo, docs: Sequence[Doc]) -> None:
    """Store history documents; those stored before (same `_id`) stay as they are."""
    if not docs:
        return
    try:
        await mongo.db[CODE_HISTORY.name].insert_many(list(docs), ordered=False)
    except BulkWriteError as exc:
        duplicates_only(exc)  # raises unless every error is a duplicate `_id`


class MongoCodeHistory:
    """Reads are `_id` ranges of one code (the collection's shard key: one shard's range)."""

    def __init__(self, mongo: Mongo) -> None:
        self._mongo = mongo
        self._col = mongo.db[CODE_HISTORY.name]

    async def record(self, entries: Sequence[HistoryEntry]) -> None:
        await insert_history(self._mongo, [history_doc(e) for e in entries])

    async def between(
        self, code_norm: str, above: str, below: str, skip: int, limit: int
    ) -> list[HistoryEntry]:
        return [from_doc(d) for d in await self._range(code_norm, above, below, skip, limit)]

    async def count_between(self, code_norm: str, above: str, below: str, cap: int) -> int:
        return len(await self._range(code_norm, above, below, 0, cap, {"_id": 1}))

    async def _range(
        self,
        code_norm: str,
        above: str,
        below: str,
        skip: int,
        limit: int,
        projection: Doc | None = None,
    ) -> list[Doc]:
        """The code's steps between two ids: one `_id` range (on a cluster, the shard that
        holds it); nx-27017 scans an `_id` range, so there by the code (nx27017_compat)."""
        if await self._mongo.stand_in():
            return await nx27017_compat.id_range(
                self._col, above, below, skip, limit, ("code_norm", code_norm), projection
            )
        cursor = self._col.find({"_id": {"$gt": above, "$lt": below}}, projection)
        return await cursor.sort("_id", 1).skip(skip).limit(limit).to_list(None)
