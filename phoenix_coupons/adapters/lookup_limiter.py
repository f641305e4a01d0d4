"""The failed-look-up limit (services.ports.LookupLimiter): the `limits` library's fixed
windows, counted in MongoDB so every API process shares them, and the block a key gets at
the limit, written on the key.

`limits` ships an async MongoDB storage, but on Motor (end of life; we use PyMongo's async API)
and with update pipelines, which nx-27017 does not run (nx27017_compat.py). `MongoCounters` is the
same contract on `pymongo.AsyncMongoClient`: one document per key and window, read and
written by `_id`; a TTL index removes windows that are over.
"""

import math
from collections.abc import Mapping
from datetime import timedelta

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from phoenix_coupons.adapters.api_key_repo import MongoApiKeyRepo
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import LOOKUP_FAILURES
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.errors import Contended, TooManyFailedLookups
from phoenix_coupons.domain.models import lookup_block_key


class MongoCounters(Storage):
    """`limits.aio.storage.Storage` for the fixed window strategy: a window starts with its
    first hit and lasts `expiry` seconds (as in the library's own storages). `expire_ms`
    decides (an integer: `epoch_ms`, exact on nx-27017 too); `expire_at`
    is only for the TTL index."""

    STORAGE_SCHEME = None  # not registered for `limits.storage_from_string`

    def __init__(self, collection: AsyncCollection[Doc], clock: Clock) -> None:
        super().__init__()
        self._col = collection
        self._clock = clock

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return PyMongoError

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self._clock()
        live = {"_id": key, "expire_ms": {"$gt": epoch_ms(now)}}
        ends = now + timedelta(seconds=expiry)
        fresh = {"count": amount, "expire_ms": epoch_ms(ends), "expire_at": ends}
        for _ in range(3):  # a concurrent caller may start the window first: count in it
            doc = await self._col.find_one_and_update(
                live, {"$inc": {"count": amount}}, return_document=ReturnDocument.AFTER
            )
            if doc is not None:
                return int(doc["count"])
            # None live: start a window, over an ended one (the TTL monitor runs once a minute)
            ended = {"_id": key, "expire_ms": {"$lte": epoch_ms(now)}}
            if await self._col.find_one_and_replace(ended, fresh) is not None:
                return amount
            try:
                await self._col.insert_one({"_id": key, **fresh})
                return amount
            except DuplicateKeyError:
                continue
        raise Contended(f"could not count a hit on {key}")

    async def _live(self, key: str) -> Doc | None:
        doc = await self._col.find_one({"_id": key})
        if doc is None or doc["expire_ms"] <= epoch_ms(self._clock()):
            return None
        return doc

    async def get(self, key: str) -> int:
        doc = await self._live(key)
        return int(doc["count"]) if doc else 0

    async def get_expiry(self, key: str) -> float:
        doc = await self._live(key)
        return doc["expire_ms"] / 1000 if doc else self._clock().timestamp()

    async def check(self) -> bool:
        try:
            await self._col.database.command("ping")
        except PyMongoError:
            return False
        return True

    async def reset(self) -> int | None:
        return (await self._col.delete_many({})).deleted_count

    async def clear(self, key: str) -> None:
        await self._col.delete_one({"_id": key})


class MongoLookupLimiter:
    """At most `limit` failed look-ups per API key and tenant in a window (e.g. '30/minute');
    past it, every look-up of that key in that tenant is refused until the window ends.

    The failures are counted here; the refusal is written on the key itself (a block until
    the window's end, `ApiKey.lookup_blocks`), which every request reads to authenticate: a
    look-up that is not refused costs no read of the limit (`refusal`, at the API's door)."""

    def __init__(self, mongo: Mongo, limit: str, clock: Clock) -> None:
        self._col = mongo.db[LOOKUP_FAILURES.name]
        self._keys = MongoApiKeyRepo(mongo)
        self._clock = clock
        self._item: RateLimitItem = parse(limit)
        self._counts = MongoCounters(self._col, clock)

    def refusal(self, blocks: Mapping[str, int], tenant_id: str) -> TooManyFailedLookups | None:
        """The 429 of a key whose `blocks` (read with it) refuse look-ups in the tenant now."""
        until = blocks.get(lookup_block_key(tenant_id))
        now = epoch_ms(self._clock())
        if until is None or until <= now:
            return None
        wait = max(math.ceil((until - now) / 1000), 1)
        return TooManyFailedLookups(
            message=f"too many look-ups of unknown codes with this API key in this tenant "
            f"(at most {self._item}); try again in {wait} s",
            retry_after=wait,
        )

    async def failed(self, key_id: str, tenant_id: str) -> None:
        """Count it; at the limit, block the key's look-ups in the tenant until the window
        ends (every failure past it writes the block again: a crash between the two writes
        costs at most one more guess)."""
        window = self._item.key_for(key_id, tenant_id)
        # The fixed window strategy's count (`FixedWindowRateLimiter.hit`), read back.
        if await self._counts.incr(window, self._item.get_expiry()) < self._item.amount:
            return
        ends = await self._counts.get_expiry(window)
        await self._keys.block_lookups(key_id, tenant_id, math.ceil(ends * 1000))
