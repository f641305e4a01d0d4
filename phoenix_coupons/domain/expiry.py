"""Expiry reminders and expiry events of user coupons: which steps fall due, and when the
next one does. Pure: the clock (`now`) and what storage knows (`Usage`) are given.

A user coupon (kind "issued") with an expiry has one step per lead time of its definition's
`remind_before` (a `coupon.expiring` event at expiry - lead) and one at its expiry (a
`coupon.expired` event, when it expires with uses left). The rule reads the definition as it
is at the step's time:
- the effective expiry is the earlier of the coupon's own `valid_until` and the definition's
  `expires_at` now (what redemption reads): moved later, the steps move with it;
- revoked coupons and archived (or deleted) definitions' coupons get nothing more;
- a paused definition's coupons, a redeemed coupon's reminders and a fully used coupon's
  steps are passed over (no event), and the later steps stay due;
- a reminder due before the coupon was issued is none of its steps (its `coupon.issued`
  event carries the expiry), and of several steps due at once (a scheduler that was away)
  only the last is sent: the expiry, or the shortest lead's reminder.
A step sent is recorded by name (its lead time's text, or "expired") and never sent again,
whatever later changes of the definition."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from phoenix_coupons.domain import durations
from phoenix_coupons.domain.models import Coupon
from schemas.coupons import CouponConfig, CouponDefinition

EXPIRED = "expired"
StepKind = Literal["expiring", "expired"]


@dataclass(frozen=True, slots=True)
class Step:
    """`lead`: the reminder's lead time as configured ("P3D"); None for the expiry."""

    kind: StepKind
    due: datetime
    expires_at: datetime
    lead: str | None = None

    @property
    def name(self) -> str:
        return self.lead if self.lead is not None else EXPIRED


@dataclass(frozen=True, slots=True)
class Usage:
    """What storage says at the step's time: `redeemed`, the coupon has an active
    redemption; `uses_left`, its usage group is below its limit."""

    redeemed: bool = False
    uses_left: bool = True


@dataclass(frozen=True, slots=True)
class Plan:
    """`send`: the steps to publish now; `next_due`: when to look again (None: never)."""

    send: tuple[Step, ...]
    next_due: datetime | None


DONE = Plan((), None)


def mark(step: str, attempt: str) -> str:
    """A step sent, as the coupon records it: with the scheduler attempt that sent it."""
    return f"{step}:{attempt}"


def step_of(mark: str) -> str:
    return mark.rsplit(":", 1)[0]


def effective_expiry(coupon: Coupon, defn: CouponDefinition) -> datetime | None:
    """When the coupon stops being redeemable, as redemption reads it now."""
    ends = [t for t in (coupon.valid_until, defn.config.expires_at) if t is not None]
    return min(ends) if ends else None


def _leads(defn: CouponDefinition) -> list[tuple[str, timedelta]]:
    return [(text, durations.of(text)) for text in defn.config.remind_before or ()]


def steps(coupon: Coupon, defn: CouponDefinition, expires_at: datetime) -> list[Step]:
    """The coupon's steps in time order, reminders due before its issuance left out."""
    found = [
        Step("expiring", expires_at - lead, expires_at, text)
        for text, lead in _leads(defn)
        if expires_at - lead >= coupon.issued_at
    ]
    found.append(Step("expired", expires_at, expires_at))
    return sorted(found, key=lambda s: (s.due, s.kind == "expired"))


def first_due(
    issued_at: datetime, expires_at: datetime | None, leads: Iterable[timedelta], after: datetime
) -> datetime | None:
    """The time of a coupon's first step at or after `after` (its issuance, when it is
    stored; the time of a migration, for coupons stored before steps existed)."""
    if expires_at is None:
        return None
    times = [expires_at - lead for lead in leads if expires_at - lead >= issued_at]
    times.append(expires_at)
    later = [t for t in times if t >= after]
    return min(later) if later else None


def reschedules(old: CouponConfig, new: CouponConfig) -> bool:
    """Whether a definition's change may bring its coupons' steps earlier than their due
    times (an expiry moved or set, other lead times): then each is planned again."""
    return old.expires_at != new.expires_at or sorted(old.remind_before or ()) != sorted(
        new.remind_before or ()
    )


def eligible(coupon: Coupon, defn: CouponDefinition | None) -> bool:
    """Whether the coupon can have steps at all (now or after a change of its definition)."""
    return (
        coupon.kind == "issued"
        and coupon.user_id is not None
        and coupon.status == "active"
        and defn is not None
        and defn.status != "archived"
    )


def plan(
    coupon: Coupon,
    defn: CouponDefinition | None,
    usage: Usage,
    done: Iterable[str],
    now: datetime,
) -> Plan:
    """The steps to send now and the next due time, given the step names sent before."""
    if not eligible(coupon, defn):
        return DONE
    assert defn is not None
    expires_at = effective_expiry(coupon, defn)
    if expires_at is None:
        return DONE
    sent = set(done)
    todo = [s for s in steps(coupon, defn, expires_at) if s.name not in sent]
    due = [s for s in todo if s.due <= now]
    later = [s for s in todo if s.due > now]
    next_due = later[0].due if later else None
    if not due:
        return Plan((), next_due)
    last = due[-1]  # the others are superseded: no reminder after a later one, nor expiry
    if defn.status == "paused" or not usage.uses_left:
        return Plan((), next_due)
    if last.kind == "expiring" and usage.redeemed:
        return Plan((), next_due)
    return Plan((last,), next_due)
