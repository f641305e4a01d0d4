"""Entries of the outbox: an event to publish and the document it announces (its subject).

A writer prepares its entries before the documents they announce and readies them after, so
a crash in between leaves a prepared entry that a sweep readies (its subject came) or drops
(it never did): no document without its event, no event without its document."""

from dataclasses import dataclass
from typing import Literal

from phoenix_coupons.domain.events import (
    OutboundEvent,
    coupon_issued,
    coupon_redeemed,
    event_id,
    redemption_rolled_back,
)
from phoenix_coupons.domain.history import HistoryEntry
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.redemption import Redemption
from schemas.events import DefinitionExhausted


@dataclass(frozen=True)
class Subject:
    """The document an entry announces: its kind and id, and what it must still hold for
    the entry to be announced (a coupon its code, a redemption its state, a definition's
    issuance budget the exhaustion claim that prepared the entry: `budget`, id the
    definition's)."""

    kind: Literal["coupon", "redemption", "budget"]
    id: str
    code: str | None = None
    state: str | None = None


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


def exhausted(event: DefinitionExhausted, claim: str) -> OutboxEntry:
    """`claim`: the exhaustion claim this entry is for (the budget's state once claimed):
    an entry whose writer did not win the claim is dropped by the sweep, never sent."""
    return OutboxEntry(event, Subject("budget", event.definition_id, state=claim))
