"""Coupon definitions in MongoDB, without multi-document transactions. A custom-format
definition's shared code is a coupon row of kind `shared` whose code is claimed in the code
registry like any other. Writes go in an order a crash cannot spoil: claim the code, write the
coupon, write the definition, confirm the claim; a refusal undoes what the request wrote, and
a crash leaves an unconfirmed claim that claims_sweep.py settles against the definition.

Lists are read by list keys (list_keys.py), one range per status: `by_tenant`
("<tenant>|<status>|<newest first>|<_id>") and `by_status` ("<status>|..."), with kept
totals (`definitions:<tenant or *>:<status>`)."""

import asyncio
from collections.abc import Sequence
from datetime import datetime

from pymongo import ReturnDocument

from phoenix_coupons.adapters import counter_keys, list_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.coupon_repo import to_doc as coupon_doc
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.errors import DuplicateCodes
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.ports import Page
from schemas.coupons import CouponConfig, CouponDefinition

BY_TENANT, BY_STATUS = "by_tenant", "by_status"
STATUS_RETRIES = 5  # compare-and-set rounds of a status change racing another
REWARD_ITEM = "config.reward_item_id"
AUTO_GENERATE = "config.auto_generate"


def auto_generating(triggers: Sequence[str]) -> Doc:
    """Active definitions that issue coupons on events of these triggers."""
    return {
        "status": "active",
        f"{AUTO_GENERATE}.enabled": True,
        f"{AUTO_GENERATE}.trigger": {"$in": list(triggers)},
    }


def list_fields(tenant_id: str, status: str, created_at: datetime, defn_id: str) -> Doc:
    tail = list_keys.tail(created_at, defn_id)
    return {
        BY_TENANT: list_keys.key(tenant_id, status, tail),
        BY_STATUS: list_keys.key(status, tail),
    }


def status_counts(tenant_id: str, status: str, sign: int) -> dict[str, int]:
    return {
        counter_keys.definitions(tenant_id, status): sign,
        counter_keys.definitions(None, status): sign,
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
        **list_fields(defn.tenant_id, defn.status, defn.created_at, defn.id),
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
        self._counters = MongoCounters(mongo)

    async def insert(self, defn: CouponDefinition, shared: Coupon | None) -> None:
        """Raises DuplicateCodes when the shared code is taken; then nothing is stored."""
        if shared is not None:
            await self._coupons.insert_unconfirmed([shared])
        try:
            await self._col.insert_one(to_doc(defn))
        except BaseException:
            if shared is not None:
                await asyncio.shield(self._coupons.undo([shared]))
            raise
        if shared is not None and not await self._coupons.confirm([shared]):
            await self._col.delete_one({"_id": defn.id})
            await self._coupons.undo([shared])
            raise DuplicateCodes(f"code {shared.code_norm} was taken meanwhile")
        await self._counters.add(status_counts(defn.tenant_id, defn.status, +1))

    async def replace(
        self, defn: CouponDefinition, shared: Coupon | None, shared_changed: bool
    ) -> CouponDefinition | None:
        """Store `defn` unless missing or archived meanwhile (then None); swap the shared code
        row when it changed: claim the new code, write the definition, write the row, release
        the old code, confirm the new one."""
        if shared_changed and shared is not None:
            claimed = await self._coupons.codes.claim([shared])
            if claimed.refused:
                raise DuplicateCodes(f"code {shared.code_norm} is taken")
        doc = to_doc(defn)
        for name in ("_id", "created_at", "status", BY_TENANT, BY_STATUS):
            del doc[name]
        try:
            updated: Doc | None = await self._col.find_one_and_update(
                {"_id": defn.id, "tenant_id": defn.tenant_id, "status": {"$ne": "archived"}},
                {"$set": doc},
                return_document=ReturnDocument.AFTER,
            )
        except BaseException:
            if shared_changed and shared is not None:
                await asyncio.shield(self._coupons.codes.release([shared]))
            raise
        if updated is None:
            if shared_changed and shared is not None:
                await self._coupons.codes.release([shared])
            return None
        if shared_changed:
            await self.put_shared(defn.id, shared)
        return from_doc(updated)

    async def put_shared(self, definition_id: str, shared: Coupon | None) -> None:
        """Make the definition's shared code row `shared` (None: no row), its claim
        confirmed, the code it named before released. Idempotent (the sweep finishes with it
        a swap a crash cut short)."""
        key = issue_keys.shared(definition_id)
        if shared is None:
            await self._coupons.delete_by_issue_key(key)
            return
        before = await self._coupons.replace_row(coupon_doc(shared))
        if before is not None and before.code_norm != shared.code_norm:
            await self._coupons.codes.release([before])
        if not await self._coupons.confirm([shared], count=before is None):
            raise DuplicateCodes(f"code {shared.code_norm} was taken meanwhile")

    async def get(self, tenant_id: str, definition_id: str) -> CouponDefinition | None:
        doc = await self._col.find_one({"_id": definition_id, "tenant_id": tenant_id})
        return from_doc(doc) if doc else None

    async def page(
        self,
        tenant_id: str | None,
        statuses: Sequence[str],
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> Page[CouponDefinition]:
        ranges = [
            (BY_STATUS, status) if tenant_id is None else (BY_TENANT, f"{tenant_id}|{status}")
            for status in statuses
        ]
        page = await list_keys.merged_page(self._col, ranges, limit, offset, after)
        counts = await self._counters.get_many(
            [counter_keys.definitions(tenant_id, s) for s in statuses]
        )
        return Page([from_doc(d) for d in page.docs], sum(counts.values()), page.next_after)

    async def set_status(
        self, tenant_id: str, definition_id: str, status: str, at: datetime
    ) -> CouponDefinition | None:
        """Change the status unless archived (None: missing or archived): compare-and-set on
        the status read, so the list keys and the kept counts move with it."""
        for _ in range(STATUS_RETRIES):
            current = await self._col.find_one({"_id": definition_id, "tenant_id": tenant_id})
            if current is None or current["status"] == "archived":
                return None
            fields = list_fields(tenant_id, status, aware(current["created_at"]), definition_id)
            doc = await self._col.find_one_and_update(
                {"_id": definition_id, "tenant_id": tenant_id, "status": current["status"]},
                {"$set": {"status": status, "updated_at": at, **fields}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                if current["status"] != status:
                    await self._counters.add(
                        {
                            **status_counts(tenant_id, current["status"], -1),
                            **status_counts(tenant_id, status, +1),
                        }
                    )
                return from_doc(doc)
        raise RuntimeError(f"the status of definition {definition_id} keeps changing")

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
