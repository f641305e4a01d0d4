"""What a redeem leaves once its redemption is stored, settled after the answer: its slots'
confirm, its outbox entry's timeline step and ready. One settler per process batches them:
one command per kind for everything that came in while the previous flush ran, a flush
started at once when it is idle (no timer: under load the batches grow by themselves).

A crash (or a MongoDB error) before a flush leaves what the sweeps settle after the grace
(adapters/sweeper.py): the prepared entry readied since its redemption is stored, the
unconfirmed slot confirmed since its redemption holds it. Events late, never lost."""

import asyncio
from collections.abc import Callable, Sequence

import structlog

from phoenix_coupons.domain.outbox import OutboxEntry
from phoenix_coupons.services.ports import Outbox, RedemptionRepo, SlotClaim

log = structlog.get_logger(__name__)


class Settler:
    def __init__(
        self, redemptions: RedemptionRepo, outbox: Outbox, on_settled: Callable[[], None]
    ) -> None:
        self._redemptions = redemptions
        self._outbox = outbox
        self._on_settled = on_settled  # wakes the relay: the entries are ready
        self._claims: list[SlotClaim] = []
        self._entries: list[OutboxEntry] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, claim: SlotClaim | None, entries: Sequence[OutboxEntry]) -> None:
        """Settle these soon; a flush starts now unless one runs (it takes them after)."""
        if claim is not None and claim.slots:
            self._claims.append(claim)
        self._entries.extend(entries)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="settler")

    @property
    def pending(self) -> int:
        return len(self._claims) + len(self._entries)

    async def flush(self) -> None:
        """Returns once everything added before has been settled (or left to the sweeps)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while self._claims or self._entries:
                claims, self._claims = self._claims, []
                entries, self._entries = self._entries, []
                try:
                    await asyncio.gather(
                        self._redemptions.confirm_claims(claims), self._outbox.ready(entries)
                    )
                except Exception as exc:  # MongoDB away: the sweeps settle them later
                    log.warning(
                        "settle_failed", error=repr(exc), slots=len(claims), entries=len(entries)
                    )
                    continue
                self._on_settled()
        finally:
            self._task = None
