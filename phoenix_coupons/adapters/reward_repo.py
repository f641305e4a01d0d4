"""Reward items in MongoDB. A tenant's list is read by its list key (`by_tenant`,
list_keys.py) and its total is a kept count (`rewards:<tenant>`), changed with each insert and
delete."""

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from phoenix_coupons.adapters import counter_keys, list_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.services.ports import Page
from schemas.rewards import RewardItem

BY_TENANT = "by_tenant"  # "<tenant>|<newest first>|<_id>": a tenant's list


def list_key(tenant_id: str, created_at: datetime, item_id: str) -> str:
    return list_keys.key(tenant_id, list_keys.tail(created_at, item_id))


def _from_doc(doc: Doc) -> RewardItem:
    doc.pop(BY_TENANT, None)
    doc["updated_at"] = aware(doc["updated_at"])
    return RewardItem(item_id=doc.pop("_id"), **doc)


class MongoRewardRepo:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.rewards
        self._counters = MongoCounters(mongo)

    async def insert(self, item: RewardItem) -> None:
        doc = item.model_dump()
        doc["_id"] = doc.pop("item_id")
        doc[BY_TENANT] = list_key(item.tenant_id, item.created_at, item.item_id)
        await self._col.insert_one(doc)
        await self._counters.add({counter_keys.rewards(item.tenant_id): 1})

    async def get(self, tenant_id: str, item_id: str) -> RewardItem | None:
        doc = await self._col.find_one({"_id": item_id, "tenant_id": tenant_id})
        return _from_doc(doc) if doc else None

    async def page(
        self, tenant_id: str, limit: int, offset: int, after: str | None = None
    ) -> Page[RewardItem]:
        page = await list_keys.page(self._col, BY_TENANT, tenant_id, limit, offset, after)
        total = await self._counters.get(counter_keys.rewards(tenant_id))
        return Page([_from_doc(d) for d in page.docs], total, page.next_after)

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
        if result.deleted_count != 1:
            return False
        await self._counters.add({counter_keys.rewards(tenant_id): -1})
        return True
