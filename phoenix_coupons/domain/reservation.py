"""Holds (reservations): one use of a coupon taken for a while, as a checkout takes it while
the payment runs, then confirmed into a redemption or released. Pure: the clock is injected.

A hold takes its use exactly as a redemption does: it holds a numbered slot of the usage
group (adapters/redemption_repo.py), but the slot names the reservation and the time its
hold ends (`hold_until`, epoch ms). A hold whose time is over frees its use at once: a
reserve or redeem that finds no free slot takes an expired hold's slot over, and validate
counts expired holds as free; a sweep settles the reservations themselves."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from phoenix_coupons.domain.models import Coupon
from schemas.coupons import CouponDefinition
from schemas.events import ReleaseReason
from schemas.redemptions import Coupon as CouponSnapshot
from schemas.rewards import RewardItem

ReservationState = Literal["held", "confirmed", "released", "expired"]
Settled = Literal["confirmed", "released", "expired"]
# What a confirm's write found: it turned the hold into the redemption, an earlier confirm
# of the hold had, or the hold had lost its slot (its time over).
HoldTurn = Literal["turned", "again", "lost"]


@dataclass(frozen=True)
class Reservation:
    """`slot` (number `slot_no` of the usage group `group`): the slot it holds, None when its
    group has no limit; an unassigned code's hold also holds a slot of the code's own group
    (`code_slot`). `redemption_id`: the redemption a confirm makes (set when a confirm
    starts, so that every confirm of this hold makes that one redemption)."""

    id: str
    tenant_id: str
    user_id: str
    group: str
    state: ReservationState
    reserved_at: datetime
    expires_at: datetime
    coupon: CouponSnapshot
    reward: RewardItem
    slot: str | None
    slot_no: int | None
    request_hash: str | None = None
    metadata: Mapping[str, Any] | None = None
    redemption_id: str | None = None
    settled_at: datetime | None = None
    code_slot: str | None = None  # an unassigned code's own slot, held beside `slot`

    @property
    def slots(self) -> tuple[str, ...]:
        """The slots it holds: the code's own first (the order they are claimed in)."""
        return tuple(s for s in (self.code_slot, self.slot) if s is not None)

    def held_at(self, now: datetime) -> bool:
        """Still holding its use at `now`: held, and its time not over."""
        return self.state == "held" and now < self.expires_at


def hold_end(coupon: Coupon, defn: CouponDefinition, now: datetime, ttl_seconds: int) -> datetime:
    """When a hold taken `now` ends: after `ttl_seconds`, but never after the coupon's validity
    (the definition's `expires_at`, the coupon's own `valid_until`), so a hold is confirmed
    only while its coupon is valid. Whole milliseconds: storage compares it as epoch ms."""
    ends = [now + timedelta(seconds=ttl_seconds)]
    ends += [t for t in (defn.config.expires_at, coupon.valid_until) if t is not None]
    end = min(ends)
    return end.replace(microsecond=end.microsecond // 1000 * 1000)


ENDS: dict[str, ReleaseReason] = {
    "released": "released",
    "expired": "expired",
    "confirmed": "confirmed",
}


def ending(reservation: Reservation) -> tuple[ReleaseReason, datetime] | None:
    """How and when a settled hold ended (None while held): an expired one at its end, the
    others when they were settled."""
    r = reservation
    reason = ENDS.get(r.state)
    if reason is None:
        return None
    if reason == "expired":
        return reason, r.expires_at
    return reason, r.settled_at or r.expires_at
