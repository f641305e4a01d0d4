"""The consume loop and the worker's Kafka transport: the consumer's and producers'
lifecycle, a batch from `getmany` at a time through the pipeline (consumers/pipeline.py),
its records produced without waiting on each, its offsets committed only after Kafka
acknowledged them, then the redelivery marks advanced.

At least once (default): a crash before the commit redelivers the batch; coupons are not
issued twice (unique issue key) and those already stored are announced again
(services/redelivery.py).
Exactly once (`PHOENIX_EXACTLY_ONCE=true`): each input partition has its own transactional
producer (consumers/transactions.py); a batch's records and offsets of one partition go in
that partition's transaction, so `read_committed` consumers see each announcement once.

Elsewhere: the retry policy (consumers/retry.py), group changes (consumers/rebalance.py),
membership and fencing (consumers/membership.py), readiness (consumers/readiness.py), what
a batch leaves in the metrics (consumers/batch_metrics.py).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import TopicPartition
from tenacity import RetryCallState, RetryError

from consumers import batch_metrics, metrics
from consumers.membership import Fencing, Membership, is_fenced_instance, joined, leave_on_stop
from consumers.outbound import outbound, outbound_by_partition
from consumers.pipeline import Batch, Decoded, Outcome, Pipeline, Record
from consumers.readiness import Readiness
from consumers.rebalance import Rebalance
from consumers.retry import PRODUCER_LOST, batch_attempts, exception, fetch_pause, until_up
from consumers.transactions import PartitionProducers, PartitionTransactions
from phoenix_coupons.adapters.definition_cache import DefinitionCache
from phoenix_coupons.adapters.kafka import (
    OutboundRecord,
    TopicsUnavailable,
    ensure_topics,
    make_producer,
    send,
)
from phoenix_coupons.domain.delivery import Partition
from phoenix_coupons.services.issuance import IssuanceService
from phoenix_coupons.services.redelivery import Redelivery
from phoenix_coupons.settings import ServiceSettings

__all__ = ["Batch", "Record", "Worker"]

log = structlog.get_logger(__name__)


@dataclass
class _Progress:
    """A batch's attempts so far: the partitions still to commit (exactly once: fenced and
    committed ones drop out), those committed, and the last attempt's part of the batch
    (`work`) and its outcome."""

    whole: Decoded
    todo: dict[TopicPartition, object]
    work: Decoded
    committed: set[TopicPartition] = field(default_factory=set)
    outcome: Outcome = field(default_factory=Outcome)


class Worker:
    def __init__(
        self,
        settings: ServiceSettings,
        issuance: IssuanceService,
        redelivery: Redelivery,
        cache: DefinitionCache,
        ping: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`ping`: MongoDB's, for the readiness (none: not part of it)."""
        self._s = settings
        self._bootstrap = bootstrap = settings.kafka_bootstrap_servers
        self._redelivery = redelivery
        self._pipeline = Pipeline(issuance, redelivery)
        self._cache = cache
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # one batch at a time; a revocation waits for it
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._renew_producer = False
        self._membership = Membership.of(settings)
        self._fencing = Fencing(
            self._membership, bootstrap, settings.consumer_group, self._on_fenced
        )
        self._eos = settings.exactly_once
        self._producers = PartitionProducers(bootstrap, settings.consumer_group)
        self._txns: PartitionTransactions | None = None  # exactly once, with the consumer
        self._readiness = Readiness(
            lambda: self._consumer is not None and joined(self._consumer),
            ping,
            settings.worker_ready_timeout_seconds,
        )
        self.topics = [
            settings.topic_achievements,
            settings.topic_streaks,
            settings.topic_leaderboards,
        ]

    @property
    def ready(self) -> bool:
        return self._readiness.ready

    def not_ready_reasons(self) -> list[str]:
        return self._readiness.reasons()

    def transactional_ids(self) -> dict[TopicPartition, str]:
        """Exactly once: the transactional id of each partition whose producer is ready."""
        return self._producers.transactional_ids()

    def request_stop(self) -> None:
        """Finish the batch in hand, commit, then leave the group."""
        self._stop.set()

    async def run(self) -> None:
        """Until `request_stop`. Raises `TopicsUnavailable` when the topics cannot be made
        sure of within the deadline, `WorkerFenced` when another process took its id."""
        try:
            if self._s.kafka_create_topics:
                await self._ensure_topics()
            await self._until_up(self._cache.start, "definitions")
            if not self._eos:
                self._producer = await self._until_up(self._start_producer, "kafka_producer")
            self._consumer = await self._until_up(self._start_consumer, "kafka_consumer")
            if self._stop.is_set():
                return
            self._readiness.started = True
            self._readiness.watch()
            log.info(
                "worker_started",
                topics=self.topics,
                group=self._s.consumer_group,
                exactly_once=self._eos,
                worker_id=self._s.worker_id,
                membership="static" if self._membership.static else "dynamic",
                client_id=self._membership.client_id,
            )
            await self._consume(self._consumer)
        finally:
            await self._readiness.stop()
            await self._close()
            log.info("worker_stopped")
        if self._fencing.fenced is not None:
            raise self._fencing.fenced

    # ------------------------------------------------------------------ lifecycle

    async def _ensure_topics(self) -> None:
        try:
            await ensure_topics(self._s)
        except TopicsUnavailable as exc:
            log.error("kafka_topics_unavailable", error=str(exc))
            raise

    async def _until_up(self, start: Callable[[], Awaitable[Any]], what: str) -> Any:
        return await until_up(start, what, self._stop.is_set)

    async def _start_producer(self) -> AIOKafkaProducer:
        """At least once: one idempotent producer."""
        # A whole batch is queued before the worker waits for the acks: lingering would only
        # add its 5 ms to every batch (and to the end-to-end latency).
        producer = make_producer(self._bootstrap, linger_ms=0)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _start_consumer(self) -> AIOKafkaConsumer:
        heartbeat_ms = max(1000, self._s.kafka_session_timeout_ms // 3)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._s.consumer_group,
            client_id=self._membership.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._s.worker_batch_size,
            session_timeout_ms=self._s.kafka_session_timeout_ms,
            heartbeat_interval_ms=heartbeat_ms,
            # Static membership (an explicit PHOENIX_WORKER_ID): a restarted worker takes its
            # partitions back at once, instead of waiting for its killed incarnation's session
            # to expire. Without one, dynamic: processes on one host never share an id.
            group_instance_id=self._membership.instance_id,
        )
        if self._eos:
            # A fenced partition that no revocation took within two heartbeats is still ours.
            self._txns = PartitionTransactions(self._producers, consumer, 2 * heartbeat_ms / 1000)
        listener = Rebalance(consumer, self._lock, self._fencing, self._redelivery, self._txns)
        consumer.subscribe(self.topics, listener=listener)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _close(self) -> None:
        if self._consumer is not None and self._membership.static:
            leave_on_stop(self._consumer)
        for closer in (self._consumer, self._producer):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.stop()
        await self._producers.close()
        await self._cache.stop()

    def _on_fenced(self) -> None:
        self._readiness.fenced = True
        self._stop.set()

    # ------------------------------------------------------------------ the consume loop

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        failures = 0
        while not self._stop.is_set():
            if self._txns is not None:
                await self._take_partitions(self._txns)
            try:
                batch = await consumer.getmany(
                    timeout_ms=self._s.worker_poll_ms, max_records=self._s.worker_batch_size
                )
                failures = 0
                self._readiness.recovered("fetch")
            except KafkaError as exc:  # the broker away: wait, then fetch again
                if is_fenced_instance(exc):
                    self._fencing.fence(cause=exc)
                    break
                failures += 1
                metrics.ERRORS.labels(type(exc).__name__).inc()
                self._readiness.failing = f"fetch: {exc!r}"
                log.warning("fetch_failed", attempt=failures, error=repr(exc))
                await self._pause(fetch_pause(failures))
                continue
            if batch and self._fencing.fenced is None:  # fenced: it stops, leaving the records
                async with self._lock:
                    await self._process(batch)

    async def _take_partitions(self, txns: PartitionTransactions) -> None:
        """Exactly once: initialise the producers of newly assigned partitions."""
        if not txns.wanted():
            return
        async with self._lock:
            try:
                await txns.take()
            except IllegalStateError:  # reassigned meanwhile: the listener set them pending
                return
            except Exception as exc:
                self._readiness.failing = f"initialising partitions: {exc!r}"
                log.warning("partitions_not_initialised", error=repr(exc))
                await self._pause(1.0)
                return
        self._readiness.recovered("initialising")

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the worker is asked to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # ------------------------------------------------------------------ a batch

    async def _process(self, batch: Batch) -> None:
        """A batch through the pipeline, published and committed: retried until it is, the
        worker stops, or the group moves its partitions. Then the marks advance."""
        started = time.perf_counter()
        whole = Decoded.of(batch)
        batch_metrics.consumed(whole)
        progress = _Progress(whole, dict(whole.offsets), whole)
        try:
            async for attempt in batch_attempts(self._stop.is_set, self._before_retry):
                with attempt:
                    retry = attempt.retry_state.attempt_number > 1
                    if self._txns is None:
                        await self._at_least_once(progress, retry)
                    else:
                        await self._exactly_once(self._txns, progress, retry)
            self._readiness.failing = None
        except RetryError:
            log.warning("batch_abandoned_on_shutdown", records=len(whole.records))
            return
        except CommitFailedError as exc:  # the group moved on; the new owner redelivers
            self._readiness.failing = None  # a rebalance, not a dependency failing
            log.warning("commit_failed_rebalance", error=repr(exc))
            return
        except KafkaError as exc:
            if not is_fenced_instance(exc):
                raise
            self._fencing.fence(cause=exc)
            return
        if progress.committed:
            await self._redelivery.advance(
                {Partition(tp.topic, tp.partition): whole.offsets[tp] for tp in progress.committed},
                announced=bool(progress.outcome.announce),
            )
        batch_metrics.processed(whole, progress.work, progress.outcome, self._highwater, started)

    async def _at_least_once(self, progress: _Progress, retry: bool) -> None:
        work = progress.work
        outcome = await self._pipeline.run(work, retry)
        topics = self._s.topic_coupons_issued, self._s.topic_dlq
        await self._publish_and_commit(outbound(outcome, *topics), work.offsets)
        progress.outcome, progress.committed = outcome, set(work.offsets)

    async def _exactly_once(
        self, txns: PartitionTransactions, progress: _Progress, retry: bool
    ) -> None:
        """Each partition's records and offset in its own transaction. Partitions whose
        producer was fenced (moved to another worker) drop out, uncommitted; those whose
        transaction failed are retried."""
        progress.committed |= await txns.repair(progress.todo, progress.whole.offsets)
        work = progress.whole.only(progress.todo)
        outcome = await self._pipeline.run(work, retry)
        topics = self._s.topic_coupons_issued, self._s.topic_dlq
        out = outbound_by_partition(work, outcome, *topics)
        done, fenced, failure = await txns.commit(out, work.offsets)
        metrics.ERRORS.labels("ProducerFenced").inc(len(fenced))
        progress.committed |= done
        for tp in done | fenced:
            del progress.todo[tp]
        progress.work, progress.outcome = work, outcome
        if failure is not None:
            raise failure

    async def _publish_and_commit(
        self, out: list[OutboundRecord], offsets: dict[TopicPartition, int]
    ) -> None:
        """At least once: the records produced (acknowledged), then the offsets committed."""
        if self._renew_producer:
            await self._replace_producer()
        assert self._producer is not None and self._consumer is not None
        producer = self._producer
        await asyncio.gather(*[await send(producer, r) for r in out])
        await self._consumer.commit(offsets)

    async def _replace_producer(self) -> None:
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()
        self._producer = await self._start_producer()
        self._renew_producer = False
        log.info("producer_replaced")

    async def _before_retry(self, state: RetryCallState) -> None:
        error = exception(state)
        metrics.ERRORS.labels(type(error).__name__).inc()
        if isinstance(error, PRODUCER_LOST):
            self._renew_producer = True
        self._readiness.failing = f"batch: {error!r}"
        log.warning("batch_retry", attempt=state.attempt_number, error=repr(error))

    def _highwater(self, tp: TopicPartition) -> int | None:
        assert self._consumer is not None
        high: int | None = self._consumer.highwater(tp)
        return high
