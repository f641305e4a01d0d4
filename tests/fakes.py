"""In-memory fakes of the ports in phoenix_coupons/services/ports.py, for the services' unit
tests (tests/unit/services/). Each keeps the contract of its MongoDB adapter, not only its
signature: the unique keys refuse (a coupon's id from its issue key, a tenant's normalized
codes as the code registry does, a redemption's slot), lists come newest first (with the
adapters' `after` cursors and totals), a claim of an
Idempotency-Key tells what an earlier request left. The adapters' own behaviour is tested
against the real wire servers (tests/integration); these only stand in for them.

Values are copied in and out, as a database would: a service that changes what it got back
changes nothing stored. A few call logs (`attempts`, `loads`, ...) let a test see what a
service asked for; they are not part of any port."""

import itertools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from phoenix_coupons.adapters import list_keys
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.codes import normalize
from phoenix_coupons.domain.delivery import EventRef, Marks, Partition, RecordId
from phoenix_coupons.domain.errors import DuplicateCodes, SlotTaken
from phoenix_coupons.domain.history import HistoryEntry
from phoenix_coupons.domain.models import ApiKey, Coupon
from phoenix_coupons.domain.outbox import IssuedBundle, OutboxEntry, issued
from phoenix_coupons.domain.redemption import Redemption, free_slot, slot_group
from phoenix_coupons.domain.reservation import HoldTurn, Reservation, Settled
from phoenix_coupons.services.ports import (
    Claim,
    GroupUsage,
    Page,
    Reserved,
    SlotClaim,
    StoredCoupon,
)
from schemas.coupons import CouponDefinition
from schemas.rewards import RewardItem

M = TypeVar("M", bound=BaseModel)

EPOCH = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def _copy(model: M) -> M:
    return model.model_copy(deep=True)


def _page(
    items: Iterable[Any], at: str, key: str, limit: int, offset: int, after: str | None
) -> Page[Any]:
    """The adapters' list pages: newest `at` first, then `key` ascending (the list keys'
    tails, list_keys.py); after the cursor `after`, else from `offset`; the total of all."""
    tagged = sorted((list_keys.tail(getattr(x, at), getattr(x, key)), x) for x in items)
    total = len(tagged)
    if after:
        tagged = [t for t in tagged if t[0] > after]
        offset = 0
    window = tagged[offset : offset + limit]
    more = len(tagged) > offset + limit
    return Page([x for _, x in window], total, window[-1][0] if more and window else None)


# --- time and ids ---------------------------------------------------------------------------


class FakeClock:
    """A `Clock` that stands still until told to move."""

    def __init__(self, now: datetime = EPOCH) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class SequentialIds:
    """An `IdFactory` of predictable UUIDs: 00000000-0000-0000-0000-000000000001, ..."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def __call__(self) -> str:
        return str(uuid.UUID(int=next(self._next)))


def coupon(key: str, code: str, tenant: str = "t-1", **fields: Any) -> Coupon:
    """A coupon for a test's given state: an event coupon of def-1 unless `fields` say
    otherwise; its id derived from `key`, as every issued coupon's is."""
    made = Coupon(
        id=issue_keys.coupon_id(key),
        tenant_id=tenant,
        definition_id="def-1",
        reward_item_id="reward-1",
        code=code,
        code_norm=normalize(code),
        kind="issued",
        source="event",
        issue_key=key,
        issued_at=EPOCH,
    )
    return replace(made, **fields)


# --- coupons --------------------------------------------------------------------------------


class FakeCouponRepo:
    """Coupons by id (derived from the issue key, so a second coupon for a key is refused, as
    the `_id` index does) and by (tenant, normalized code) (the code registry's `_id`), each
    with the inbound record that stored it."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredCoupon] = {}
        self._codes: dict[tuple[str, str], str] = {}  # (tenant, code_norm) -> coupon id
        self.attempts: list[list[str]] = []  # codes of each insert_unordered call

    def add(self, *coupons: Coupon, record: RecordId | None = None) -> None:
        """Store coupons directly (a test's given state); refuses duplicates as inserts do."""
        for coupon in coupons:
            if self._refuses(coupon):
                raise DuplicateCodes(f"duplicate coupon {coupon.id} / {coupon.code_norm}")
            self._put(coupon, record)

    def _refuses(self, coupon: Coupon) -> bool:
        return coupon.id in self.rows or (coupon.tenant_id, coupon.code_norm) in self._codes

    def _put(self, coupon: Coupon, record: RecordId | None) -> None:
        self.rows[coupon.id] = StoredCoupon(replace(coupon), record)
        self._codes[(coupon.tenant_id, coupon.code_norm)] = coupon.id

    def _all(self) -> list[Coupon]:
        return [replace(s.coupon) for s in self.rows.values()]

    async def taken(self, tenant_id: str, code_norms: Sequence[str]) -> set[str]:
        return {c for c in code_norms if (tenant_id, c) in self._codes}

    async def count_in_space(self, tenant_id: str, code_space: str) -> int:
        return sum(
            1 for c in self._all() if c.tenant_id == tenant_id and c.code_space == code_space
        )

    async def insert_unordered(
        self, coupons: Sequence[Coupon], records: Mapping[str, RecordId] | None = None
    ) -> list[int]:
        """Unordered: each coupon on its own; a later one in the batch is refused by an
        earlier one, as MongoDB's unordered insert_many does."""
        self.attempts.append([c.code for c in coupons])
        refused: list[int] = []
        for i, coupon in enumerate(coupons):
            if self._refuses(coupon):
                refused.append(i)
            else:
                self._put(coupon, (records or {}).get(coupon.issue_key))
        return refused

    async def insert_atomic(self, coupons: Sequence[Coupon]) -> None:
        """All or nothing: DuplicateCodes (nothing stored) when any coupon is refused,
        by the stored ones or by another of the batch."""
        ids = {c.id for c in coupons}
        codes = {(c.tenant_id, c.code_norm) for c in coupons}
        if len(ids) < len(coupons) or len(codes) < len(coupons):
            raise DuplicateCodes("duplicate key within the batch")
        if any(self._refuses(c) for c in coupons):
            raise DuplicateCodes("duplicate key")
        for coupon in coupons:
            self._put(coupon, None)

    async def by_issue_keys(self, keys: Sequence[str]) -> dict[str, Coupon]:
        return {k: s.coupon for k, s in (await self.stored_by_issue_keys(keys)).items()}

    async def stored_by_issue_keys(self, keys: Sequence[str]) -> dict[str, StoredCoupon]:
        found: dict[str, StoredCoupon] = {}
        for key in keys:
            stored = self.rows.get(issue_keys.coupon_id(key))
            if stored is not None:
                found[stored.coupon.issue_key] = StoredCoupon(replace(stored.coupon), stored.record)
        return found

    async def by_code(self, tenant_id: str, code_norm: str) -> Coupon | None:
        coupon_id = self._codes.get((tenant_id, code_norm))
        return None if coupon_id is None else replace(self.rows[coupon_id].coupon)

    async def definition_codes(
        self,
        tenant_id: str,
        definition_id: str,
        user_id: str | None,
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> Page[Coupon]:
        found = [
            c
            for c in self._all()
            if c.tenant_id == tenant_id
            and c.definition_id == definition_id
            and (user_id is None or c.user_id == user_id)
        ]
        return _page(found, "issued_at", "id", limit, offset, after)

    async def wallet(
        self, tenant_id: str, user_id: str, limit: int, offset: int, after: str | None = None
    ) -> Page[Coupon]:
        found = [c for c in self._all() if c.tenant_id == tenant_id and c.user_id == user_id]
        return _page(found, "issued_at", "id", limit, offset, after)

    async def revoke(
        self, tenant_id: str, code_norm: str, at: datetime, by: str | None = None
    ) -> Coupon | None:
        """The first revocation stands: revoking again answers the coupon as it is."""
        coupon_id = self._codes.get((tenant_id, code_norm))
        if coupon_id is None:
            return None
        stored = self.rows[coupon_id]
        if stored.coupon.status == "active":
            revoked = replace(stored.coupon, status="revoked", revoked_at=at, revoked_by=by)
            self.rows[coupon_id] = StoredCoupon(revoked, stored.record)
        return replace(self.rows[coupon_id].coupon)

    async def for_trigger_events(self, events: Sequence[EventRef]) -> list[StoredCoupon]:
        wanted = set(events)
        return [
            StoredCoupon(replace(s.coupon), s.record)
            for s in self.rows.values()
            if EventRef(s.coupon.tenant_id, s.coupon.user_id or "", s.coupon.trigger_event_id or "")
            in wanted
        ]

    def delete_by_issue_key(self, issue_key: str) -> StoredCoupon | None:
        """What the definition repository does to swap a shared code (not a port method)."""
        stored = self.rows.pop(issue_keys.coupon_id(issue_key), None)
        if stored is not None:
            del self._codes[(stored.coupon.tenant_id, stored.coupon.code_norm)]
        return stored


# --- definitions and rewards ----------------------------------------------------------------


class FakeDefinitionRepo:
    """Definitions; a custom-format definition's shared code is a coupon row in `coupons`,
    written with the definition or not at all (the adapter undoes what a refusal left)."""

    def __init__(self, coupons: FakeCouponRepo) -> None:
        self.rows: dict[str, CouponDefinition] = {}
        self._coupons = coupons

    def add(self, *definitions: CouponDefinition) -> None:
        for defn in definitions:
            self.rows[defn.id] = _copy(defn)

    def _find(self, tenant_id: str, definition_id: str) -> CouponDefinition | None:
        defn = self.rows.get(definition_id)
        return defn if defn is not None and defn.tenant_id == tenant_id else None

    async def insert(self, defn: CouponDefinition, shared: Coupon | None) -> None:
        """DuplicateCodes when the shared code is taken; then nothing is stored."""
        if shared is not None:
            await self._coupons.insert_atomic([shared])
        self.rows[defn.id] = _copy(defn)

    async def replace(
        self, defn: CouponDefinition, shared: Coupon | None, shared_changed: bool
    ) -> CouponDefinition | None:
        """None when missing or archived meanwhile; the shared code row swapped with it."""
        current = self._find(defn.tenant_id, defn.id)
        if current is None or current.status == "archived":
            return None
        if shared_changed:
            old = self._coupons.delete_by_issue_key(issue_keys.shared(defn.id))
            try:
                if shared is not None:
                    await self._coupons.insert_atomic([shared])
            except DuplicateCodes:  # refused: the old row stays (the adapter claims first)
                if old is not None:
                    self._coupons.add(old.coupon, record=old.record)
                raise
        stored = _copy(defn).model_copy(update={"created_at": current.created_at})
        self.rows[defn.id] = stored
        return _copy(stored)

    async def get(self, tenant_id: str, definition_id: str) -> CouponDefinition | None:
        defn = self._find(tenant_id, definition_id)
        return None if defn is None else _copy(defn)

    async def page(
        self,
        tenant_id: str | None,
        statuses: Sequence[str],
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> Page[CouponDefinition]:
        found = [
            _copy(d)
            for d in self.rows.values()
            if d.status in statuses and (tenant_id is None or d.tenant_id == tenant_id)
        ]
        return _page(found, "created_at", "id", limit, offset, after)

    async def set_status(
        self, tenant_id: str, definition_id: str, status: str, at: datetime
    ) -> CouponDefinition | None:
        """None when missing or archived: an archived definition never changes."""
        current = self._find(tenant_id, definition_id)
        if current is None or current.status == "archived":
            return None
        self.rows[definition_id] = current.model_copy(update={"status": status, "updated_at": at})
        return _copy(self.rows[definition_id])

    async def references_reward(self, tenant_id: str, reward_item_id: str) -> list[str]:
        return [
            d.id
            for d in self.rows.values()
            if d.tenant_id == tenant_id
            and d.config.reward_item_id == reward_item_id
            and d.status != "archived"
        ]


class FakeRewardRepo:
    def __init__(self) -> None:
        self.rows: dict[str, RewardItem] = {}

    def _find(self, tenant_id: str, item_id: str) -> RewardItem | None:
        item = self.rows.get(item_id)
        return item if item is not None and item.tenant_id == tenant_id else None

    async def insert(self, item: RewardItem) -> None:
        assert item.item_id not in self.rows, "the _id index refuses a second item"
        self.rows[item.item_id] = _copy(item)

    async def get(self, tenant_id: str, item_id: str) -> RewardItem | None:
        item = self._find(tenant_id, item_id)
        return None if item is None else _copy(item)

    async def page(
        self, tenant_id: str, limit: int, offset: int, after: str | None = None
    ) -> Page[RewardItem]:
        found = [_copy(r) for r in self.rows.values() if r.tenant_id == tenant_id]
        return _page(found, "created_at", "item_id", limit, offset, after)

    async def update(
        self, tenant_id: str, item_id: str, fields: dict[str, Any], at: datetime
    ) -> RewardItem | None:
        item = self._find(tenant_id, item_id)
        if item is None:
            return None
        self.rows[item_id] = item.model_copy(update={**fields, "updated_at": at}, deep=True)
        return _copy(self.rows[item_id])

    async def delete(self, tenant_id: str, item_id: str) -> bool:
        if self._find(tenant_id, item_id) is None:
            return False
        del self.rows[item_id]
        return True


class FakeApiKeyRepo:
    def __init__(self) -> None:
        self.rows: dict[str, ApiKey] = {}

    async def insert(self, key: ApiKey) -> None:
        assert key.id not in self.rows, "ids are uuid4s: never drawn twice"
        assert all(k.key_hash != key.key_hash for k in self.rows.values()), "_id is the hash"
        self.rows[key.id] = key

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        return next((k for k in self.rows.values() if k.key_hash == key_hash), None)

    async def get(self, key_id: str) -> ApiKey | None:
        return self.rows.get(key_id)

    async def all(self) -> list[ApiKey]:
        """Oldest first (the adapter sorts by created_at ascending)."""
        return sorted(self.rows.values(), key=lambda k: k.created_at)

    async def revoke(self, key_id: str, at: datetime) -> bool:
        """Once: False when missing or revoked already."""
        key = self.rows.get(key_id)
        if key is None or key.revoked_at is not None:
            return False
        self.rows[key_id] = replace(key, revoked_at=at)
        return True


# --- keyed requests, redemptions, look-ups --------------------------------------------------


@dataclass
class _Claimed:
    request_hash: str
    created_at: datetime
    lease_until: datetime
    state: str = "pending"
    response: dict[str, Any] | None = None


class FakeIdempotencyRepo:
    """Claims as the adapter's: a key is acquired once; later claims replay its response
    (same body, done), see it in progress (pending, lease running) or a mismatch (another
    body); an expired record or a pending one whose lease ran out is taken over."""

    def __init__(self, ttl_seconds: int = 86_400, lease_seconds: float = 120.0) -> None:
        self.rows: dict[str, _Claimed] = {}
        self._ttl = timedelta(seconds=ttl_seconds)
        self._lease = timedelta(seconds=lease_seconds)

    async def claim(self, key: str, request_hash: str, now: datetime) -> Claim:
        held = self.rows.get(key)
        if held is None or held.created_at <= now - self._ttl:
            self.rows[key] = _Claimed(request_hash, now, now + self._lease)
            return Claim("acquired")
        if held.request_hash != request_hash:
            return Claim("mismatch")
        if held.state == "done":
            return Claim("replay", held.response)
        if held.lease_until > now:
            return Claim("in_progress")
        held.lease_until = now + self._lease
        return Claim("acquired")

    async def complete(self, key: str, response: dict[str, Any]) -> None:
        held = self.rows.get(key)
        if held is not None:
            held.state, held.response = "done", dict(response)

    async def release(self, key: str) -> None:
        held = self.rows.get(key)
        if held is not None and held.state == "pending":
            del self.rows[key]


@dataclass
class _Held:
    redemption: Redemption
    slot: str
    slot_no: int | None


@dataclass(frozen=True)
class _Slot:
    """A numbered slot of a usage group, held by a redemption or by a hold until a time."""

    group: str
    slot_no: int
    redemption_id: str | None = None
    reservation_id: str | None = None
    hold_until: datetime | None = None


class FakeRedemptionRepo:
    """Redemptions, and the numbered slots of usage groups that redemptions and holds hold:
    a taken slot (and a taken id) refuses a second holder with SlotTaken; a hold's slot is
    taken over once its time is over. Counts are the slots held, as the kept counts are."""

    def __init__(self) -> None:
        self.rows: dict[str, _Held] = {}
        self.slots: dict[str, _Slot] = {}
        self._hints: dict[str, int] = {}
        self.confirmed: list[SlotClaim] = []  # what `confirm_claims` was given

    async def next_slot_hint(self, group: str) -> int:
        self._hints[group] = self._hints.get(group, 0) + 1
        return self._hints[group]

    def claim(self, slot: str, holder: _Slot, replaces: str | None, now: datetime) -> None:
        held = self.slots.get(slot)
        if replaces is None:
            if held is not None:
                raise SlotTaken(f"slot {slot} is taken")
        elif held is None or held.reservation_id != replaces or not _over(held, now):
            raise SlotTaken(f"slot {slot} is not held by the expired hold {replaces}")
        self.slots[slot] = holder

    async def insert(
        self,
        redemption: Redemption,
        slot: str,
        slot_no: int | None,
        replaces: str | None = None,
        confirm: bool = True,
    ) -> None:
        r = redemption
        if r.id in self.rows:
            raise SlotTaken(f"redemption {r.id} exists")
        if slot_no is not None:
            self.claim(slot, _Slot(r.group, slot_no, redemption_id=r.id), replaces, r.redeemed_at)
        self.rows[r.id] = _Held(r, slot, slot_no)

    async def confirm_claims(self, claims: Sequence[SlotClaim]) -> None:
        """Slots here are never in question: a held slot is confirmed."""
        self.confirmed.extend(claims)

    async def claim_code_slot(
        self, redemption: Redemption, group: str, slot: str, slot_no: int, replaces: str | None
    ) -> None:
        r = redemption
        self.claim(slot, _Slot(group, slot_no, redemption_id=r.id), replaces, r.redeemed_at)

    def free(self, slot: str | None, holder: str) -> None:
        """Delete the slot if `holder` (a redemption or a hold) still holds it."""
        held = self.slots.get(slot or "")
        if held is not None and holder in (held.redemption_id, held.reservation_id):
            del self.slots[slot or ""]

    async def release_code_slot(self, redemption: Redemption) -> None:
        self.free(redemption.code_slot, redemption.id)

    async def insert_held(
        self, redemption: Redemption, hold: Reservation, now: datetime
    ) -> HoldTurn:
        r = redemption
        turned: list[str] = []
        for slot in hold.slots:
            held = self.slots.get(slot)
            if held is not None and held.reservation_id == hold.id and not _over(held, now):
                self.slots[slot] = _Slot(held.group, held.slot_no, redemption_id=r.id)
            elif held is None or held.redemption_id != r.id:
                for t in turned:
                    self.free(t, r.id)
                return "lost"
            turned.append(slot)
        if r.id in self.rows:
            return "again"
        self.rows[r.id] = _Held(r, hold.slot or free_slot(r.id), hold.slot_no)
        return "turned"

    async def expired_holds(self, group: str, now: datetime) -> dict[int, str]:
        return {
            s.slot_no: s.reservation_id
            for s in self.slots.values()
            if s.group == group and s.reservation_id is not None and _over(s, now)
        }

    async def get(self, tenant_id: str, redemption_id: str) -> Redemption | None:
        held = self.rows.get(redemption_id)
        return held.redemption if held and held.redemption.tenant_id == tenant_id else None

    async def active_count(self, group: str) -> int:
        return sum(1 for s in self.slots.values() if s.group == group)

    async def used_slots(self, group: str) -> set[int]:
        return {s.slot_no for s in self.slots.values() if s.group == group}

    async def active_counts(self, groups: Sequence[str]) -> dict[str, int]:
        counts = {g: await self.active_count(g) for g in groups}
        return {g: n for g, n in counts.items() if n}  # an aggregation has no empty groups

    async def usage(self, groups: Sequence[str]) -> dict[str, GroupUsage]:
        """The kept counts and the time of each group's last redemption (rolled back or not:
        the kept time is only ever raised)."""
        found = {}
        for g in groups:
            times = [
                h.redemption.redeemed_at
                for h in self.rows.values()
                if g in (h.redemption.group, slot_group(h.redemption.code_slot or ""))
            ]
            found[g] = GroupUsage(await self.active_count(g), max(times, default=None))
        return found

    async def roll_back(
        self,
        tenant_id: str,
        redemption_id: str,
        at: datetime,
        reason: str | None = None,
        keep_use: bool = False,
    ) -> Redemption | None:
        held = self.rows.get(redemption_id)
        if held is None or held.redemption.tenant_id != tenant_id:
            return None
        if held.redemption.state != "redeemed":
            return None
        rolled = replace(
            held.redemption,
            state="rolled_back",
            rolled_back_at=at,
            rollback_reason=reason,
            use_kept=keep_use,
        )
        if keep_use:
            self.rows[redemption_id] = _Held(rolled, held.slot, held.slot_no)
        else:
            self.free(held.slot, redemption_id)
            self.free(rolled.code_slot, redemption_id)
            rolled = replace(rolled, code_slot=None)
            self.rows[redemption_id] = _Held(rolled, free_slot(redemption_id), None)
        return rolled

    async def for_coupon(self, coupon_id: str, limit: int = 100) -> list[Redemption]:
        found = [h.redemption for h in self.rows.values() if h.redemption.coupon.id == coupon_id]
        return sorted(found, key=lambda r: r.redeemed_at, reverse=True)[:limit]


def _over(slot: _Slot, now: datetime) -> bool:
    return slot.hold_until is not None and slot.hold_until <= now


class FakeReservationRepo:
    """Holds, over the slots of a FakeRedemptionRepo (they share the usage groups' slots)."""

    def __init__(self, redemptions: FakeRedemptionRepo) -> None:
        self.rows: dict[str, Reservation] = {}
        self._slots = redemptions

    async def claim_code_slot(
        self, reservation: Reservation, group: str, slot: str, slot_no: int, replaces: str | None
    ) -> None:
        r = reservation
        holder = _Slot(group, slot_no, reservation_id=r.id, hold_until=r.expires_at)
        self._slots.claim(slot, holder, replaces, r.reserved_at)

    async def release_slot(self, reservation: Reservation) -> None:
        for slot in reservation.slots:
            self._slots.free(slot, reservation.id)

    async def insert(self, reservation: Reservation, replaces: str | None = None) -> None:
        r = reservation
        if r.id in self.rows:
            raise SlotTaken(f"reservation {r.id} exists")
        if r.slot is not None and r.slot_no is not None:
            holder = _Slot(r.group, r.slot_no, reservation_id=r.id, hold_until=r.expires_at)
            self._slots.claim(r.slot, holder, replaces, r.reserved_at)
        self.rows[r.id] = r

    async def get(self, tenant_id: str, reservation_id: str) -> Reservation | None:
        r = self.rows.get(reservation_id)
        return r if r is not None and r.tenant_id == tenant_id else None

    async def claim_confirm(
        self, tenant_id: str, reservation_id: str, redemption_id: str, now: datetime
    ) -> Reservation | None:
        r = await self.get(tenant_id, reservation_id)
        if r is not None and r.redemption_id is None and r.held_at(now):
            r = self.rows[r.id] = replace(r, redemption_id=redemption_id)
        return r

    async def settle(
        self,
        reservation: Reservation,
        state: Settled,
        now: datetime,
    ) -> Reservation | None:
        r = self.rows.get(reservation.id)
        if r is None or r.state != "held" or r.redemption_id != reservation.redemption_id:
            return None
        if (state == "released" and not r.held_at(now)) or (state == "expired" and r.held_at(now)):
            return None
        done = self.rows[r.id] = replace(r, state=state, settled_at=now)
        return done

    async def finish(self, reservation: Reservation) -> None:
        if reservation.state in ("released", "expired"):
            await self.release_slot(reservation)


class FakeOutbox:
    """Entries by id with their state; a prepare replaces only a prepared entry."""

    def __init__(self) -> None:
        self.entries: dict[str, OutboxEntry] = {}
        self.states: dict[str, str] = {}
        self.history: dict[str, HistoryEntry] = {}  # the steps readied entries stored
        # `coupon.issued` of many coupons, with their state
        self.bundles: dict[str, tuple[IssuedBundle, str]] = {}

    async def prepare(self, entries: Sequence[OutboxEntry]) -> None:
        for entry in entries:
            if self.states.get(entry.id, "prepared") == "prepared":
                self.entries[entry.id], self.states[entry.id] = entry, "prepared"

    async def ready(self, entries: Sequence[OutboxEntry]) -> None:
        for e in entries:
            if e.id in self.states:
                self.states[e.id] = "ready"
                if e.history is not None:
                    self.history[e.history.id] = e.history

    async def discard(self, ids: Sequence[str]) -> None:
        for i in ids:
            if self.states.get(i) == "prepared":
                del self.entries[i], self.states[i]

    async def prepare_new(self, entry: OutboxEntry) -> bool:
        if entry.id in self.states:
            return False
        self.entries[entry.id], self.states[entry.id] = entry, "prepared"
        return True

    async def prepare_issued(self, bundle: IssuedBundle) -> None:
        self.bundles[bundle.id] = (bundle, "prepared")

    async def ready_issued(self, bundle: IssuedBundle) -> None:
        if bundle.id not in self.bundles or self.bundles[bundle.id][1] != "prepared":
            return
        if bundle.coupon_ids:
            self.bundles[bundle.id] = (bundle, "ready")
        else:
            del self.bundles[bundle.id]

    def sent(self, entry_id: str) -> None:
        """The relay sent it: gone from the outbox."""
        del self.entries[entry_id], self.states[entry_id]

    def in_state(self, state: str) -> list[OutboxEntry]:
        return [self.entries[i] for i, s in self.states.items() if s == state]


class FakeCodeHistory:
    """Steps by id (by default the ones a FakeOutbox's readied entries stored, as the
    collection holds them), read in id order like the `_id` ranges of code_history."""

    def __init__(self, steps: dict[str, HistoryEntry] | None = None) -> None:
        self.steps: dict[str, HistoryEntry] = {} if steps is None else steps
        self.reads = 0

    async def record(self, entries: Sequence[HistoryEntry]) -> None:
        for e in entries:
            self.steps.setdefault(e.id, e)

    def _between(self, above: str, below: str) -> list[HistoryEntry]:
        self.reads += 1
        return [self.steps[i] for i in sorted(self.steps) if above < i < below]

    async def between(
        self, code_norm: str, above: str, below: str, skip: int, limit: int
    ) -> list[HistoryEntry]:
        return self._between(above, below)[skip : skip + limit]

    async def count_between(self, code_norm: str, above: str, below: str, cap: int) -> int:
        return min(cap, len(self._between(above, below)))


class FakeLookupLimiter:
    """The failed look-ups per (API key, tenant) the services report (the refusal at the
    limit is the API's: tests/integration/test_lookup_limit.py)."""

    def __init__(self) -> None:
        self.failures: dict[tuple[str, str], int] = {}

    async def failed(self, key_id: str, tenant_id: str) -> None:
        self.failures[(key_id, tenant_id)] = self.failures.get((key_id, tenant_id), 0) + 1


# --- issuance budgets ------------------------------------------------------------------------


class FakeIssuanceBudgets:
    """Each definition's reserved count and exhaustion claim, as the adapter's conditional
    updates keep them: never past the limit, one claim per limit."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.claims: dict[tuple[str, str], tuple[int, str]] = {}

    async def reserve(
        self, tenant_id: str, definition_id: str, want: int, limit: int, partial: bool
    ) -> Reserved:
        key = (tenant_id, definition_id)
        count = self.counts.get(key, 0)
        grant = max(0, min(want, limit - count))
        if grant < want and not partial:
            grant = 0
        self.counts[key] = count + grant
        claim = self.claims.get(key)
        return Reserved(grant, count + grant, None if claim is None else claim[0])

    async def give_back(self, tenant_id: str, definition_id: str, amount: int) -> None:
        key = (tenant_id, definition_id)
        self.counts[key] = self.counts.get(key, 0) - amount

    async def issued(self, tenant_id: str, definition_id: str) -> int:
        return max(0, self.counts.get((tenant_id, definition_id), 0))

    async def count_from(self, tenant_id: str, definition_id: str, stored: int) -> None:
        key = (tenant_id, definition_id)
        self.counts[key] = max(self.counts.get(key, 0), stored)

    async def mark_exhausted(
        self, tenant_id: str, definition_id: str, limit: int, state: str
    ) -> bool:
        key = (tenant_id, definition_id)
        if key in self.claims and self.claims[key][0] == limit:
            return False
        self.claims[key] = (limit, state)
        return True


# --- the worker's marks ---------------------------------------------------------------------


class FakeMarks:
    """The partitions' marks, raised as `$max` raises them: never lowered."""

    def __init__(self, stored: Mapping[Partition, Marks] | None = None) -> None:
        self.stored: dict[Partition, Marks] = dict(stored or {})
        self.loads: list[list[Partition]] = []
        self.advanced: list[dict[Partition, int]] = []
        self.inflight: list[dict[Partition, int]] = []
        self.fail_advance: Exception | None = None

    async def load(self, partitions: Sequence[Partition]) -> dict[Partition, Marks]:
        self.loads.append(list(partitions))
        return {tp: self.stored.get(tp, Marks()) for tp in partitions}

    async def advance(self, offsets: Mapping[Partition, int]) -> None:
        if self.fail_advance is not None:
            raise self.fail_advance
        self.advanced.append(dict(offsets))
        for tp, offset in offsets.items():
            mark = self.stored.get(tp, Marks())
            self.stored[tp] = Marks(max(mark.announced, offset), mark.inflight)

    async def mark_inflight(self, offsets: Mapping[Partition, int]) -> None:
        self.inflight.append(dict(offsets))
        for tp, offset in offsets.items():
            mark = self.stored.get(tp, Marks())
            self.stored[tp] = Marks(mark.announced, max(mark.inflight, offset))


# --- all of them ----------------------------------------------------------------------------


@dataclass
class Fakes:
    """One world of fakes, wired as bootstrap.py wires the adapters."""

    clock: FakeClock = field(default_factory=FakeClock)
    ids: SequentialIds = field(default_factory=SequentialIds)
    coupons: FakeCouponRepo = field(default_factory=FakeCouponRepo)
    rewards: FakeRewardRepo = field(default_factory=FakeRewardRepo)
    redemptions: FakeRedemptionRepo = field(default_factory=FakeRedemptionRepo)
    idempotency: FakeIdempotencyRepo = field(default_factory=FakeIdempotencyRepo)
    lookups: FakeLookupLimiter = field(default_factory=FakeLookupLimiter)
    outbox: FakeOutbox = field(default_factory=FakeOutbox)
    marks: FakeMarks = field(default_factory=FakeMarks)
    api_keys: FakeApiKeyRepo = field(default_factory=FakeApiKeyRepo)
    budgets: FakeIssuanceBudgets = field(default_factory=FakeIssuanceBudgets)
    definitions: FakeDefinitionRepo = field(init=False)
    history: FakeCodeHistory = field(init=False)
    reservations: FakeReservationRepo = field(init=False)

    def __post_init__(self) -> None:
        self.definitions = FakeDefinitionRepo(self.coupons)
        self.history = FakeCodeHistory(self.outbox.history)  # what readied entries stored
        self.reservations = FakeReservationRepo(self.redemptions)

    def announced(self, state: str = "ready") -> list[OutboxEntry]:
        """The outbox's entries in `state`, a bundle's as the single entries the relay makes
        of it (one per coupon it names, built from the coupon as stored)."""
        bundled = [
            issued(self.coupons.rows[cid].coupon)
            for bundle, at in self.outbox.bundles.values()
            if at == state
            for cid in bundle.coupon_ids
            if cid in self.coupons.rows
        ]
        return self.outbox.in_state(state) + bundled

    def budget(self) -> "IssuanceBudget":
        """The issuance budget service on these fakes (as bootstrap.py wires it)."""
        from phoenix_coupons.services.budget import IssuanceBudget

        return IssuanceBudget(self.budgets, self.outbox, self.clock, self.ids)


if TYPE_CHECKING:  # mypy checks each fake against its port
    from phoenix_coupons.domain.clock import Clock
    from phoenix_coupons.services import ports
    from phoenix_coupons.services.budget import IssuanceBudget

    _clock: Clock = FakeClock()
    _ids: ports.IdFactory = SequentialIds()
    _coupons: ports.CouponRepo = FakeCouponRepo()
    _definitions: ports.DefinitionRepo = FakeDefinitionRepo(FakeCouponRepo())
    _rewards: ports.RewardRepo = FakeRewardRepo()
    _keys: ports.ApiKeyRepo = FakeApiKeyRepo()
    _idempotency: ports.IdempotencyRepo = FakeIdempotencyRepo()
    _redemptions: ports.RedemptionRepo = FakeRedemptionRepo()
    _usage: ports.UsageCounts = FakeRedemptionRepo()
    _reservations: ports.ReservationRepo = FakeReservationRepo(FakeRedemptionRepo())
    _lookups: ports.LookupLimiter = FakeLookupLimiter()
    _history: ports.CodeHistory = FakeCodeHistory()
    _outbox: ports.Outbox = FakeOutbox()
    _marks: ports.AnnouncedMarks = FakeMarks()
    _budgets: ports.IssuanceBudgets = FakeIssuanceBudgets()
