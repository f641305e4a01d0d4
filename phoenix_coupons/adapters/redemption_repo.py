"""Redemptions in MongoDB. Usage limits are exact through `redemption_slots`: one document
per held slot (`_id` = the slot), claimed before the redemption is inserted and confirmed
after (a crash between leaves an unconfirmed slot that `sweep_slots` confirms or releases);
a rollback deletes its slot (or keeps it: `use_kept`). Each group's held slots are counted
in `counters` (`uses:<group>`), read by `_id`; beside it, `$max`, the time of the group's
last redemption (`last`, epoch ms: the code export's `last_redeemed_at`). The events wait
in the outbox (services prepare them).

A hold (reservation_repo.py) holds a slot too: the slot names its `reservation_id` and
`hold_until` (epoch ms) instead of a redemption. Once `hold_until` has passed, a new holder
takes the slot over in one conditional update (`_id`, the old holder, `hold_until` passed):
the count is unchanged, and the expired hold has freed its use without waiting for a sweep.
A confirm turns its hold's slot into its redemption's the same way (`insert_held`).

An unassigned code's use holds two slots: one of the code's own group (`code_slot`, claimed
first: the callers of one code contend there) and one of the definition's group. Each is
claimed, confirmed, swept and given back as above; a redemption refused the second slot
gives the first back at once (a crash in between leaves it unconfirmed: swept)."""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from pymongo import ReturnDocument, UpdateMany
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.coupon_repo import from_ms
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import REDEMPTION_SLOTS
from phoenix_coupons.adapters.nx27017_compat import aware, epoch_ms
from phoenix_coupons.domain.errors import Contended, SlotTaken
from phoenix_coupons.domain.redemption import Redemption, free_slot, slot_group
from phoenix_coupons.domain.reservation import HoldTurn, Reservation
from phoenix_coupons.services.ports import GroupUsage, SlotClaim
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
        "metadata": None if r.metadata is None else dict(r.metadata),
        "rollback_reason": r.rollback_reason,
        "use_kept": r.use_kept,
        "reservation_id": r.reservation_id,
        "code_slot": r.code_slot,
    }


def numbered(doc: Doc) -> list[str]:
    """The numbered slots a stored redemption holds: its group's (unless free) and its code's."""
    slots = [doc["slot"]] if doc.get("slot_no") is not None else []
    return slots + ([doc["code_slot"]] if doc.get("code_slot") else [])


def hold_taken_over(slot: str, holder: str, new_holder: Doc, now: datetime) -> tuple[Doc, Doc]:
    """The filter and update that take over `slot` from the hold `holder` once its time is
    over (at `now`): one atomic write, the slot's count unchanged."""
    return (
        {"_id": slot, "reservation_id": holder, "hold_until": {"$lte": epoch_ms(now)}},
        {"$set": new_holder, "$unset": {k: "" for k in HOLDER_FIELDS if k not in new_holder}},
    )


# What names a slot's holder: a redemption (unconfirmed while its write is under way), or a
# hold (a reservation, until `hold_until`).
HOLDER_FIELDS = ("redemption_id", "unconfirmed", "reservation_id", "hold_until")


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
        metadata=doc.get("metadata"),
        rollback_reason=doc.get("rollback_reason"),
        use_kept=bool(doc.get("use_kept")),
        reservation_id=doc.get("reservation_id"),
        code_slot=doc.get("code_slot"),
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

    async def claim_code_slot(
        self, redemption: Redemption, group: str, slot: str, slot_no: int, replaces: str | None
    ) -> None:
        """Claim a slot of an unassigned code's own group for the redemption (unconfirmed:
        `insert` confirms it with the redemption's slot). SlotTaken when it is taken."""
        r = redemption
        holder = {"redemption_id": r.id, "unconfirmed": epoch_ms(r.redeemed_at)}
        await claim_slot(
            self._slots, self._counts, slot, group, slot_no, holder, replaces, r.redeemed_at
        )

    async def release_code_slot(self, redemption: Redemption) -> None:
        """Give back the code's slot of a redemption that was not stored."""
        r = redemption
        if r.code_slot is not None:
            await release_slots(
                self._slots, self._counts, [(r.code_slot, r.id, slot_group(r.code_slot))]
            )

    async def insert(
        self,
        redemption: Redemption,
        slot: str,
        slot_no: int | None,
        replaces: str | None = None,
        confirm: bool = True,
    ) -> None:
        """Claim the slot (a numbered one; `replaces`: take it over from that expired hold),
        insert the redemption, confirm its slots (an unassigned code's too; `confirm` False:
        the caller confirms them later, `confirm_claims`). Raises SlotTaken when the slot (or
        the id) is taken; nothing of this call is left then but the code's slot
        (`release_code_slot`)."""
        r = redemption
        if slot_no is not None:
            holder = {"redemption_id": r.id, "unconfirmed": epoch_ms(r.redeemed_at)}
            await claim_slot(
                self._slots, self._counts, slot, r.group, slot_no, holder, replaces, r.redeemed_at
            )
        try:
            await self._col.insert_one(to_doc(r, slot, slot_no))
        except DuplicateKeyError as exc:  # the id: a keyed redeem stored before
            if slot_no is not None:
                await release_slots(self._slots, self._counts, [(slot, r.id, r.group)])
            raise SlotTaken(str(exc)) from exc
        if confirm:
            await self._confirm(
                [s for s in (slot if slot_no is not None else None, r.code_slot) if s], r.id
            )

    async def confirm_claims(self, claims: Sequence[SlotClaim]) -> None:
        """Confirm the slots of stored redemptions, in one command: each slot only while it
        still bears its claim's mark (`unconfirmed` = the redemption's time). A rollback
        that put it in question meanwhile wrote another mark (`roll_back`): left to it and
        to the sweep."""
        ops = [
            UpdateMany(
                {
                    "_id": {"$in": list(c.slots)},
                    "redemption_id": c.redemption_id,
                    "unconfirmed": epoch_ms(c.claimed_at),
                },
                {"$unset": {"unconfirmed": ""}},
            )
            for c in claims
            if c.slots
        ]
        if ops:
            await self._slots.bulk_write(ops, ordered=False)

    async def _confirm(self, slots: Sequence[str], redemption_id: str) -> None:
        """The redemption is stored: its slots are no longer in question."""
        if slots:
            await self._slots.update_many(
                {"_id": {"$in": list(slots)}, "redemption_id": redemption_id},
                {"$unset": {"unconfirmed": ""}},
            )

    async def insert_held(
        self, redemption: Redemption, hold: Reservation, now: datetime
    ) -> HoldTurn:
        """Turn the hold's slots into the redemption's (while the hold still holds them and
        its time is not over), insert the redemption, confirm the slots: "turned"; "again"
        when an earlier call of this hold stored it; "lost" when the hold lost a slot (the
        ones turned before are given back)."""
        r = redemption
        slot = hold.slot or free_slot(r.id)
        turned: list[str] = []
        for held in hold.slots:
            if not await self._turn(held, hold.id, r, now):
                await release_slots(
                    self._slots, self._counts, [(t, r.id, slot_group(t)) for t in turned]
                )
                return "lost"
            turned.append(held)
            await self._counts.add({}, {uses_key(slot_group(held)): epoch_ms(r.redeemed_at)})
        outcome: HoldTurn = "turned"
        try:
            await self._col.insert_one(to_doc(r, slot, hold.slot_no))
        except DuplicateKeyError:  # an earlier confirm of this hold stored it
            outcome = "again"
        await self._confirm(turned, r.id)
        return outcome

    async def _turn(self, slot: str, hold_id: str, r: Redemption, now: datetime) -> bool:
        """The hold's slot made the redemption's (or made so by an earlier confirm)."""
        turned = await self._slots.find_one_and_update(
            {"_id": slot, "reservation_id": hold_id, "hold_until": {"$gt": epoch_ms(now)}},
            {
                "$set": {"redemption_id": r.id, "unconfirmed": epoch_ms(now)},
                "$unset": {"reservation_id": "", "hold_until": ""},
            },
        )
        if turned is not None:
            return True
        held = await self._slots.find_one({"_id": slot}, {"redemption_id": 1})
        return held is not None and held.get("redemption_id") == r.id

    async def expired_holds(self, group: str, now: datetime) -> dict[int, str]:
        """The group's slots held by holds whose time is over at `now`: number -> holder."""
        cursor = self._slots.find(
            {"group": group, "hold_until": {"$lte": epoch_ms(now)}},
            {"slot_no": 1, "reservation_id": 1},
        )
        return {int(d["slot_no"]): d["reservation_id"] async for d in cursor}

    async def get(self, tenant_id: str, redemption_id: str) -> Redemption | None:
        doc = await self._col.find_one({"_id": redemption_id, "tenant_id": tenant_id})
        return from_doc(doc) if doc else None

    async def active_count(self, group: str) -> int:
        return await self._counts.get(uses_key(group))

    async def usage(self, groups: Sequence[str]) -> dict[str, GroupUsage]:
        """Each group's held slots and the time of its last redemption (kept counts)."""
        kept = await self._counts.kept([uses_key(g) for g in groups])
        return {g: GroupUsage(k.n, from_ms(k.last)) for g in groups if (k := kept[uses_key(g)])}

    async def used_slots(self, group: str) -> set[int]:
        cursor = self._slots.find({"group": group}, {"slot_no": 1})
        return {int(d["slot_no"]) async for d in cursor if d.get("slot_no") is not None}

    async def active_counts(self, groups: Sequence[str]) -> dict[str, int]:
        counts = await self._counts.get_many([uses_key(g) for g in groups])
        return {g: n for g in groups if (n := counts[uses_key(g)])}

    async def roll_back(
        self,
        tenant_id: str,
        redemption_id: str,
        at: datetime,
        reason: str | None = None,
        keep_use: bool = False,
    ) -> Redemption | None:
        """Roll back once: None when missing or rolled back already. The use is given back
        (its slot put in question first, `unconfirmed`, and deleted after: a crash between
        leaves a slot `sweep_slots` settles by the redemption's state), or, `keep_use`,
        kept: the rolled-back redemption still holds its slot (`use_kept`)."""
        held = await self._col.find_one(
            {"_id": redemption_id, "tenant_id": tenant_id, "state": "redeemed"},
            {"slot_no": 1, "slot": 1, "code_slot": 1, "redeemed_at": 1},
        )
        if held is None:
            return None
        freed = [] if keep_use else numbered(held)
        if freed:
            # Never the claim's own mark (the redemption's time, in ms): a late confirm of
            # the claim (`confirm_claims`) must not take the slot out of question again.
            claimed = round(aware(held["redeemed_at"]).timestamp() * 1000)
            mark = max(epoch_ms(at), claimed + 1)
            await self._slots.update_many(
                {"_id": {"$in": freed}, "redemption_id": redemption_id},
                {"$set": {"unconfirmed": mark}},
            )
        change: Doc = {"state": "rolled_back", "rolled_back_at": at, "rollback_reason": reason}
        if keep_use:
            change["use_kept"] = True
        else:
            change.update(slot=free_slot(redemption_id), slot_no=None, code_slot=None)
        before = await self._col.find_one_and_update(
            {"_id": redemption_id, "tenant_id": tenant_id, "state": "redeemed"},
            {"$set": change},
            return_document=ReturnDocument.BEFORE,
        )
        if before is None:
            return None
        if freed:
            await release_slots(
                self._slots,
                self._counts,
                [(s, redemption_id, slot_group(s)) for s in numbered(before)],
            )
        return from_doc({**before, **change})

    async def for_coupon(self, coupon_id: str, limit: int = 100) -> list[Redemption]:
        cursor = self._col.find({"coupon_id": coupon_id}).sort("redeemed_at", -1).limit(limit)
        return [from_doc(d) async for d in cursor]


async def claim_slot(
    slots: AsyncCollection[Doc],
    counts: MongoCounters,
    slot: str,
    group: str,
    slot_no: int,
    holder: Doc,
    replaces: str | None,
    now: datetime,
) -> None:
    """Claim a free slot for `holder` (its fields: `HOLDER_FIELDS`), counted; or, `replaces`,
    take it over from that hold whose time is over at `now` (the count unchanged). SlotTaken
    when it is not to be had."""
    # A redemption (not a hold) is a use: its time is kept beside the count (raised even
    # when the insert then loses to a concurrent keyed twin: then a little later than the
    # real last use; rare).
    last = {uses_key(group): epoch_ms(now)} if "redemption_id" in holder else {}
    if replaces is not None:
        taken = await slots.find_one_and_update(*hold_taken_over(slot, replaces, holder, now))
        if taken is None:
            raise SlotTaken(f"slot {slot} is no longer held by the expired hold {replaces}")
        await counts.add({}, last)
        return
    try:
        await slots.insert_one({"_id": slot, "group": group, "slot_no": slot_no, **holder})
    except DuplicateKeyError as exc:
        raise SlotTaken(str(exc)) from exc
    await counts.add({uses_key(group): 1}, last)


async def release_slots(
    slots: AsyncCollection[Doc],
    counts: MongoCounters,
    held: Sequence[tuple[str, str, str]],
    holder_field: str = "redemption_id",
) -> None:
    """Delete each (slot, holder id, group) still held by that holder (a redemption, or a
    reservation: `holder_field`), and count it."""
    released: Counter[str] = Counter()
    for slot, holder, group in held:
        result = await slots.delete_one({"_id": slot, holder_field: holder})
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
        async for d in mongo.redemptions.find(
            {"_id": {"$in": ids}}, {"state": 1, "slot": 1, "code_slot": 1, "use_kept": 1}
        )
    }
    confirm, release = [], []
    for d in stale:
        r = holders.get(d["redemption_id"])
        holds = r is not None and (r.get("state") == "redeemed" or r.get("use_kept"))
        if holds and r is not None and d["_id"] in (r.get("slot"), r.get("code_slot")):
            confirm.append(d["_id"])
        else:
            release.append((d["_id"], d["redemption_id"], d["group"]))
    if confirm:
        await slots.update_many({"_id": {"$in": confirm}}, {"$unset": {"unconfirmed": ""}})
    await release_slots(slots, MongoCounters(mongo), release)
    return len(stale)
