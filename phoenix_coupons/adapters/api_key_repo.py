"""API keys in MongoDB, keyed by the key's hash: the `X-API-Key` look-up is one read by
`_id`, and "one key per hash" holds on a sharded cluster (`_id` is the shard key). The key's
public id (JWT `sub_id`, `api-key revoke ID`) is the single-field index `key_id`; the secret is
stored encrypted, for JWTs."""

from dataclasses import asdict
from datetime import datetime

from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.domain.models import ApiKey, lookup_block_key


def to_doc(key: ApiKey) -> Doc:
    doc = asdict(key)
    doc["_id"], doc["key_id"] = doc.pop("key_hash"), doc.pop("id")
    doc["scopes"] = list(key.scopes)
    return doc


def _from_doc(doc: Doc) -> ApiKey:
    return ApiKey(
        id=doc["key_id"],
        name=doc["name"],
        scopes=tuple(doc["scopes"]),
        tenant_id=doc.get("tenant_id"),
        key_hash=doc["_id"],
        secret_enc=doc["secret_enc"],
        created_at=doc["created_at"],
        revoked_at=aware(doc.get("revoked_at")),
        lookup_blocks=dict(doc.get("lookup_blocks") or {}),
    )


class MongoApiKeyRepo:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.api_keys

    async def insert(self, key: ApiKey) -> None:
        await self._col.insert_one(to_doc(key))

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        doc = await self._col.find_one({"_id": key_hash})
        return _from_doc(doc) if doc else None

    async def get(self, key_id: str) -> ApiKey | None:
        doc = await self._col.find_one({"key_id": key_id})
        return _from_doc(doc) if doc else None

    async def all(self) -> list[ApiKey]:
        return [_from_doc(d) async for d in self._col.find({}).sort("created_at", 1)]

    async def revoke(self, key_id: str, at: datetime) -> bool:
        # Found by id, written by `_id`: a single-document update on a sharded cluster names
        # its shard key (the `revoked_at` condition keeps it once only).
        key = await self.get(key_id)
        if key is None:
            return False
        result = await self._col.update_one(
            {"_id": key.key_hash, "revoked_at": None}, {"$set": {"revoked_at": at}}
        )
        return result.modified_count == 1

    async def block_lookups(self, key_id: str, tenant_id: str, until_ms: int) -> None:
        """Refuse the key's code look-ups in the tenant until `until_ms` (a later block
        stays: `$max`). Found by id, written by `_id`, as `revoke`."""
        key = await self.get(key_id)
        if key is not None:
            field = f"lookup_blocks.{lookup_block_key(tenant_id)}"
            await self._col.update_one({"_id": key.key_hash}, {"$max": {field: until_ms}})
