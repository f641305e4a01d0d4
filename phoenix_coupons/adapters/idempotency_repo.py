"""`Idempotency-Key` records: the first response of a keyed request, kept for the TTL."""

from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.services.ports import Claim


class MongoIdempotencyRepo:
    def __init__(self, mongo: Mongo, ttl_seconds: int, lease_seconds: float = 120.0) -> None:
        self._col = mongo.idempotency
        self._ttl = timedelta(seconds=ttl_seconds)
        self._lease = timedelta(seconds=lease_seconds)

    async def claim(self, key: str, request_hash: str, now: datetime) -> Claim:
        """Take `key` for this request, or tell what an earlier request with it left.
        A pending claim whose holder died (lease over) is taken over."""
        fresh: Doc = {
            "_id": key,
            "request_hash": request_hash,
            "state": "pending",
            "created_at": now,
            "lease_until": epoch_ms(now + self._lease),
            "response": None,
        }
        try:
            await self._col.insert_one(fresh)
            return Claim("acquired")
        except DuplicateKeyError:
            pass
        doc = await self._col.find_one({"_id": key})
        if doc is None or doc["created_at"] <= now - self._ttl:
            # Expired (the TTL monitor runs only once a minute) or just deleted: start over.
            await self._col.replace_one({"_id": key}, fresh, upsert=True)
            return Claim("acquired")
        if doc["request_hash"] != request_hash:
            return Claim("mismatch")
        if doc["state"] == "done":
            return Claim("replay", doc["response"])
        if doc["lease_until"] > epoch_ms(now):
            return Claim("in_progress")
        taken = await self._col.find_one_and_update(
            {"_id": key, "state": "pending", "lease_until": doc["lease_until"]},
            {"$set": {"lease_until": epoch_ms(now + self._lease)}},
            return_document=ReturnDocument.AFTER,
        )
        return Claim("acquired") if taken else Claim("in_progress")

    async def complete(self, key: str, response: dict[str, Any]) -> None:
        await self._col.update_one({"_id": key}, {"$set": {"state": "done", "response": response}})

    async def release(self, key: str) -> None:
        """Forget a claim whose request failed, so that a retry may run it again."""
        await self._col.delete_one({"_id": key, "state": "pending"})
