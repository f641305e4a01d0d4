"""Kept counts: one document per count, `_id` naming what is counted (e.g.
`codes:<tenant>:<definition>`), changed with `$inc` next to the write it counts. Reading a
count is one look-up by `_id` at any size of what it counts (`count_documents` scans, on the
embedded server whatever the index).

A count is exact unless a crash fell between a write and its `$inc` (no multi-document
transactions): `phoenix-coupons migrate --recount` computes every count again."""

from collections.abc import Mapping, Sequence

from pymongo import UpdateOne

from phoenix_coupons.adapters.mongo import Mongo, raise_unacknowledged
from phoenix_coupons.adapters.mongo_schema import COUNTERS


class MongoCounters:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.db[COUNTERS.name]

    async def add(self, amounts: Mapping[str, int]) -> None:
        """`$inc` each count by its amount (upserted at 0), in one round trip."""
        ops = [
            UpdateOne({"_id": key}, {"$inc": {"n": amount}}, upsert=True)
            for key, amount in amounts.items()
            if amount
        ]
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

    async def set(self, key: str, value: int) -> None:
        """A recount's result."""
        await self._col.update_one({"_id": key}, {"$set": {"n": value}}, upsert=True)
