"""Holds (reservations) in MongoDB: one document per reservation (`_id` = its id), and the
slot of its usage group it holds (redemption_repo.py: the slot names the reservation and
`hold_until`; an unassigned code's hold also holds a slot of the code's own group).
Writes, no transaction:

- reserve: claim the slot (or take over an expired hold's), insert the reservation (a crash
  between leaves a slot that frees itself at `hold_until`);
- settle (release, confirm, expire): one conditional update of the state, which also marks
  the work left (`open_until` = now), then the event and the slot's release, then the mark
  goes; a crash in between leaves a mark that `sweep_holds` finishes after the grace;
- `sweep_holds` also expires the holds whose time is over (`open_until` = their end), and
  announces each once (`coupon.reservation_released`, reason `expired`).
"""

from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import REDEMPTION_SLOTS, RESERVATIONS
from phoenix_coupons.adapters.nx27017_compat import aware, epoch_ms
from phoenix_coupons.adapters.outbox import MongoOutbox
from phoenix_coupons.adapters.redemption_repo import (
    MongoRedemptionRepo,
    claim_slot,
    release_slots,
)
from phoenix_coupons.domain.errors import SlotTaken
from phoenix_coupons.domain.outbox import redeemed, released
from phoenix_coupons.domain.redemption import slot_group
from phoenix_coupons.domain.reservation import Reservation, Settled, ending
from schemas.redemptions import Coupon as CouponSnapshot
from schemas.rewards import RewardItem

SWEEP_BATCH = 500


def to_doc(r: Reservation) -> Doc:
    return {
        "_id": r.id,
        "tenant_id": r.tenant_id,
        "user_id": r.user_id,
        "group": r.group,
        "state": r.state,
        "reserved_at": r.reserved_at,
        "expires_at": r.expires_at,
        "open_until": epoch_ms(r.expires_at),
        "definition_id": r.coupon.definition_id,
        "coupon_id": r.coupon.id,
        "coupon": r.coupon.model_dump(),
        "reward": r.reward.model_dump(),
        "slot": r.slot,
        "slot_no": r.slot_no,
        "request_hash": r.request_hash,
        "metadata": None if r.metadata is None else dict(r.metadata),
        "redemption_id": r.redemption_id,
        "settled_at": r.settled_at,
        "code_slot": r.code_slot,
    }


def from_doc(doc: Doc) -> Reservation:
    return Reservation(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        user_id=doc["user_id"],
        group=doc["group"],
        state=doc["state"],
        reserved_at=aware(doc["reserved_at"]),
        expires_at=aware(doc["expires_at"]),
        coupon=CouponSnapshot.model_validate(doc["coupon"]),
        reward=RewardItem.model_validate(doc["reward"]),
        slot=doc.get("slot"),
        slot_no=doc.get("slot_no"),
        request_hash=doc.get("request_hash"),
        metadata=doc.get("metadata"),
        redemption_id=doc.get("redemption_id"),
        settled_at=aware(doc.get("settled_at")),
        code_slot=doc.get("code_slot"),
    )


class MongoReservationRepo:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.db[RESERVATIONS.name]
        self._slots = mongo.db[REDEMPTION_SLOTS.name]
        self._counts = MongoCounters(mongo)

    async def claim_code_slot(
        self, reservation: Reservation, group: str, slot: str, slot_no: int, replaces: str | None
    ) -> None:
        """Hold a slot of an unassigned code's own group (before the definition's group's
        slot, which `insert` claims). SlotTaken when it is taken."""
        r = reservation
        holder = {"reservation_id": r.id, "hold_until": epoch_ms(r.expires_at)}
        await claim_slot(
            self._slots, self._counts, slot, group, slot_no, holder, replaces, r.reserved_at
        )

    async def insert(self, reservation: Reservation, replaces: str | None = None) -> None:
        """Hold its slot (numbered; `replaces`: taken over from that expired hold), then store
        it. SlotTaken when the slot or the id is taken; nothing of this call is left then."""
        r = reservation
        if r.slot is not None and r.slot_no is not None:
            holder = {"reservation_id": r.id, "hold_until": epoch_ms(r.expires_at)}
            await claim_slot(
                self._slots,
                self._counts,
                r.slot,
                r.group,
                r.slot_no,
                holder,
                replaces,
                r.reserved_at,
            )
        try:
            await self._col.insert_one(to_doc(r))
        except DuplicateKeyError as exc:  # the id: a keyed reserve stored before
            await self.release_slot(r)
            raise SlotTaken(str(exc)) from exc

    async def get(self, tenant_id: str, reservation_id: str) -> Reservation | None:
        doc = await self._col.find_one({"_id": reservation_id, "tenant_id": tenant_id})
        return from_doc(doc) if doc else None

    async def claim_confirm(
        self, tenant_id: str, reservation_id: str, redemption_id: str, now: datetime
    ) -> Reservation | None:
        """Name the redemption a confirm makes, once, while the hold is open: every confirm
        of this hold then makes that one. The reservation as it is after (None: missing)."""
        doc = await self._col.find_one_and_update(
            {
                "_id": reservation_id,
                "tenant_id": tenant_id,
                "state": "held",
                "redemption_id": None,
                "open_until": {"$gt": epoch_ms(now)},
            },
            {"$set": {"redemption_id": redemption_id}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return await self.get(tenant_id, reservation_id)
        return from_doc(doc)

    async def settle(
        self, reservation: Reservation, state: Settled, now: datetime
    ) -> Reservation | None:
        """Held -> `state`, once (None: another settled it first). `released`: only while its
        hold is open and no confirm has started; `expired`: only once its time is over;
        `confirmed`: only by the confirm that named its redemption. Marks the work left
        (`open_until` = now) for `finish` (or the sweep)."""
        r = reservation
        when: Doc = {"redemption_id": r.redemption_id}
        if state == "released":
            when["open_until"] = {"$gt": epoch_ms(now)}
        elif state == "expired":
            when["open_until"] = {"$lte": epoch_ms(now)}
        doc = await self._col.find_one_and_update(
            {"_id": r.id, "tenant_id": r.tenant_id, "state": "held", **when},
            {"$set": {"state": state, "settled_at": now, "open_until": epoch_ms(now)}},
            return_document=ReturnDocument.AFTER,
        )
        return from_doc(doc) if doc else None

    async def finish(self, reservation: Reservation) -> None:
        """After a settle's event: a released or expired hold's slot freed (if still its own:
        an expired one may have been taken over), and the mark of work left removed."""
        if reservation.state in ("released", "expired"):
            await self.release_slot(reservation)
        await self._col.update_one({"_id": reservation.id}, {"$unset": {"open_until": ""}})

    async def release_slot(self, r: Reservation) -> None:
        """Free the slots the hold still holds (a slot taken over is another's now)."""
        if r.slots:
            held = [(s, r.id, slot_group(s)) for s in r.slots]
            await release_slots(self._slots, self._counts, held, "reservation_id")

    async def lease(self, r: Reservation, now: datetime, grace: timedelta) -> bool:
        """A settled hold's unfinished work, for one sweep: its mark moved past `now` by the
        grace (due again then, should this sweep die too). False: another sweep has it."""
        done = await self._col.update_one(
            {"_id": r.id, "state": r.state, "open_until": {"$lte": epoch_ms(now)}},
            {"$set": {"open_until": epoch_ms(now + grace)}},
        )
        return done.modified_count == 1

    async def due(self, now: datetime, limit: int = SWEEP_BATCH) -> list[Reservation]:
        """Holds whose time is over, and settles left unfinished."""
        cursor = self._col.find({"open_until": {"$lte": epoch_ms(now)}}).limit(limit)
        return [from_doc(d) async for d in cursor]


async def sweep_holds(mongo: Mongo, now: datetime, grace: timedelta) -> int:
    """Holds whose time is over: expired and announced (`coupon.reservation_released`,
    reason `expired`, once), their slot freed unless taken over already; a hold a confirm
    started is settled by whether its redemption came (after the grace: it may be under
    way). Settles a crash left unfinished (older than the grace): their event and slot.
    Returns how many it settled."""
    repo, outbox = MongoReservationRepo(mongo), MongoOutbox(mongo)
    settled = 0
    for r in await repo.due(now):
        done: Reservation | None = r
        if r.state == "held":
            target: Settled = "expired"
            if r.redemption_id is not None:
                if r.expires_at > now - grace:
                    continue  # its confirm may be under way
                made = await mongo.redemptions.find_one(
                    {"_id": r.redemption_id, "reservation_id": r.id}, {"_id": 1}
                )
                target = "confirmed" if made else "expired"
            done = await repo.settle(r, target, now)
        elif r.settled_at is not None and r.settled_at > now - grace:
            continue  # its settle is under way
        elif not await repo.lease(r, now, grace):
            continue  # another sweep is finishing it
        end = None if done is None else ending(done)
        if done is None or end is None:
            continue  # settled by another meanwhile: it finishes
        entries = [released(done, *end)]
        if end[0] == "confirmed" and done.redemption_id is not None:
            stored = await MongoRedemptionRepo(mongo).get(done.tenant_id, done.redemption_id)
            if stored is not None:  # its confirm may have stopped before announcing it
                entries.insert(0, redeemed(stored))
        await outbox.prepare(entries)
        await outbox.ready(entries)
        await repo.finish(done)
        settled += 1
    return settled
