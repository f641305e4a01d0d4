"""Finishes what a crash cut short between two writes (no multi-document transactions): every
`PHOENIX_SWEEP_SECONDS`, each sweep of `SWEEPS` settles what has waited longer than the grace
period (`PHOENIX_SWEEP_GRACE_SECONDS`) for the write that should have followed. Runs in every
process that runs the outbox relay; sweeps are idempotent, so several at once are harmless.

A sweep is `async (mongo, now, grace) -> settled count`."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import structlog

from phoenix_coupons.adapters.background import cancel_and_wait
from phoenix_coupons.adapters.claims_sweep import sweep_claim_batches, sweep_claims
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.outbox import sweep_outbox
from phoenix_coupons.adapters.redemption_repo import sweep_slots
from phoenix_coupons.adapters.reservation_repo import sweep_holds
from phoenix_coupons.domain.clock import Clock

log = structlog.get_logger(__name__)

Sweep = Callable[[Mongo, datetime, timedelta], Awaitable[int]]

# In order: what settles a document before what settles the events announcing it.
SWEEPS: tuple[Sweep, ...] = (
    sweep_claim_batches,  # batches of claims a crash left open
    sweep_claims,  # code claims without their coupon (or confirmed late)
    sweep_slots,  # redemption slots claimed without their redemption (or left by a rollback)
    sweep_holds,  # holds whose time is over (expired, announced), settles left unfinished
    sweep_outbox,  # prepared outbox entries: readied when their subject came, dropped if not
)


class Sweeper:
    def __init__(
        self,
        mongo: Mongo,
        clock: Clock,
        every_seconds: float,
        grace_seconds: float,
        sweeps: Sequence[Sweep] = SWEEPS,
    ) -> None:
        self._mongo = mongo
        self._clock = clock
        self._every = every_seconds
        self._grace = timedelta(seconds=grace_seconds)
        self._sweeps = tuple(sweeps)
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> int:
        """One pass of every sweep; how many things they settled."""
        settled = 0
        for sweep in self._sweeps:
            n = await sweep(self._mongo, self._clock(), self._grace)
            if n:
                log.info("sweep_settled", sweep=sweep.__name__, count=n)
            settled += n
        return settled

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sweeper")

    async def stop(self) -> None:
        if self._task:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.sweep()
            except Exception as exc:  # MongoDB away: the next pass tries again
                log.warning("sweep_failed", error=repr(exc))
