"""How far each inbound partition has been announced, whatever the consumer group: the
worker advances it after each commit. A record below it was processed and its coupons
announced before (a replay, e.g. a new consumer group reading from the start): its coupons
are not announced again."""

from collections.abc import Mapping

from pymongo import UpdateOne

from phoenix_coupons.adapters.mongo import Mongo


def _key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class AnnouncedOffsets:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.announced_offsets

    async def load(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        keys = {_key(t, p): (t, p) for t, p in partitions}
        found = {
            keys[d["_id"]]: int(d["offset"])
            async for d in self._col.find({"_id": {"$in": list(keys)}})
        }
        return {tp: found.get(tp, 0) for tp in partitions}

    async def advance(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Raise each partition's mark to at least the given next offset (one round trip)."""
        if offsets:
            await self._col.bulk_write(
                [
                    UpdateOne({"_id": _key(t, p)}, {"$max": {"offset": o}}, upsert=True)
                    for (t, p), o in offsets.items()
                ],
                ordered=False,
            )
