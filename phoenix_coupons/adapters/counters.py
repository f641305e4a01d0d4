"""Kept counts: one document per count, `_id` naming what is counted (e.g.
`codes:<tenant>:<definition>`), changed with `$inc` next to the write it counts. Reading a
count is one look-up by `_id` at any size of what it counts (`count_documents` scans, on the
embedded server whatever the index).

A count is exact unless a crash fell between a write and its `$inc` (no multi-document
transactions): `phoenix-coupons migrate --recount` computes every count again.

A count may keep a time beside it (`last`, epoch ms, raised with `$max` in the same update):
a usage group's last redemption, read by the code export."""

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from pymongo import UpdateOne

from phoenix_coupons.adapters.mongo import Mongo, raise_unacknowledged
from phoenix_coupons.adapters.mongo_schema import COUNTERS

LAST = "last"


class Kept(NamedTuple):
    n: int
    last: int | None  # epoch ms: the time kept beside the count, if any


class MongoCounters:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.db[COUNTERS.name]

    async def add(self, amounts: Mapping[str, int], last: Mapping[str, int] | None = None) -> None:
        """`$inc` each count by its amount (upserted at 0), in one round trip; `last`: raise
        the time kept beside those counts to at least the given epoch ms."""
        last = last or {}
        ops = []
        for key in {**amounts, **last}:
            update: dict[str, dict[str, int]] = {"$inc": {"n": amounts.get(key, 0)}}
            if key in last:
                update["$max"] = {LAST: last[key]}
            if update["$inc"]["n"] or key in last:
                ops.append(UpdateOne({"_id": key}, update, upsert=True))
        if ops:
            result = await self._col.bulk_write(ops, ordered=False)
            raise_unacknowledged(result.bulk_api_result)

    async def get(self, key: str) -> int:
        doc = await self._col.find_one({"_id": key}, {"n": 1})
        return max(0, int(doc["n"])) if doc else 0

    async def get_many(self, keys: Sequence[str]) -> dict[str, int]:
        """Every key's count, 0 for one never counted."""
        found = {key: 0 for key in keys}
        if keys:
            async for doc in self._col.find({"_id": {"$in": list(keys)}}, {"n": 1}):
                found[doc["_id"]] = max(0, int(doc["n"]))
        return found

    async def kept(self, keys: Sequence[str]) -> dict[str, Kept]:
        """Every key's count and the time kept beside it (0 and None for one never kept)."""
        found = {key: Kept(0, None) for key in keys}
        if keys:
            async for doc in self._col.find({"_id": {"$in": list(keys)}}, {"n": 1, LAST: 1}):
                last = doc.get(LAST)
                found[doc["_id"]] = Kept(max(0, int(doc.get("n", 0))), last and int(last))
        return found

    async def set(self, key: str, value: int) -> None:
        """A recount's result."""
        await self._col.update_one({"_id": key}, {"$set": {"n": value}}, upsert=True)
