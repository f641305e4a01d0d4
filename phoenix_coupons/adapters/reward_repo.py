"""Reward items in MongoDB."""

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import aware
from schemas.rewards import RewardItem

ORDER = [("created_at", -1), ("_id", 1)]  # a tenant's list: newest first


def _from_doc(doc: Doc) -> RewardItem:
    doc["updated_at"] = aware(doc["updated_at"])
    return RewardItem(item_id=doc.pop("_id"), **doc)


class MongoRewardRepo:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.rewards

    async def insert(self, item: RewardItem) -> None:
        doc = item.model_dump()
        doc["_id"] = doc.pop("item_id")
        await self._col.insert_one(doc)

    async def get(self, tenant_id: str, item_id: str) -> RewardItem | None:
        doc = await self._col.find_one({"_id": item_id, "tenant_id": tenant_id})
        return _from_doc(doc) if doc else None

    async def page(self, tenant_id: str, limit: int, offset: int) -> tuple[list[RewardItem], int]:
        query = {"tenant_id": tenant_id}
        total = await self._col.count_documents(query)
        cursor = self._col.find(query).sort(ORDER).skip(offset)
        return [_from_doc(d) async for d in cursor.limit(limit)], total

    async def update(
        self, tenant_id: str, item_id: str, fields: dict[str, Any], at: datetime
    ) -> RewardItem | None:
        doc = await self._col.find_one_and_update(
            {"_id": item_id, "tenant_id": tenant_id},
            {"$set": {**fields, "updated_at": at}},
            return_document=ReturnDocument.AFTER,
        )
        return _from_doc(doc) if doc else None

    async def delete(self, tenant_id: str, item_id: str) -> bool:
        result = await self._col.delete_one({"_id": item_id, "tenant_id": tenant_id})
        return result.deleted_count == 1
