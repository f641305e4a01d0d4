"""The marks of each inbound partition (domain/delivery.py `Marks`), one document per
partition, whatever the consumer group: `offset` (announced up to; the worker raises it after
a commit) and `inflight` (coupons may be stored up to; raised before each store)."""

from collections.abc import Mapping, Sequence

from pymongo import UpdateOne

from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.domain.delivery import Marks, Partition


def _key(tp: Partition) -> str:
    return f"{tp.topic}:{tp.partition}"


class AnnouncedOffsets:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.announced_offsets

    async def load(self, partitions: Sequence[Partition]) -> dict[Partition, Marks]:
        keys = {_key(tp): tp for tp in partitions}
        cursor = self._col.find({"_id": {"$in": list(keys)}})
        found = {
            keys[d["_id"]]: Marks(int(d.get("offset", 0)), int(d.get("inflight", 0)))
            async for d in cursor
        }
        return {tp: found.get(tp, Marks()) for tp in partitions}

    async def advance(self, offsets: Mapping[Partition, int]) -> None:
        await self._raise("offset", offsets)

    async def mark_inflight(self, offsets: Mapping[Partition, int]) -> None:
        await self._raise("inflight", offsets)

    async def _raise(self, field: str, offsets: Mapping[Partition, int]) -> None:
        if offsets:  # one round trip for all partitions
            await self._col.bulk_write(
                [
                    UpdateOne({"_id": _key(tp)}, {"$max": {field: o}}, upsert=True)
                    for tp, o in offsets.items()
                ],
                ordered=False,
            )
