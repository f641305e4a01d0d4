"""API keys in MongoDB: a hash for `X-API-Key` look-up, the secret encrypted for JWTs."""

from dataclasses import asdict
from datetime import datetime

from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.domain.models import ApiKey


def _from_doc(doc: Doc) -> ApiKey:
    return ApiKey(
        id=doc["_id"],
        name=doc["name"],
        scopes=tuple(doc["scopes"]),
        tenant_id=doc.get("tenant_id"),
        key_hash=doc["key_hash"],
        secret_enc=doc["secret_enc"],
        created_at=doc["created_at"],
        revoked_at=aware(doc.get("revoked_at")),
    )


class MongoApiKeyRepo:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.api_keys

    async def insert(self, key: ApiKey) -> None:
        doc = asdict(key)
        doc["_id"] = doc.pop("id")
        doc["scopes"] = list(key.scopes)
        await self._col.insert_one(doc)

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        doc = await self._col.find_one({"key_hash": key_hash})
        return _from_doc(doc) if doc else None

    async def get(self, key_id: str) -> ApiKey | None:
        doc = await self._col.find_one({"_id": key_id})
        return _from_doc(doc) if doc else None

    async def all(self) -> list[ApiKey]:
        return [_from_doc(d) async for d in self._col.find({}).sort("created_at", 1)]

    async def revoke(self, key_id: str, at: datetime) -> bool:
        result = await self._col.update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": at}}
        )
        return result.modified_count == 1
