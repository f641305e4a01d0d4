"""Two marks per inbound partition, whatever the consumer group.

`offset`: how far it has been announced; the worker advances it after a commit. A record
below it was processed and its coupons announced before (a replay, e.g. a new consumer group
reading from the start): its coupons are not announced again.
`inflight`: how far a worker may have stored coupons; raised before each store. Records
between the two may hold coupons of an attempt that died before committing: the next owner
looks for those, and for nothing else."""

from collections.abc import Mapping

from pymongo import UpdateOne

from phoenix_coupons.adapters.mongo import Mongo


def _key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class AnnouncedOffsets:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.announced_offsets

    async def load(
        self, partitions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[int, int]]:
        """(announced, inflight) per partition; (0, 0) for one never seen."""
        keys = {_key(t, p): (t, p) for t, p in partitions}
        cursor = self._col.find({"_id": {"$in": list(keys)}})
        found = {
            keys[d["_id"]]: (int(d.get("offset", 0)), int(d.get("inflight", 0)))
            async for d in cursor
        }
        return {tp: found.get(tp, (0, 0)) for tp in partitions}

    async def advance(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Raise each partition's announced mark to at least the given next offset."""
        await self._raise("offset", offsets)

    async def mark_inflight(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Raise each partition's inflight mark, before coupons of records below it are
        stored."""
        await self._raise("inflight", offsets)

    async def _raise(self, field: str, offsets: Mapping[tuple[str, int], int]) -> None:
        if offsets:  # one round trip for all partitions
            await self._col.bulk_write(
                [
                    UpdateOne({"_id": _key(t, p)}, {"$max": {field: o}}, upsert=True)
                    for (t, p), o in offsets.items()
                ],
                ordered=False,
            )
