"""What the services need from storage and messaging; adapters implement these."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar

from phoenix_coupons.domain.delivery import EventRef, Marks, Partition, RecordId
from phoenix_coupons.domain.history import HistoryEntry
from phoenix_coupons.domain.jobs import Job, Row
from phoenix_coupons.domain.models import ApiKey, Coupon
from phoenix_coupons.domain.outbox import IssuedBundle, OutboxEntry
from phoenix_coupons.domain.redemption import Redemption
from phoenix_coupons.domain.reservation import HoldTurn, Reservation, Settled
from schemas.coupons import CouponDefinition
from schemas.rewards import RewardItem

IdFactory = Callable[[], str]
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `total` is a kept count; `next_after`, the cursor of the page
    after this one (None: the last page)."""

    items: list[T]
    total: int
    next_after: str | None = None


@dataclass(frozen=True)
class StoredCoupon:
    """A coupon as stored, with the inbound record whose batch stored it (event coupons;
    None for the others). The record is storage's, not the coupon's: only the worker's
    redelivery rules read it."""

    coupon: Coupon
    record: RecordId | None


@dataclass(frozen=True)
class GroupUsage:
    """A usage group's kept count of held slots (active redemptions and open holds) and the
    time of its last redemption (None: none since the time began to be kept)."""

    uses: int
    last_redeemed_at: datetime | None


class UsageCounts(Protocol):
    async def usage(self, groups: Sequence[str]) -> dict[str, GroupUsage]:
        """Each group's kept usage, read by `_id` (a group never used: 0 and None)."""
        ...


@dataclass(frozen=True)
class Scheduled:
    """A coupon a scheduler attempt claimed, with its expiry steps sent so far, each marked
    with the attempt that sent it (`domain.expiry.mark`)."""

    coupon: Coupon
    marks: tuple[str, ...]


@dataclass(frozen=True)
class ScheduleChange:
    """What an attempt writes to a coupon it claimed: the steps sent before and those it
    sends now (`new_marks`), and when the next step falls due (None: none)."""

    coupon_id: str
    marks: tuple[str, ...]
    new_marks: tuple[str, ...]
    next_due: datetime | None


@dataclass(frozen=True)
class Claim:
    """What claiming an idempotency key found."""

    outcome: Literal["acquired", "replay", "mismatch", "in_progress"]
    response: dict[str, Any] | None = None


@dataclass(frozen=True)
class Reserved:
    """What a reservation of an issuance budget got: `granted` units; `count`, the units
    reserved after it (every writer's); `exhausted`, the limit whose reaching was announced
    (None: none)."""

    granted: int
    count: int
    exhausted: int | None


class ApiKeyRepo(Protocol):
    async def insert(self, key: ApiKey) -> None: ...
    async def by_hash(self, key_hash: str) -> ApiKey | None: ...
    async def get(self, key_id: str) -> ApiKey | None: ...
    async def all(self) -> list[ApiKey]: ...
    async def revoke(self, key_id: str, at: datetime) -> bool: ...


class RewardRepo(Protocol):
    async def insert(self, item: RewardItem) -> None: ...
    async def get(self, tenant_id: str, item_id: str) -> RewardItem | None: ...
    async def page(
        self, tenant_id: str, limit: int, offset: int, after: str | None = None
    ) -> Page[RewardItem]: ...
    async def update(
        self, tenant_id: str, item_id: str, fields: dict[str, Any], at: datetime
    ) -> RewardItem | None: ...
    async def delete(self, tenant_id: str, item_id: str) -> bool: ...


class DefinitionRepo(Protocol):
    async def insert(self, defn: CouponDefinition, shared: Coupon | None) -> None: ...
    async def replace(
        self, defn: CouponDefinition, shared: Coupon | None, shared_changed: bool
    ) -> CouponDefinition | None: ...
    async def get(self, tenant_id: str, definition_id: str) -> CouponDefinition | None: ...
    async def page(
        self,
        tenant_id: str | None,
        statuses: Sequence[str],
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> Page[CouponDefinition]: ...
    async def set_status(
        self, tenant_id: str, definition_id: str, status: str, at: datetime
    ) -> CouponDefinition | None: ...
    async def references_reward(self, tenant_id: str, reward_item_id: str) -> list[str]: ...


class CouponRepo(Protocol):
    async def taken(self, tenant_id: str, code_norms: Sequence[str]) -> set[str]: ...
    async def count_in_space(self, tenant_id: str, code_space: str) -> int: ...
    async def insert_unordered(
        self, coupons: Sequence[Coupon], records: Mapping[str, RecordId] | None = None
    ) -> list[int]:
        """Inserts what it can; returns the positions refused as duplicates (code or issue
        key). `records`: event coupons' inbound records, by issue key."""
        ...

    async def insert_atomic(self, coupons: Sequence[Coupon]) -> None:
        """All or nothing (DuplicateCodes, nothing left behind), without a transaction."""
        ...

    async def by_issue_keys(self, keys: Sequence[str]) -> dict[str, Coupon]: ...
    async def stored_by_issue_keys(self, keys: Sequence[str]) -> dict[str, StoredCoupon]: ...
    async def by_code(self, tenant_id: str, code_norm: str) -> Coupon | None: ...
    async def definition_codes(
        self,
        tenant_id: str,
        definition_id: str,
        user_id: str | None,
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> Page[Coupon]:
        """A definition's coupons (only `user_id`'s when given), newest first, and their
        count; `after`: a page's `next_after` (then `offset` is not used)."""
        ...

    async def wallet(
        self, tenant_id: str, user_id: str, limit: int, offset: int, after: str | None = None
    ) -> Page[Coupon]:
        """A user's coupons across definitions, newest first, and their count."""
        ...

    async def revoke(
        self, tenant_id: str, code_norm: str, at: datetime, by: str | None = None
    ) -> Coupon | None:
        """Revoke the code's coupon (`by`: the API key's id); the first revocation stands."""
        ...

    async def for_trigger_events(self, events: Sequence[EventRef]) -> list[StoredCoupon]:
        """The coupons issued for these inbound events."""
        ...


class AnnouncedMarks(Protocol):
    """The marks of each inbound partition (domain/delivery.py `Marks`), shared by every
    consumer group and worker."""

    async def load(self, partitions: Sequence[Partition]) -> dict[Partition, Marks]:
        """Marks() for a partition never seen."""
        ...

    async def advance(self, offsets: Mapping[Partition, int]) -> None:
        """Raise each partition's announced mark to at least the given next offset."""
        ...

    async def mark_inflight(self, offsets: Mapping[Partition, int]) -> None:
        """Raise each partition's inflight mark, before coupons of records below it are
        stored."""
        ...


class IdempotencyRepo(Protocol):
    async def claim(self, key: str, request_hash: str, now: datetime) -> Claim: ...
    async def complete(self, key: str, response: dict[str, Any]) -> None: ...
    async def release(self, key: str) -> None: ...


@dataclass(frozen=True)
class SlotClaim:
    """The slots a stored redemption claimed (`claimed_at`: its time, the claim's mark), to
    confirm after the answer (services/settler.py)."""

    redemption_id: str
    slots: tuple[str, ...]
    claimed_at: datetime


class RedemptionRepo(Protocol):
    """Redemptions hold slots: at most one redemption per slot, so a group of `max_uses`
    numbered slots allows exactly that many active redemptions."""

    async def next_slot_hint(self, group: str) -> int:
        """1, 2, 3, ... per group (atomic): the slot number a new redemption tries first."""
        ...

    async def insert(
        self,
        redemption: Redemption,
        slot: str,
        slot_no: int | None,
        replaces: str | None = None,
        confirm: bool = True,
    ) -> None:
        """Store it in `slot` (number `slot_no` of its group, None: a free slot; `replaces`:
        taken over from that hold, whose time is over); SlotTaken when that slot or the
        redemption's id is taken. `confirm` False: its slots stay unconfirmed until
        `confirm_claims` (or the sweep) confirms them."""
        ...

    async def confirm_claims(self, claims: Sequence[SlotClaim]) -> None:
        """Confirm stored redemptions' slots, each while it still bears its claim's mark."""
        ...

    async def claim_code_slot(
        self, redemption: Redemption, group: str, slot: str, slot_no: int, replaces: str | None
    ) -> None:
        """Take slot `slot_no` of an unassigned code's own group for the redemption, before
        `insert` (which confirms it); SlotTaken when it is taken."""
        ...

    async def release_code_slot(self, redemption: Redemption) -> None:
        """Give back the code's slot of a redemption that was not stored."""
        ...

    async def insert_held(
        self, redemption: Redemption, hold: Reservation, now: datetime
    ) -> HoldTurn:
        """Store it in the slots `hold` holds, while the hold still holds them and is open
        at `now`: "turned"; "again" when an earlier call stored it; "lost" when the hold
        lost a slot."""
        ...

    async def expired_holds(self, group: str, now: datetime) -> dict[int, str]:
        """The group's slots held by holds whose time is over at `now`: number -> holder."""
        ...

    async def get(self, tenant_id: str, redemption_id: str) -> Redemption | None: ...
    async def active_count(self, group: str) -> int: ...
    async def used_slots(self, group: str) -> set[int]: ...
    async def active_counts(self, groups: Sequence[str]) -> dict[str, int]: ...
    async def roll_back(
        self,
        tenant_id: str,
        redemption_id: str,
        at: datetime,
        reason: str | None = None,
        keep_use: bool = False,
    ) -> Redemption | None:
        """Rolled back once, its use given back (`keep_use`: kept, its slot still held):
        None when missing or rolled back already."""
        ...

    async def for_coupon(self, coupon_id: str, limit: int = 100) -> list[Redemption]:
        """The coupon's redemptions, newest first."""
        ...


class ReservationRepo(Protocol):
    """Holds: each holds a slot of its usage group as a redemption does (none when the group
    has no limit), until confirmed, released or its time is over."""

    async def claim_code_slot(
        self, reservation: Reservation, group: str, slot: str, slot_no: int, replaces: str | None
    ) -> None:
        """Hold slot `slot_no` of an unassigned code's own group, before `insert`;
        SlotTaken when it is taken."""
        ...

    async def insert(self, reservation: Reservation, replaces: str | None = None) -> None:
        """Hold its slot (`replaces`: taken over from that expired hold) and store it;
        SlotTaken when the slot or its id is taken (its slots are given back then)."""
        ...

    async def release_slot(self, reservation: Reservation) -> None:
        """Free the slots it still holds."""
        ...

    async def get(self, tenant_id: str, reservation_id: str) -> Reservation | None: ...
    async def claim_confirm(
        self, tenant_id: str, reservation_id: str, redemption_id: str, now: datetime
    ) -> Reservation | None:
        """Name the one redemption its confirms make, if none is named and the hold is open
        at `now`; the reservation as it is after (None: missing)."""
        ...

    async def settle(
        self,
        reservation: Reservation,
        state: Settled,
        now: datetime,
    ) -> Reservation | None:
        """Held -> `state` once (released: while open and unclaimed; expired: once over;
        confirmed: with the redemption it names); None when another settled it first."""
        ...

    async def finish(self, reservation: Reservation) -> None:
        """After its event: a released or expired hold's slot freed (if still its own)."""
        ...


class Outbox(Protocol):
    """Events waiting to be published. Entries are prepared before the documents they
    announce and readied after them; the relay sends only ready ones (a sweep readies or
    drops prepared ones a crash left)."""

    async def prepare(self, entries: Sequence[OutboxEntry]) -> None:
        """Store them prepared (replacing prepared ones of the same id: a retry's)."""
        ...

    async def ready(self, entries: Sequence[OutboxEntry]) -> None:
        """Their documents are stored: the relay may send them, and their history steps
        are stored."""
        ...

    async def discard(self, ids: Sequence[str]) -> None:
        """Prepared ones whose documents were not stored (a refused write)."""
        ...

    async def prepare_new(self, entry: OutboxEntry) -> bool:
        """Store it prepared unless an entry of its id exists (prepared or ready): True
        when stored. For an event that one writer of several announces."""
        ...

    async def prepare_issued(self, bundle: IssuedBundle) -> None:
        """Store it prepared, before any of its coupons."""
        ...

    async def ready_issued(self, bundle: IssuedBundle) -> None:
        """Its coupons (those it names now: the ones stored) are stored: the relay may
        announce them (those the bundle holds, `IssuedBundle.stored`, may be sent as they
        are, without reading them back). Naming none: dropped."""
        ...


class IssuanceBudgets(Protocol):
    """Each definition's reserved count against its issuance limit, exact across processes:
    units are reserved before coupons are stored and given back for those not stored."""

    async def reserve(
        self, tenant_id: str, definition_id: str, want: int, limit: int, partial: bool
    ) -> Reserved:
        """Take `want` units (never passing `limit`); when fewer are left, as many as are
        left if `partial`, else none."""
        ...

    async def give_back(self, tenant_id: str, definition_id: str, amount: int) -> None: ...
    async def issued(self, tenant_id: str, definition_id: str) -> int: ...
    async def count_from(self, tenant_id: str, definition_id: str, stored: int) -> None:
        """Counting starts (a limit set on a definition that has coupons): at least
        `stored`."""
        ...

    async def mark_exhausted(
        self, tenant_id: str, definition_id: str, limit: int, state: str
    ) -> bool:
        """Claim the announcement that `limit` is reached (`state`: the claim's, the outbox
        entry's subject): True only for the claim that set it."""
        ...


class CodeHistory(Protocol):
    """The stored steps of codes' timelines (domain/history.py), by step id: ids above
    `above` and below `below`, in id order (a code's steps in time order)."""

    async def between(
        self, code_norm: str, above: str, below: str, skip: int, limit: int
    ) -> list[HistoryEntry]: ...

    async def count_between(self, code_norm: str, above: str, below: str, cap: int) -> int:
        """How many steps lie between, counted up to `cap` (a bounded read, not a count of
        the collection)."""
        ...


class ExpirySchedule(Protocol):
    """Coupons' next expiry steps (domain/expiry.py), found by their due time. Claims keep
    several schedulers from working on one coupon at once."""

    async def oldest_due(self) -> datetime | None:
        """The earliest due time of any coupon (the scheduler's lag)."""
        ...

    async def claim(
        self, now: datetime, limit: int, lease: timedelta, attempt: str
    ) -> tuple[int, list[Scheduled]]:
        """Up to `limit` coupons due at `now`, oldest first, held by `attempt` until
        `now + lease` (others then may claim them); those claimed by another left out.
        Returns how many were due (`limit`: more may be) and those claimed."""
        ...

    async def advance(self, attempt: str, changes: Sequence[ScheduleChange]) -> set[str]:
        """Apply the changes to the coupons `attempt` still holds, releasing them; returns
        the ids of those whose new marks were stored."""
        ...

    async def redeemed(self, coupon_ids: Sequence[str]) -> set[str]:
        """Which of the coupons have an active redemption."""
        ...

    async def recheck(self, tenant_id: str, definition_id: str, at: datetime) -> None:
        """Make the definition's scheduled coupons due at `at` at the latest, and its user
        coupons issued without an expiry due at `at` (the definition changed)."""
        ...


class JobStore(Protocol):
    """Generation jobs and their rows (adapters/job_repo.py)."""

    async def insert_rows(self, job: Job, chunks: Sequence[Sequence[Row]]) -> None: ...
    async def insert(self, job: Job) -> Job | None:
        """None once stored; the job stored before under the same id otherwise."""
        ...

    async def get(self, tenant_id: str, job_id: str) -> Job | None: ...
    async def page(
        self, tenant_id: str, definition_id: str, limit: int, offset: int, after: str | None
    ) -> Page[Job]: ...
    async def claim(self, now: datetime, lease_until: datetime, attempt: str) -> Job | None: ...
    async def rows(self, job: Job, chunk: int) -> list[Row]: ...
    async def commit(self, job: Job, attempt: str, chunk: int, lease_until: datetime) -> bool: ...

    async def release(self, job: Job, attempt: str, now: datetime) -> None:
        """Give the job back to the queue at once (a runner stopping between chunks)."""
        ...

    async def cancel_requested(self, tenant_id: str, job_id: str) -> Job | None: ...
    async def finish(self, job: Job, attempt: str | None, at: datetime) -> bool: ...


class LookupLimiter(Protocol):
    """Bounds code guessing: failed look-ups per API key and tenant, across processes. A key
    at its limit is refused before its look-ups, at the API's door (`Principal`'s blocks,
    read with the key: api/auth.py `looking_up`)."""

    async def failed(self, key_id: str, tenant_id: str) -> None:
        """After a look-up that found no code."""
        ...
