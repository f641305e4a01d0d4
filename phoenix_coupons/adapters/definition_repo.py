"""Coupon definitions in MongoDB. A custom-format definition's shared code is stored as a
coupon row of kind `shared`, written in the same transaction, so the tenant-wide unique code
index covers it too."""

from collections.abc import Sequence
from datetime import datetime

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.models import Coupon
from schemas.coupons import CouponConfig, CouponDefinition

ORDER = [("created_at", -1), ("_id", 1)]
REWARD_ITEM = "config.reward_item_id"
AUTO_GENERATE = "config.auto_generate"


def auto_generating(triggers: Sequence[str]) -> Doc:
    """Active definitions that issue coupons on events of these triggers."""
    return {
        "status": "active",
        f"{AUTO_GENERATE}.enabled": True,
        f"{AUTO_GENERATE}.trigger": {"$in": list(triggers)},
    }


def to_doc(defn: CouponDefinition) -> Doc:
    return {
        "_id": defn.id,
        "tenant_id": defn.tenant_id,
        "name": defn.name,
        "description": defn.description,
        "config": defn.config.model_dump(),
        "status": defn.status,
        "created_at": defn.created_at,
        "updated_at": defn.updated_at,
    }


def from_doc(doc: Doc) -> CouponDefinition:
    return CouponDefinition(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        name=doc["name"],
        description=doc.get("description"),
        config=CouponConfig.model_validate(doc["config"]),
        status=doc["status"],
        created_at=aware(doc["created_at"]),
        updated_at=aware(doc["updated_at"]),
    )


class MongoDefinitionRepo:
    def __init__(self, mongo: Mongo, coupons: MongoCouponRepo) -> None:
        self._mongo = mongo
        self._col = mongo.definitions
        self._coupons = coupons

    async def insert(self, defn: CouponDefinition, shared: Coupon | None) -> None:
        """Raises DuplicateCodes when the shared code is taken; then nothing is stored."""

        async def write(session: AsyncClientSession) -> None:
            if shared is not None:
                await self._coupons.insert_atomic([shared], session)
            await self._col.insert_one(to_doc(defn), session=session)

        async with self._mongo.client.start_session() as session:
            await session.with_transaction(write)

    async def replace(
        self, defn: CouponDefinition, shared: Coupon | None, shared_changed: bool
    ) -> CouponDefinition | None:
        """Store `defn` unless archived meanwhile (then None); swap the shared code row when
        it changed, in the same transaction."""

        async def write(session: AsyncClientSession) -> Doc | None:
            doc = to_doc(defn)
            del doc["_id"], doc["created_at"]
            updated: Doc | None = await self._col.find_one_and_update(
                {"_id": defn.id, "tenant_id": defn.tenant_id, "status": {"$ne": "archived"}},
                {"$set": doc},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if updated is not None and shared_changed:
                await self._coupons.delete_by_issue_key(issue_keys.shared(defn.id), session)
                if shared is not None:
                    await self._coupons.insert_atomic([shared], session)
            return updated

        async with self._mongo.client.start_session() as session:
            result = await session.with_transaction(write)
        return from_doc(result) if result else None

    async def get(self, tenant_id: str, definition_id: str) -> CouponDefinition | None:
        doc = await self._col.find_one({"_id": definition_id, "tenant_id": tenant_id})
        return from_doc(doc) if doc else None

    async def page(
        self, tenant_id: str | None, statuses: Sequence[str], limit: int, offset: int
    ) -> tuple[list[CouponDefinition], int]:
        query: Doc = {"status": {"$in": list(statuses)}}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        total = await self._col.count_documents(query)
        cursor = self._col.find(query).sort(ORDER).skip(offset).limit(limit)
        return [from_doc(d) async for d in cursor], total

    async def set_status(
        self, tenant_id: str, definition_id: str, status: str, at: datetime
    ) -> CouponDefinition | None:
        """Change the status unless archived (None: missing or archived)."""
        doc = await self._col.find_one_and_update(
            {"_id": definition_id, "tenant_id": tenant_id, "status": {"$ne": "archived"}},
            {"$set": {"status": status, "updated_at": at}},
            return_document=ReturnDocument.AFTER,
        )
        return from_doc(doc) if doc else None

    async def references_reward(self, tenant_id: str, reward_item_id: str) -> list[str]:
        """Ids of the non-archived definitions that grant `reward_item_id`."""
        cursor = self._col.find(
            {
                "tenant_id": tenant_id,
                REWARD_ITEM: reward_item_id,
                "status": {"$ne": "archived"},
            },
            {"_id": 1},
        )
        return [d["_id"] async for d in cursor]
