"""The expiry scheduler's loop (services/expiry.py does the work) and its metrics. Runs in
the worker processes (`run`, `worker`) unless PHOENIX_EXPIRY_SCHEDULER=false, and alone as
`phoenix-coupons scheduler`; any number at once: each coupon's claim goes to one of them.

Every PHOENIX_EXPIRY_SWEEP_SECONDS it takes batches of due coupons until one comes back
short, so a step goes out within that interval of its time (plus the time to work through
what fell due at once)."""

import asyncio
import contextlib

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from phoenix_coupons.adapters.background import cancel_and_wait
from phoenix_coupons.services.expiry import ExpiryService, SweepResult

log = structlog.get_logger(__name__)

STOP_GRACE_S = 10.0  # a stop lets the batch in hand finish, up to this long


class ExpiryMetrics:
    """One set per registry: the process's default one, or a test's own."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.events = Counter(
            "phoenix_expiry_events_total",
            "Expiry events the scheduler handed to the outbox (readied), by type; the relay "
            "counts them published in phoenix_outbox_published_total",
            ["event_type"],
            registry=registry,
        )
        self.claimed = Counter(
            "phoenix_expiry_coupons_claimed_total",
            "Due coupons this scheduler claimed and planned (sent, skipped or rescheduled)",
            registry=registry,
        )
        self.lag = Gauge(
            "phoenix_expiry_lag_seconds",
            "How long the oldest due coupon had been due at this scheduler's last pass "
            "(0: none due)",
            registry=registry,
        )
        self.failures = Counter(
            "phoenix_expiry_sweep_failures_total",
            "Scheduler passes that failed (MongoDB out of reach...); retried next interval",
            registry=registry,
        )

    def record(self, result: SweepResult) -> None:
        self.claimed.inc(result.claimed)
        for event_type, n in result.sent.items():
            self.events.labels(event_type).inc(n)


DEFAULT = ExpiryMetrics()


class ExpiryScheduler:
    def __init__(
        self,
        service: ExpiryService,
        every_seconds: float,
        metrics: ExpiryMetrics = DEFAULT,
    ) -> None:
        self._service = service
        self._every = every_seconds
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run_once(self) -> int:
        """Batches until one is short (nothing more due); how many coupons it claimed."""
        claimed = 0
        first = True
        while True:
            result = await self._service.sweep()
            self._metrics.record(result)
            if first:
                self._metrics.lag.set(result.lag_seconds)
                first = False
            claimed += result.claimed
            if result.sent:
                log.info("expiry_events_readied", **result.sent, claimed=result.claimed)
            if result.due < self._service.batch_size or self._stopping.is_set():
                return claimed

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="expiry-scheduler")
            log.info("expiry_scheduler_started", every_seconds=self._every)

    async def stop(self) -> None:
        """After the batch in hand (cut short past STOP_GRACE_S: what it prepared is then
        settled by the next scheduler and the sweep, as after a crash)."""
        if self._task:
            self._stopping.set()
            await asyncio.wait({self._task}, timeout=STOP_GRACE_S)
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # MongoDB away: the next pass tries again
                self._metrics.failures.inc()
                log.warning("expiry_sweep_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every)
            if self._stopping.is_set():
                return
