"""The issuance budget of a definition (`config.issuance_limit.max_coupons`): at most that
many coupons issued in total, by events and bulk generation together, exact across
processes.

The rule: a writer reserves units (port IssuanceBudgets) BEFORE it stores coupons, one per
coupon it is about to store, and gives back those it did not store (stored before by another
attempt, refused, no free code). So the count never passes the limit, and what is stored
never passes the count. A crash between the reservation and the insert leaves units taken
for coupons that were never stored: fewer coupons issued, never more
(`phoenix-coupons migrate --recount` sets each count to the coupons stored).

The writer whose reservation finds the budget used up (granted to the last unit, or refused
with none left) announces `coupon.definition_exhausted`, once per definition and limit: it
prepares the outbox entry (insert only), claims the announcement on the budget (a
conditional update only one claim wins), then readies it. A crash in between leaves a
prepared entry the sweep readies when its claim holds, drops when it does not; the next
writer refused announces again otherwise."""

from collections.abc import Callable
from typing import NamedTuple

import structlog

from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.events import definition_exhausted
from phoenix_coupons.domain.outbox import exhausted
from phoenix_coupons.services.ports import IdFactory, IssuanceBudgets, Outbox
from schemas.coupons import CouponDefinition

log = structlog.get_logger(__name__)


def issuance_limit(defn: CouponDefinition) -> int | None:
    limit = defn.config.issuance_limit
    return None if limit is None else limit.max_coupons


class Taken(NamedTuple):
    """`granted`: units taken now; `remaining`: left after them (None: no limit)."""

    granted: int
    remaining: int | None


class IssuanceBudget:
    def __init__(
        self,
        counts: IssuanceBudgets,
        outbox: Outbox,
        clock: Clock,
        new_id: IdFactory,
        on_announced: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_announced`: an exhaustion event is ready (wakes the outbox relay)."""
        self._counts = counts
        self._outbox = outbox
        self._clock = clock
        self._new_id = new_id
        self._on_announced = on_announced

    async def take(self, defn: CouponDefinition, want: int, partial: bool) -> Taken:
        """Reserve `want` coupons of the definition (all of them without a limit): all or
        none, or as many as are left when `partial`."""
        limit = issuance_limit(defn)
        if limit is None or want <= 0:
            return Taken(want, None)
        got = await self._counts.reserve(defn.tenant_id, defn.id, want, limit, partial)
        if got.count >= limit and got.exhausted != limit:
            await self._announce(defn, limit)
        return Taken(got.granted, max(0, limit - got.count))

    async def give_back(self, defn: CouponDefinition, amount: int) -> None:
        """Units taken for coupons that were not stored."""
        if amount > 0 and issuance_limit(defn) is not None:
            await self._counts.give_back(defn.tenant_id, defn.id, amount)

    async def issued(self, defn: CouponDefinition) -> int:
        return await self._counts.issued(defn.tenant_id, defn.id)

    async def _announce(self, defn: CouponDefinition, limit: int) -> None:
        claim = f"exhausted:{limit}:{self._new_id()}"
        entry = exhausted(
            definition_exhausted(defn.tenant_id, defn.id, limit, self._clock()), claim
        )
        if not await self._outbox.prepare_new(entry):
            return  # another writer's entry: it claims and readies it (or the sweep settles)
        if await self._counts.mark_exhausted(defn.tenant_id, defn.id, limit, claim):
            await self._outbox.ready([entry])
            self._on_announced()
            log.info(
                "issuance_budget_exhausted",
                tenant_id=defn.tenant_id,
                definition_id=defn.id,
                max_coupons=limit,
            )
        else:  # announced before (and sent): ours is the only entry of its id, unsent
            await self._outbox.discard([entry.id])
