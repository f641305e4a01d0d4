"""Redemptions in MongoDB. The unique `slot` index makes usage limits exact; each row is also
its own outbox entry for `coupon.redeemed` (`publish_*`) and for the rollback
(`rollback_publish_*`)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from phoenix_coupons.adapters.kafka import OutboundRecord, event_record
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.adapters.outbox_failures import Unsendable
from phoenix_coupons.adapters.outbox_relay import OutboxSource, outbox_entry
from phoenix_coupons.domain.errors import Contended, SlotTaken
from phoenix_coupons.domain.events import coupon_redeemed, redemption_rolled_back
from phoenix_coupons.domain.redemption import Redemption
from schemas.redemptions import Coupon as CouponSnapshot
from schemas.rewards import RewardItem

REDEEMED = "publish"  # the outbox of its coupon.redeemed event
ROLLED_BACK = "rollback_publish"  # and of its coupon.redemption_rolled_back


def to_doc(redemption: Redemption, slot: str, slot_no: int | None) -> Doc:
    """A new redemption's row: `slot` (numbered `slot_no` within its group's limit, None for
    a free slot) and the flat copies of its coupon that the indexes and events read."""
    r = redemption
    return {
        "_id": r.id,
        "tenant_id": r.tenant_id,
        "definition_id": r.coupon.definition_id,
        "coupon_id": r.coupon.id,
        "code": r.coupon.code,
        "user_id": r.user_id,
        "group": r.group,
        "state": r.state,
        "redeemed_at": r.redeemed_at,
        "rolled_back_at": r.rolled_back_at,
        "coupon": r.coupon.model_dump(),
        "reward": r.reward.model_dump(),
        "request_hash": r.request_hash,
        "slot": slot,
        "slot_no": slot_no,
        **outbox_entry(REDEEMED),
        **outbox_entry(ROLLED_BACK, pending=False),
    }


def from_doc(doc: Doc) -> Redemption:
    return Redemption(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        user_id=doc["user_id"],
        group=doc["group"],
        state=doc["state"],
        redeemed_at=aware(doc["redeemed_at"]),
        rolled_back_at=aware(doc.get("rolled_back_at")),
        coupon=CouponSnapshot.model_validate(doc["coupon"]),
        reward=RewardItem.model_validate(doc["reward"]),
        request_hash=doc.get("request_hash"),
    )


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
        raise Contended(f"could not allocate a slot hint for {group}")

    async def insert(self, redemption: Redemption, slot: str, slot_no: int | None) -> None:
        """Raises SlotTaken when the slot (or the id) is taken."""
        try:
            await self._col.insert_one(to_doc(redemption, slot, slot_no))
        except DuplicateKeyError as exc:
            raise SlotTaken(str(exc)) from exc

    async def get(self, tenant_id: str, redemption_id: str) -> Redemption | None:
        doc = await self._col.find_one({"_id": redemption_id, "tenant_id": tenant_id})
        return from_doc(doc) if doc else None

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
    ) -> Redemption | None:
        """Give the use back, once: None when missing or rolled back already."""
        doc = await self._col.find_one_and_update(
            {"_id": redemption_id, "tenant_id": tenant_id, "state": "redeemed"},
            {
                "$set": {
                    "state": "rolled_back",
                    "slot": free_slot,
                    "slot_no": None,
                    "rolled_back_at": at,
                    **outbox_entry(ROLLED_BACK),
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        return from_doc(doc) if doc else None

    async def for_coupon(self, coupon_id: str, limit: int = 100) -> list[Redemption]:
        cursor = self._col.find({"coupon_id": coupon_id}).sort("redeemed_at", -1).limit(limit)
        return [from_doc(d) async for d in cursor]


def _rollback_record(doc: Doc, topic: str) -> OutboundRecord:
    if doc.get(f"{REDEEMED}_dead"):
        # Its redemption was never announced: a reversal of a grant no one saw would be
        # wrong. Set aside too; an operator who re-queues the redemption re-queues this.
        raise Unsendable("redeem_dead", "the redemption's own coupon.redeemed event is dead")
    return event_record(redemption_rolled_back(from_doc(doc)), topic)


def outbox_sources(topic: str) -> list[OutboxSource]:
    """The redemption events, in the order the relay drains them."""
    return [
        OutboxSource(
            "coupon.redeemed",
            "redemptions",
            REDEEMED,
            "redeemed_at",
            lambda d: event_record(coupon_redeemed(from_doc(d)), topic),
        ),
        OutboxSource(
            "coupon.redemption_rolled_back",
            "redemptions",
            ROLLED_BACK,
            "redeemed_at",
            lambda d: _rollback_record(d, topic),
            # Never before the redemption's own event, even when another relay holds that one.
            requires={f"{REDEEMED}_pending": {"$ne": True}},
            since="rolled_back_at",
        ),
    ]
