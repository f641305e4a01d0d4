"""Entries of the outbox: an event to publish and the document it announces (its subject).

A writer prepares its entries before the documents they announce and readies them after, so
a crash in between leaves a prepared entry that a sweep readies (its subject came) or drops
(it never did): no document without its event, no event without its document."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from phoenix_coupons.domain import codes
from phoenix_coupons.domain.events import (
    OutboundEvent,
    coupon_issued,
    coupon_redeemed,
    coupon_reserved,
    event_id,
    expiry_event,
    generation_job_completed,
    redemption_rolled_back,
    reservation_released,
)
from phoenix_coupons.domain.expiry import Step
from phoenix_coupons.domain.history import Actor, HistoryEntry, HistoryKind
from phoenix_coupons.domain.jobs import Job
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.redemption import Redemption
from phoenix_coupons.domain.reservation import Reservation
from schemas.events import DefinitionExhausted, ReleaseReason
from schemas.redemptions import Coupon as CouponSnapshot


@dataclass(frozen=True)
class Subject:
    """The document an entry announces: its kind and id, and what it must still hold for
    the entry to be announced (a coupon its code, a redemption or a reservation its state, a
    definition's issuance budget the exhaustion claim that prepared the entry: `budget`, id
    the definition's; a coupon the expiry step marked sent by the attempt that prepared the
    entry: `step_mark`)."""

    kind: Literal["coupon", "redemption", "reservation", "budget", "job"]
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


@dataclass(frozen=True)
class IssuedBundle:
    """The `coupon.issued` events of many coupons in one outbox entry (a generation job's
    chunk, a bulk call's insert), each built from its coupon as stored: one write for them
    all instead of one per coupon. Prepared naming every coupon its writer may store, then
    readied naming those stored (`stored`) and holding them, so that the relay of the
    writer's process sends them as they are instead of reading them back (a sweep readies a
    crash's bundle naming those it finds)."""

    id: str
    tenant_id: str
    coupon_ids: tuple[str, ...]
    at: datetime
    coupons: tuple[Coupon, ...] = ()  # the stored ones, in `coupon_ids`' order, once readied

    def __post_init__(self) -> None:
        if self.coupons and tuple(c.id for c in self.coupons) != self.coupon_ids:
            raise ValueError("a bundle holds the coupons it names, in its order, or none")

    def stored(self, coupons: Iterable[Coupon]) -> "IssuedBundle":
        """The bundle naming those of `coupons` it names, in its order, and holding them."""
        by_id = {c.id: c for c in coupons}
        kept = tuple(by_id[i] for i in self.coupon_ids if i in by_id)
        return IssuedBundle(self.id, self.tenant_id, tuple(c.id for c in kept), self.at, kept)


def issued(coupon: Coupon) -> OutboxEntry:
    return OutboxEntry(coupon_issued(coupon), Subject("coupon", coupon.id, code=coupon.code))


def _step(
    coupon: CouponSnapshot,
    at: datetime,
    kind: HistoryKind,
    ref: str,
    actor: Actor | None,
    details: Mapping[str, Any],
) -> HistoryEntry:
    """A step of the coupon's timeline; details left out while empty (None)."""
    return HistoryEntry(
        tenant_id=coupon.tenant_id,
        code_norm=codes.normalize(coupon.code),
        at=at,
        kind=kind,
        ref=ref,
        actor=actor,
        details={k: v for k, v in details.items() if v is not None},
    )


def redeemed(redemption: Redemption, actor: Actor | None = None) -> OutboxEntry:
    r = redemption
    details = {
        "user_id": r.user_id,
        "metadata": None if r.metadata is None else dict(r.metadata),
        "reservation_id": r.reservation_id,
    }
    return OutboxEntry(
        coupon_redeemed(r),
        Subject("redemption", r.id),
        history=_step(r.coupon, r.redeemed_at, "redeemed", r.id, actor, details),
    )


def rolled_back(redemption: Redemption, actor: Actor | None = None) -> OutboxEntry:
    """Never announced before the redemption's own event (a reversal before its grant)."""
    r = redemption
    if r.rolled_back_at is None:
        raise ValueError("the redemption has not been rolled back")
    details = {"reason": r.rollback_reason, "use_kept": r.use_kept or None}
    return OutboxEntry(
        redemption_rolled_back(r),
        Subject("redemption", r.id, state="rolled_back"),
        after=event_id("coupon.redeemed", r.id),
        history=_step(r.coupon, r.rolled_back_at, "rolled_back", r.id, actor, details),
    )


def reserved(reservation: Reservation, actor: Actor | None = None) -> OutboxEntry:
    r = reservation
    details = {
        "user_id": r.user_id,
        "expires_at": r.expires_at.isoformat(),
        "metadata": None if r.metadata is None else dict(r.metadata),
    }
    return OutboxEntry(
        coupon_reserved(r),
        Subject("reservation", r.id),
        history=_step(r.coupon, r.reserved_at, "reserved", r.id, actor, details),
    )


def released(
    reservation: Reservation, reason: ReleaseReason, at: datetime, actor: Actor | None = None
) -> OutboxEntry:
    """The end of a hold, announced once its reservation is stored in the state it names;
    never before the hold's own `coupon.reserved`, nor a confirm's before the redemption's
    `coupon.redeemed` (actor None: the sweep's, for an expiry)."""
    r = reservation
    details = {
        "reason": reason,
        "redemption_id": r.redemption_id if reason == "confirmed" else None,
    }
    return OutboxEntry(
        reservation_released(r, reason, at),
        Subject("reservation", r.id, state=reason),
        after=(
            event_id("coupon.redeemed", r.redemption_id)
            if reason == "confirmed" and r.redemption_id is not None
            else event_id("coupon.reserved", r.id)
        ),
        history=_step(r.coupon, at, "released", r.id, actor, details),
    )


def exhausted(event: DefinitionExhausted, claim: str) -> OutboxEntry:
    """`claim`: the exhaustion claim this entry is for (the budget's state once claimed):
    an entry whose writer did not win the claim is dropped by the sweep, never sent."""
    return OutboxEntry(event, Subject("budget", event.definition_id, state=claim))


def job_completed(job: Job, at: datetime) -> OutboxEntry:
    """Announced only if the job is stored in the status the event names (a runner that lost
    its lease writes none)."""
    return OutboxEntry(generation_job_completed(job, at), Subject("job", job.id, state=job.status))


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
