"""Whether the worker can do its work now: `/readyz` and the gauge `phoenix_worker_ready`.

Ready when all hold:
- it started (topics verified, definitions loaded, consumer started) and is not stopping or
  fenced;
- it is a member of its consumer group whose coordinator answers (aiokafka forgets the
  coordinator when a heartbeat or commit cannot reach it; heartbeats go every session
  timeout / 3);
- no batch is failing: a batch being retried (MongoDB or Kafka not answering) or a failing
  fetch makes it not ready until one succeeds;
- MongoDB answered its last ping, sent every `PHOENIX_WORKER_READY_TIMEOUT_SECONDS` and given
  as long to answer.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from consumers import metrics

log = structlog.get_logger(__name__)


class Readiness:
    def __init__(
        self,
        joined: Callable[[], bool],
        ping: Callable[[], Awaitable[object]] | None,
        period_s: float,
    ) -> None:
        self._joined = joined
        self._ping = ping
        self._period_s = period_s
        self.started = False
        self.stopping = False
        self.fenced = False
        self.failing: str | None = None
        self._mongo: str | None = None if ping is None else "no answer yet"
        self._task: asyncio.Task[None] | None = None

    def reasons(self) -> list[str]:
        """Why the worker is not ready (empty: ready)."""
        if self.fenced:
            return ["fenced: another process uses this PHOENIX_WORKER_ID"]
        if self.stopping:
            return ["stopping"]
        if not self.started:
            return ["starting"]
        found = []
        if not self._joined():
            found.append(
                "kafka: not a member of the consumer group "
                "(joining, or its coordinator does not answer)"
            )
        if self.failing is not None:
            found.append(f"failing: {self.failing}")
        if self._mongo is not None:
            found.append(f"mongodb: {self._mongo}")
        return found

    @property
    def ready(self) -> bool:
        return not self.reasons()

    def recovered(self, what: str) -> None:
        """What was failing (`failing` starting with `what`) works again."""
        if self.failing is not None and self.failing.startswith(what):
            self.failing = None

    def watch(self) -> None:
        """Ping MongoDB in the background; the gauge reads `ready` when scraped."""
        metrics.READY.set_function(lambda: 1.0 if self.ready else 0.0)
        if self._ping is not None and self._task is None:
            self._task = asyncio.create_task(self._pings(), name="worker-readiness")

    async def stop(self) -> None:
        self.stopping = True  # the gauge reads 0 from now on
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _pings(self) -> None:
        assert self._ping is not None
        while True:
            started = time.monotonic()
            try:
                await asyncio.wait_for(self._ping(), self._period_s)
            except TimeoutError:
                self._set_mongo(f"no answer to a ping within {self._period_s:g} s")
            except Exception as exc:
                self._set_mongo(repr(exc))
            else:
                self._set_mongo(None)
            await asyncio.sleep(max(0.0, self._period_s - (time.monotonic() - started)))

    def _set_mongo(self, problem: str | None) -> None:
        if problem != self._mongo:
            log.info("worker_readiness_mongodb", problem=problem)
        self._mongo = problem
