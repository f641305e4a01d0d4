"""The generation job runner's loop (services/job_run.py does the work) and its metrics.
Runs in the worker processes (`run`, `worker`) unless PHOENIX_JOB_RUNNER=false, and alone as
`phoenix-coupons jobs`; any number at once: a job's lease goes to one of them.

It runs jobs one after the other while any is due, then looks again every
PHOENIX_JOB_POLL_SECONDS, or at once when this process's API takes a job (`wake`)."""

import asyncio
import contextlib

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from phoenix_coupons.adapters.background import cancel_and_wait
from phoenix_coupons.services.job_run import JobRun

log = structlog.get_logger(__name__)

STOP_GRACE_S = 10.0  # a stop lets the chunk in hand finish, up to this long


class JobMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.finished = Counter(
            "phoenix_generation_jobs_finished_total",
            "Generation jobs this runner ended, by status",
            ["status"],
            registry=registry,
        )
        self.failures = Counter(
            "phoenix_generation_job_runner_failures_total",
            "Runner passes that failed (MongoDB out of reach...); the job resumes once its "
            "lease ends",
            registry=registry,
        )


DEFAULT = JobMetrics()


class JobRunner:
    def __init__(self, run: JobRun, poll_seconds: float, metrics: JobMetrics = DEFAULT) -> None:
        self._run_job = run
        self._poll = poll_seconds
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        self._wake.set()

    async def run_due(self) -> int:
        """Jobs until none is due (or stopping); how many it handled."""
        handled = 0
        while not self._stopping.is_set():
            job = await self._run_job.run_next(self._stopping.is_set)
            if job is None:
                return handled
            handled += 1
            if job.done:
                self._metrics.finished.labels(job.status).inc()
        return handled

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name="job-runner")
            log.info("job_runner_started", poll_seconds=self._poll)

    async def stop(self) -> None:
        """After the chunk in hand (the job goes back to the queue for another runner)."""
        if self._task:
            self._stopping.set()
            self._wake.set()
            await asyncio.wait({self._task}, timeout=STOP_GRACE_S)
            await cancel_and_wait(self._task)
            self._task = None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self.run_due()
            except Exception as exc:  # MongoDB away: the lease ends, the job resumes
                self._metrics.failures.inc()
                log.warning("job_runner_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
