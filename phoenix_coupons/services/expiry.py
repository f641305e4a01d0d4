"""The expiry scheduler's work: `coupon.expiring` reminders and `coupon.expired` events of
user coupons, each published once across schedulers and crashes.

One pass (`sweep`) claims a batch of due coupons for a new attempt (ExpirySchedule.claim:
one claim wins per coupon), plans each with the rule (domain/expiry.py) on its definition
and usage as they are now, prepares the steps' outbox entries, advances the coupons (steps
marked sent by this attempt, next due time) and readies the entries of the coupons it
advanced. A crash before the advance leaves prepared entries whose coupon does not record
their mark: the outbox sweep drops them, and the coupon, due again when the claim's lease
ends, is taken over. A crash after it leaves entries whose coupon records them: the sweep
readies them. Nothing is published twice, nothing lost."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from phoenix_coupons.domain import expiry, outbox
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.outbox import OutboxEntry
from phoenix_coupons.domain.redemption import UsageGroup, usage_group
from phoenix_coupons.services.ports import (
    DefinitionRepo,
    ExpirySchedule,
    Outbox,
    RedemptionRepo,
    ScheduleChange,
    Scheduled,
)
from schemas.coupons import CouponDefinition

log = structlog.get_logger(__name__)


def new_attempt() -> str:
    return uuid.uuid4().hex


@dataclass
class SweepResult:
    """One pass: coupons found due (the batch size: more may be) and claimed (the others
    went to another scheduler), events readied by type, the lag of the oldest due coupon
    when the pass began (seconds; 0 when none was due)."""

    due: int = 0
    claimed: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    lag_seconds: float = 0.0


class ExpiryService:
    def __init__(
        self,
        schedule: ExpirySchedule,
        definitions: DefinitionRepo,
        redemptions: RedemptionRepo,
        outbox: Outbox,
        clock: Clock,
        on_ready: Callable[[], None],
        batch_size: int,
        lease: timedelta,
        attempts: Callable[[], str] = new_attempt,
    ) -> None:
        self._schedule = schedule
        self._definitions = definitions
        self._redemptions = redemptions
        self._outbox = outbox
        self._clock = clock
        self._on_ready = on_ready
        self.batch_size = batch_size
        self._lease = lease
        self._attempts = attempts

    async def sweep(self) -> SweepResult:
        """One batch of due coupons; `due == batch_size` means more may be due."""
        now = self._clock()
        result = SweepResult()
        oldest = await self._schedule.oldest_due()
        if oldest is not None and oldest <= now:
            result.lag_seconds = (now - oldest).total_seconds()
        attempt = self._attempts()
        result.due, batch = await self._schedule.claim(now, self.batch_size, self._lease, attempt)
        result.claimed = len(batch)
        if not batch:
            return result
        plans = await self._plans(batch, now)
        entries: list[OutboxEntry] = []
        changes: list[ScheduleChange] = []
        for item in batch:
            c = item.coupon
            plan = plans[c.id]
            marks = tuple(expiry.mark(s.name, attempt) for s in plan.send)
            entries += [
                outbox.expiry_step(c, s, now, m) for s, m in zip(plan.send, marks, strict=True)
            ]
            changes.append(ScheduleChange(c.id, item.marks, marks, plan.next_due))
        if entries:
            await self._outbox.prepare(entries)
        advanced = await self._schedule.advance(attempt, changes)
        # Entries of coupons this attempt lost stay prepared: the outbox sweep drops them
        # (their mark is not on the coupon). Never discarded here: same ids as the winner's.
        ready = [e for e in entries if e.subject.id in advanced]
        if ready:
            await self._outbox.ready(ready)
            self._on_ready()
        for e in ready:
            result.sent[e.event.event_type] = result.sent.get(e.event.event_type, 0) + 1
        if len(ready) < len(entries):
            log.warning("expiry_claims_lost", attempt=attempt, lost=len(entries) - len(ready))
        return result

    async def _definitions_of(self, batch: list[Scheduled]) -> dict[str, CouponDefinition]:
        found: dict[str, CouponDefinition] = {}
        for key in sorted({(s.coupon.tenant_id, s.coupon.definition_id) for s in batch}):
            defn = await self._definitions.get(*key)
            if defn is not None:
                found[defn.id] = defn
        return found

    async def _plans(self, batch: list[Scheduled], now: datetime) -> dict[str, expiry.Plan]:
        """Each coupon's plan on its definition and usage now. Whether a coupon is redeemed
        matters only to a reminder: looked up for those about to get one."""
        definitions = await self._definitions_of(batch)
        coupons = {s.coupon.id: s.coupon for s in batch}
        groups = {i: _group(c, definitions.get(c.definition_id)) for i, c in coupons.items()}
        held = await self._redemptions.active_counts([g.key for g in groups.values() if g])
        done = {s.coupon.id: [expiry.step_of(m) for m in s.marks] for s in batch}

        def planned(coupon_id: str, redeemed: bool) -> expiry.Plan:
            c, group = coupons[coupon_id], groups[coupon_id]
            left = group is None or group.limit is None or held.get(group.key, 0) < group.limit
            usage = expiry.Usage(redeemed=redeemed, uses_left=left)
            return expiry.plan(c, definitions.get(c.definition_id), usage, done[coupon_id], now)

        plans = {i: planned(i, redeemed=False) for i in coupons}
        reminded = [i for i, p in plans.items() if any(s.kind == "expiring" for s in p.send)]
        for i in await self._schedule.redeemed(reminded) if reminded else ():
            plans[i] = planned(i, redeemed=True)
        return plans


def _group(coupon: Coupon, defn: CouponDefinition | None) -> UsageGroup | None:
    if defn is None or coupon.user_id is None:
        return None
    return usage_group(defn, coupon.user_id)
