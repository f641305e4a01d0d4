"""Redemptions in MongoDB. Usage limits are exact through `redemption_slots`: one document
per held slot (`_id` = the slot), claimed before the redemption is inserted and confirmed
after (a crash between leaves an unconfirmed slot that `sweep_slots` confirms or releases);
a rollback deletes its slot. Each group's held slots are counted in `counters`
(`uses:<group>`), read by `_id`. The events wait in the outbox (services prepare them)."""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import REDEMPTION_SLOTS
from phoenix_coupons.adapters.nx27017_compat import aware, epoch_ms
from phoenix_coupons.domain.errors import Contended, SlotTaken
from phoenix_coupons.domain.redemption import Redemption
from schemas.redemptions import Coupon as CouponSnapshot
from schemas.rewards import RewardItem

SWEEP_BATCH = 1000


def uses_key(group: str) -> str:
    """The count of a usage group's held slots (its active redemptions)."""
    return f"uses:{group}"


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
        self._slots = mongo.db[REDEMPTION_SLOTS.name]
        self._hints = mongo.usage_hints
        self._counts = MongoCounters(mongo)

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
        """Claim the slot (a numbered one), insert the redemption, confirm the slot. Raises
        SlotTaken when the slot (or the id) is taken; nothing of this call is left then."""
        r = redemption
        if slot_no is not None:
            claim = {
                "_id": slot,
                "redemption_id": r.id,
                "group": r.group,
                "slot_no": slot_no,
                "unconfirmed": epoch_ms(r.redeemed_at),
            }
            try:
                await self._slots.insert_one(claim)
            except DuplicateKeyError as exc:
                raise SlotTaken(str(exc)) from exc
            await self._counts.add({uses_key(r.group): 1})
        try:
            await self._col.insert_one(to_doc(r, slot, slot_no))
        except DuplicateKeyError as exc:  # the id: a keyed redeem stored before
            if slot_no is not None:
                await _release(self._slots, self._counts, [(slot, r.id, r.group)])
            raise SlotTaken(str(exc)) from exc
        if slot_no is not None:
            await self._slots.update_one({"_id": slot}, {"$unset": {"unconfirmed": ""}})

    async def get(self, tenant_id: str, redemption_id: str) -> Redemption | None:
        doc = await self._col.find_one({"_id": redemption_id, "tenant_id": tenant_id})
        return from_doc(doc) if doc else None

    async def active_count(self, group: str) -> int:
        return await self._counts.get(uses_key(group))

    async def used_slots(self, group: str) -> set[int]:
        cursor = self._slots.find({"group": group}, {"slot_no": 1})
        return {int(d["slot_no"]) async for d in cursor if d.get("slot_no") is not None}

    async def active_counts(self, groups: Sequence[str]) -> dict[str, int]:
        counts = await self._counts.get_many([uses_key(g) for g in groups])
        return {g: n for g in groups if (n := counts[uses_key(g)])}

    async def roll_back(
        self, tenant_id: str, redemption_id: str, free_slot: str, at: datetime
    ) -> Redemption | None:
        """Give the use back, once: None when missing or rolled back already. Its slot is
        put in question first (`unconfirmed`) and deleted after: a crash between leaves a
        slot `sweep_slots` settles by the redemption's state."""
        held = await self._col.find_one(
            {"_id": redemption_id, "tenant_id": tenant_id, "state": "redeemed"},
            {"slot_no": 1, "slot": 1},
        )
        if held is None:
            return None
        if held.get("slot_no") is not None:
            await self._slots.update_one(
                {"_id": held["slot"], "redemption_id": redemption_id},
                {"$set": {"unconfirmed": epoch_ms(at)}},
            )
        before = await self._col.find_one_and_update(
            {"_id": redemption_id, "tenant_id": tenant_id, "state": "redeemed"},
            {
                "$set": {
                    "state": "rolled_back",
                    "slot": free_slot,
                    "slot_no": None,
                    "rolled_back_at": at,
                }
            },
            return_document=ReturnDocument.BEFORE,
        )
        if before is None:
            return None
        if before.get("slot_no") is not None:
            await _release(
                self._slots, self._counts, [(before["slot"], redemption_id, before["group"])]
            )
        return from_doc({**before, "state": "rolled_back", "rolled_back_at": at})

    async def for_coupon(self, coupon_id: str, limit: int = 100) -> list[Redemption]:
        cursor = self._col.find({"coupon_id": coupon_id}).sort("redeemed_at", -1).limit(limit)
        return [from_doc(d) async for d in cursor]


async def _release(
    slots: AsyncCollection[Doc], counts: MongoCounters, held: Sequence[tuple[str, str, str]]
) -> None:
    """Delete each (slot, redemption id, group) still held by that redemption, and count it."""
    released: Counter[str] = Counter()
    for slot, redemption_id, group in held:
        result = await slots.delete_one({"_id": slot, "redemption_id": redemption_id})
        released[uses_key(group)] -= result.deleted_count
    await counts.add(released)


async def sweep_slots(mongo: Mongo, now: datetime, grace: timedelta) -> int:
    """Slots claimed longer than `grace` ago and still unconfirmed (a crash between the
    claim and the redemption, or its confirmation): confirmed when their redemption holds
    them, released when it never came or left them. Returns how many it settled."""
    slots = mongo.db[REDEMPTION_SLOTS.name]
    # Epoch milliseconds: `$set` writes it too (nx27017_compat.py: datetimes `$set` wrote).
    cutoff = epoch_ms(now - grace)
    stale = await slots.find({"unconfirmed": {"$lt": cutoff}}).to_list(SWEEP_BATCH)
    if not stale:
        return 0
    ids = list({d["redemption_id"] for d in stale})
    holders = {
        d["_id"]: d
        async for d in mongo.redemptions.find({"_id": {"$in": ids}}, {"state": 1, "slot": 1})
    }
    confirm, release = [], []
    for d in stale:
        r = holders.get(d["redemption_id"])
        if r is not None and r.get("state") == "redeemed" and r.get("slot") == d["_id"]:
            confirm.append(d["_id"])
        else:
            release.append((d["_id"], d["redemption_id"], d["group"]))
    if confirm:
        await slots.update_many({"_id": {"$in": confirm}}, {"$unset": {"unconfirmed": ""}})
    await _release(slots, MongoCounters(mongo), release)
    return len(stale)
