"""Entries of the outbox: an event to publish and the document it announces (its subject).

A writer prepares its entries before the documents they announce and readies them after, so
a crash in between leaves a prepared entry that a sweep readies (its subject came) or drops
(it never did): no document without its event, no event without its document."""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from phoenix_coupons.domain.events import (
    OutboundEvent,
    coupon_issued,
    coupon_redeemed,
    event_id,
    expiry_event,
    redemption_rolled_back,
)
from phoenix_coupons.domain.expiry import Step
from phoenix_coupons.domain.history import Actor, HistoryEntry
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.redemption import Redemption


@dataclass(frozen=True)
class Subject:
    """The document an entry announces: its kind and id, and what it must still hold for
    the entry to be announced (a coupon its code, a redemption its state, a coupon the
    expiry step marked sent by the attempt that prepared the entry: `step_mark`)."""

    kind: Literal["coupon", "redemption"]
    id: str
    code: str | None = None
    state: str | None = None
    step_mark: str | None = None


@dataclass(frozen=True)
class OutboxEntry:
    """`after`: the id of an entry that must be sent first (a rollback's redemption);
    `history`: the step of a code's timeline it tells of, stored when the entry is readied
    (by its writer, or by the sweep that readies what a crash left prepared)."""

    event: OutboundEvent
    subject: Subject
    after: str | None = None
    history: HistoryEntry | None = None

    @property
    def id(self) -> str:
        return self.event.event_id


def issued(coupon: Coupon) -> OutboxEntry:
    return OutboxEntry(coupon_issued(coupon), Subject("coupon", coupon.id, code=coupon.code))


def redeemed(redemption: Redemption) -> OutboxEntry:
    return OutboxEntry(coupon_redeemed(redemption), Subject("redemption", redemption.id))


def rolled_back(redemption: Redemption) -> OutboxEntry:
    """Never announced before the redemption's own event (a reversal before its grant)."""
    return OutboxEntry(
        redemption_rolled_back(redemption),
        Subject("redemption", redemption.id, state="rolled_back"),
        after=event_id("coupon.redeemed", redemption.id),
    )


def expiry_step(coupon: Coupon, step: Step, at: datetime, mark: str) -> OutboxEntry:
    """Announced only if the coupon records `mark` (the step, with the scheduler attempt
    that sent it) among its steps sent: an attempt that lost its claim never is."""
    event = expiry_event(coupon, step, at)
    details = {"expires_at": step.expires_at.isoformat()}
    if step.lead is not None:
        details["remind_before"] = step.lead
    history = HistoryEntry(
        coupon.tenant_id,
        coupon.code_norm,
        at,
        step.kind,
        event.event_id,
        Actor("scheduler"),
        details,
    )
    return OutboxEntry(event, Subject("coupon", coupon.id, step_mark=mark), history=history)
