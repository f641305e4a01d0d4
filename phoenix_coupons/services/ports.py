"""What the services need from storage and messaging; adapters implement these."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar

from phoenix_coupons.domain.delivery import EventRef, Marks, Partition, RecordId
from phoenix_coupons.domain.models import ApiKey, Coupon
from phoenix_coupons.domain.outbox import OutboxEntry
from phoenix_coupons.domain.redemption import Redemption
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

    async def revoke(self, tenant_id: str, code_norm: str, at: datetime) -> Coupon | None: ...
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


class RedemptionRepo(Protocol):
    """Redemptions hold slots: at most one redemption per slot, so a group of `max_uses`
    numbered slots allows exactly that many active redemptions."""

    async def next_slot_hint(self, group: str) -> int:
        """1, 2, 3, ... per group (atomic): the slot number a new redemption tries first."""
        ...

    async def insert(self, redemption: Redemption, slot: str, slot_no: int | None) -> None:
        """Store it in `slot` (number `slot_no` of its group, None: a free slot); SlotTaken
        when that slot or the redemption's id is taken."""
        ...

    async def get(self, tenant_id: str, redemption_id: str) -> Redemption | None: ...
    async def active_count(self, group: str) -> int: ...
    async def used_slots(self, group: str) -> set[int]: ...
    async def active_counts(self, groups: Sequence[str]) -> dict[str, int]: ...
    async def roll_back(
        self, tenant_id: str, redemption_id: str, free_slot: str, at: datetime
    ) -> Redemption | None:
        """Rolled back into `free_slot`, once: None when missing or rolled back already."""
        ...

    async def for_coupon(self, coupon_id: str, limit: int = 100) -> list[Redemption]:
        """The coupon's redemptions, newest first."""
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


class LookupLimiter(Protocol):
    """Bounds code guessing: failed look-ups per API key and tenant, across processes."""

    async def check(self, key_id: str, tenant_id: str) -> None:
        """Before a look-up: raises TooManyFailedLookups while the key is over its limit."""
        ...

    async def failed(self, key_id: str, tenant_id: str) -> None:
        """After a look-up that found no code."""
        ...
