"""The expiry schedule, kept on the coupons themselves (no collection of its own):
- `expiry_due`: epoch ms of the coupon's next step (domain/expiry.py), absent when it has
  none; one single-field index, so the scheduler's query (`expiry_due <= now`, oldest first,
  limited) is an index range, never a scan;
- `expiry_steps`: the steps sent, each as "<step>:<attempt>" (the scheduler attempt whose
  claim sent it), which the outbox sweep checks before it readies a step's entry;
- `expiry_claim`: the attempt holding the coupon while it works on it.

A scheduler claims due coupons by moving their due time to the end of its lease
(`expiry_due <= now` -> lease end, with its attempt id): of several schedulers, one claim
wins per coupon. It then prepares the steps' outbox entries, advances each coupon it still
holds (steps marked sent, next due time, claim cleared: a compare-and-set on its attempt
id) and readies the entries of those it advanced. A scheduler that dies holding claims
leaves due times at its lease's end: another takes them over then."""

from collections.abc import Sequence
from datetime import datetime, timedelta

from pymongo import UpdateOne

from phoenix_coupons.adapters import list_keys
from phoenix_coupons.adapters.coupon_repo import (
    BY_DEFINITION,
    CLAIM,
    DUE,
    STEPS,
    definition_prefix,
    from_doc,
    from_ms,
)
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.nx27017_compat import epoch_ms, find_in
from phoenix_coupons.services.ports import ScheduleChange, Scheduled


class MongoExpirySchedule:
    def __init__(self, mongo: Mongo) -> None:
        self._mongo = mongo
        self._col = mongo.coupons
        self._redemptions = mongo.redemptions

    async def oldest_due(self) -> datetime | None:
        doc = await self._col.find_one({DUE: {"$gte": 0}}, {DUE: 1}, sort=[(DUE, 1)])
        return None if doc is None else from_ms(doc[DUE])

    async def claim(
        self, now: datetime, limit: int, lease: timedelta, attempt: str
    ) -> tuple[int, list[Scheduled]]:
        """Up to `limit` coupons due at `now`, oldest first, claimed for `attempt` until
        `now + lease`; those another scheduler claimed first are left out."""
        now_ms = epoch_ms(now)
        due = await self._col.find({DUE: {"$lte": now_ms}}, {"_id": 1}).sort(DUE, 1).to_list(limit)
        if not due:
            return 0, []
        ids = [d["_id"] for d in due]
        await self._col.update_many(
            {"_id": {"$in": ids}, DUE: {"$lte": now_ms}},
            {"$set": {DUE: epoch_ms(now + lease), CLAIM: attempt}},
        )
        held = self._col.find({"_id": {"$in": ids}, CLAIM: attempt})
        return len(due), [Scheduled(from_doc(d), tuple(d.get(STEPS) or ())) async for d in held]

    async def advance(self, attempt: str, changes: Sequence[ScheduleChange]) -> set[str]:
        """Write each coupon's steps and next due time if `attempt` still holds it; returns
        the ids of those advanced with new marks (their entries may be readied)."""
        if not changes:
            return set()
        ops = []
        for c in changes:
            update: Doc = {"$set": {STEPS: [*c.marks, *c.new_marks]}, "$unset": {CLAIM: ""}}
            if c.next_due is None:
                update["$unset"][DUE] = ""
            else:
                update["$set"][DUE] = epoch_ms(c.next_due)
            ops.append(UpdateOne({"_id": c.coupon_id, CLAIM: attempt}, update))
        await self._col.bulk_write(ops, ordered=False)
        marked = {c.coupon_id: c.new_marks for c in changes if c.new_marks}
        if not marked:
            return set()
        # A claim lost (lease ended, another attempt took it) left the coupon as the other
        # attempt wrote it: advanced are those that record this attempt's marks.
        stored = self._col.find({"_id": {"$in": list(marked)}}, {STEPS: 1})
        return {d["_id"] async for d in stored if set(marked[d["_id"]]) <= set(d.get(STEPS) or ())}

    async def recheck(self, tenant_id: str, definition_id: str, at: datetime) -> None:
        """Two updates in the definition's range of the `by_definition` list key."""
        start = definition_prefix(tenant_id, definition_id) + list_keys.SEP
        mine = {BY_DEFINITION: {"$gte": start, "$lt": start + list_keys.END}}
        at_ms = epoch_ms(at)
        await self._col.update_many({**mine, DUE: {"$gt": at_ms}}, {"$set": {DUE: at_ms}})
        # Coupons issued while the definition had no expiry: it may have one now.
        unscheduled = {
            **mine,
            "kind": "issued",
            "status": "active",
            "expires_at": None,
            DUE: {"$exists": False},
            STEPS: {"$exists": False},
        }
        await self._col.update_many(unscheduled, {"$set": {DUE: at_ms}})

    async def redeemed(self, coupon_ids: Sequence[str]) -> set[str]:
        """Which of the coupons have an active redemption: through the `coupon_id` index,
        whatever the number of redemptions stored (`find_in`)."""
        if not coupon_ids:
            return set()
        found = await find_in(
            self._redemptions,
            "coupon_id",
            coupon_ids,
            {"state": "redeemed"},
            {"coupon_id": 1},
            await self._mongo.stand_in(),
        )
        return {d["coupon_id"] for d in found}
