"""Redemptions in MongoDB. The unique `slot` index makes usage limits exact; each row is also
its own outbox entry for `coupon.redeemed` (`publish_*`) and for the rollback
(`rollback_publish_*`)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from phoenix_coupons.adapters.kafka import OutboundRecord
from phoenix_coupons.adapters.mongo import Doc, Mongo, aware
from phoenix_coupons.adapters.outbox_failures import Unsendable
from phoenix_coupons.adapters.outbox_relay import OutboxSource
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.services.ports import SlotTaken
from schemas.events import CouponRedeemed, RedemptionRolledBack


def normalized(doc: Doc) -> Doc:
    for field in ("redeemed_at", "rolled_back_at"):
        doc[field] = aware(doc.get(field))
    return doc


class MongoRedemptionRepo:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.redemptions
        self._hints = mongo.usage_hints

    async def next_slot_hint(self, group: str) -> int:
        """1, 2, 3, ... per group (atomic): the slot a new redemption tries first."""
        for _ in range(3):  # a concurrent first upsert can lose the race once
            try:
                doc = await self._hints.find_one_and_update(
                    {"_id": group},
                    {"$inc": {"next": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                return int(doc["next"]) if doc else 1
            except DuplicateKeyError:
                continue
        raise RuntimeError(f"could not allocate a slot hint for {group}")

    async def insert(self, doc: Doc) -> None:
        """Raises SlotTaken when the slot (or the id) is taken."""
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError as exc:
            raise SlotTaken(str(exc)) from exc

    async def get(self, tenant_id: str, redemption_id: str) -> Doc | None:
        doc = await self._col.find_one({"_id": redemption_id, "tenant_id": tenant_id})
        return normalized(doc) if doc else None

    async def active_count(self, group: str) -> int:
        return await self._col.count_documents({"group": group, "state": "redeemed"})

    async def used_slots(self, group: str) -> set[int]:
        cursor = self._col.find({"group": group, "state": "redeemed"}, {"slot_no": 1})
        return {int(d["slot_no"]) async for d in cursor if d.get("slot_no") is not None}

    async def active_counts(self, groups: Sequence[str]) -> dict[str, int]:
        if not groups:
            return {}
        pipeline: list[dict[str, Any]] = [
            {"$match": {"group": {"$in": list(groups)}, "state": "redeemed"}},
            {"$group": {"_id": "$group", "n": {"$sum": 1}}},
        ]
        cursor = await self._col.aggregate(pipeline)
        return {d["_id"]: int(d["n"]) async for d in cursor}

    async def roll_back(
        self, tenant_id: str, redemption_id: str, free_slot: str, at: datetime
    ) -> Doc | None:
        """Give the use back, once: None when missing or rolled back already."""
        doc = await self._col.find_one_and_update(
            {"_id": redemption_id, "tenant_id": tenant_id, "state": "redeemed"},
            {
                "$set": {
                    "state": "rolled_back",
                    "slot": free_slot,
                    "slot_no": None,
                    "rolled_back_at": at,
                    "rollback_publish_pending": True,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        return normalized(doc) if doc else None

    async def for_coupon(self, coupon_id: str, limit: int = 100) -> list[Doc]:
        cursor = self._col.find({"coupon_id": coupon_id}).sort("redeemed_at", -1).limit(limit)
        return [normalized(d) async for d in cursor]


def _event_record(doc: Doc, topic: str, kind: str, at_field: str) -> OutboundRecord:
    model = CouponRedeemed if kind == "coupon.redeemed" else RedemptionRolledBack
    event = model(
        event_id=event_id(kind, doc["_id"]),
        occurred_at=aware(doc[at_field]),
        tenant_id=doc["tenant_id"],
        user_id=doc["user_id"],
        redemption_id=doc["_id"],
        coupon_id=doc["coupon_id"],
        code=doc["code"],
        definition_id=doc["definition_id"],
        reward=doc["reward"],
    )
    return OutboundRecord(
        topic=topic,
        key=doc["user_id"].encode(),
        value=event.model_dump_json().encode(),
        headers=[
            ("event_type", kind.encode()),
            ("tenant_id", doc["tenant_id"].encode()),
            ("event_id", event.event_id.encode()),
            ("content-type", b"application/json"),
        ],
    )


def _rollback_record(doc: Doc, topic: str) -> OutboundRecord:
    if doc.get("publish_dead"):
        # Its redemption was never announced: a reversal of a grant no one saw would be
        # wrong. Set aside too; an operator who re-queues the redemption re-queues this.
        raise Unsendable("redeem_dead", "the redemption's own coupon.redeemed event is dead")
    return _event_record(doc, topic, "coupon.redemption_rolled_back", "rolled_back_at")


def outbox_sources(topic: str) -> list[OutboxSource]:
    """The redemption events, in the order the relay drains them."""
    return [
        OutboxSource(
            "coupon.redeemed",
            "redemptions",
            "publish",
            "redeemed_at",
            lambda d: _event_record(d, topic, "coupon.redeemed", "redeemed_at"),
        ),
        OutboxSource(
            "coupon.redemption_rolled_back",
            "redemptions",
            "rollback_publish",
            "redeemed_at",
            lambda d: _rollback_record(d, topic),
            # Never before the redemption's own event, even when another relay holds that one.
            requires={"publish_pending": {"$ne": True}},
            since="rolled_back_at",
        ),
    ]
