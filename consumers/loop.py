"""The consume loop: a batch from `getmany`, coupons issued with bulk writes, records
produced without waiting on each, offsets committed only after Kafka acknowledged them.

At least once (default): a crash before the commit redelivers the batch; coupons are not
issued twice (unique issue key) and those already stored are announced again.
Exactly once (`PHOENIX_EXACTLY_ONCE=true`): the records and the consumed offsets go in one
Kafka transaction, so `read_committed` consumers see each announcement once.
"""

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from typing import Any, TypeAlias, cast

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.structs import ConsumerRecord, TopicPartition
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    wait_exponential,
)

from consumers import metrics
from consumers.dead_letters import dead_letter
from consumers.decode import decode_batch
from consumers.poison import PoisonRecord
from phoenix_coupons.adapters.announced_offsets import AnnouncedOffsets
from phoenix_coupons.adapters.definition_cache import DefinitionCache
from phoenix_coupons.adapters.kafka import OutboundRecord, issued_record, make_producer, send
from phoenix_coupons.domain.matching import Event
from phoenix_coupons.services.issuance import Delivery, IssuanceService
from phoenix_coupons.settings import Settings

log = structlog.get_logger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Batch: TypeAlias = dict[TopicPartition, list[Record]]
FATAL = (ProducerFenced,)
# Not retried either: the group moved on, the partitions' new owner redelivers the batch.
# Retrying would hold the lock the revocation waits for, and fail for ever.
NOT_RETRIED = (*FATAL, CommitFailedError)
# The producer's sender stops for good on these (a broker that lost the idempotent producer's
# state, e.g. restarted): the retry starts a new producer.
PRODUCER_LOST = (OutOfOrderSequenceNumber, UnknownProducerId)
# In C: no Python-level step per record.
_EVENT_TYPE = attrgetter("event_type")
_VALUE = attrgetter("value")


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """A revocation waits for the batch in hand to finish and commit: the next owner of the
    partition starts exactly where this worker stopped."""

    def __init__(
        self, lock: asyncio.Lock, on_assigned: Callable[[Sequence[TopicPartition]], None]
    ) -> None:
        self._lock = lock
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._lock:
            log.info("partitions_revoked", partitions=[f"{p.topic}:{p.partition}" for p in revoked])

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._on_assigned(assigned)
        log.info("partitions_assigned", partitions=[f"{p.topic}:{p.partition}" for p in assigned])


class Worker:
    def __init__(
        self,
        settings: Settings,
        issuance: IssuanceService,
        cache: DefinitionCache,
        announced: AnnouncedOffsets,
    ) -> None:
        self._s = settings
        self._issuance = issuance
        self._cache = cache
        self._announced = announced
        # Per partition: (announced up to, inflight up to) as stored when this worker got it;
        # its own batches then advance the first.
        self._marks: dict[TopicPartition, tuple[int, int]] = {}
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._renew_producer = False
        self.ready = False
        self.topics = [
            settings.topic_achievements,
            settings.topic_streaks,
            settings.topic_leaderboards,
        ]

    def request_stop(self) -> None:
        """Finish the batch in hand, commit, then leave the group."""
        self._stop.set()

    async def run(self) -> None:
        try:
            await self._until_up(self._cache.start, "definitions")
            self._producer = await self._until_up(self._start_producer, "kafka_producer")
            self._consumer = await self._until_up(self._start_consumer, "kafka_consumer")
            if self._stop.is_set():
                return
            self.ready = True
            log.info(
                "worker_started",
                topics=self.topics,
                group=self._s.consumer_group,
                exactly_once=self._s.exactly_once,
                worker_id=self._s.worker_id,
            )
            failures = 0
            while not self._stop.is_set():
                try:
                    batch = await self._consumer.getmany(
                        timeout_ms=self._s.worker_poll_ms, max_records=self._s.worker_batch_size
                    )
                    failures = 0
                except KafkaError as exc:  # the broker away: wait, then fetch again
                    failures += 1
                    metrics.ERRORS.labels(type(exc).__name__).inc()
                    log.warning("fetch_failed", attempt=failures, error=repr(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), min(10.0, 0.2 * 2**failures))
                    continue
                if batch:
                    async with self._lock:
                        await self._process(batch)
        finally:
            self.ready = False
            await self._close()
            log.info("worker_stopped")

    async def _close(self) -> None:
        if self._consumer is not None:
            _leave_on_stop(self._consumer)
        for closer in (self._consumer, self._producer):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.stop()
        await self._cache.stop()

    async def _until_up(self, start: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Start a dependency, retrying with backoff while it is unreachable."""
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=10),
            stop=lambda _: self._stop.is_set(),
            before_sleep=lambda state: log.warning(
                "dependency_unavailable", dependency=what, error=_error(state)
            ),
            reraise=True,
        ):
            with attempt:
                return await start()
        return None

    async def _start_producer(self) -> AIOKafkaProducer:
        assert self._s.kafka_bootstrap_servers
        # A whole batch is queued before the worker waits for the acks: lingering would only
        # add its 5 ms to every batch (and to the end-to-end latency).
        extra: dict[str, object] = {"linger_ms": 0}
        if self._s.exactly_once:
            # Stable per instance: a restarted worker fences its previous incarnation.
            extra["transactional_id"] = f"{self._s.consumer_group}.{self._s.worker_id}"
        producer = make_producer(self._s.kafka_bootstrap_servers, **extra)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._s.kafka_bootstrap_servers,
            group_id=self._s.consumer_group,
            client_id=f"phoenix-coupons-{self._s.worker_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._s.worker_batch_size,
            session_timeout_ms=self._s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(1000, self._s.kafka_session_timeout_ms // 3),
            # Static membership: a restarted worker (same worker id) takes its partitions back
            # at once, instead of waiting for its killed incarnation's session to expire.
            group_instance_id=self._s.worker_id,
        )
        consumer.subscribe(self.topics, listener=_CommitOnRevoke(self._lock, self._forget))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _process(self, batch: Batch) -> None:
        started = time.perf_counter()
        records: list[Record] = list(chain.from_iterable(batch.values()))
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items()}
        events, sources, dead = _split(records, decode_batch(list(map(_VALUE, records))))
        # Counted once per type and batch: a labelled increment per event cost 3 us each.
        for event_type, count in Counter(map(_EVENT_TYPE, events)).items():
            metrics.EVENTS_CONSUMED.labels(event_type).inc(count)
        try:
            async for attempt in AsyncRetrying(
                wait=wait_exponential(multiplier=0.1, max=10),
                stop=lambda _: self._stop.is_set(),
                retry=retry_if_exception(lambda exc: not isinstance(exc, NOT_RETRIED)),
                before_sleep=self._log_retry,
            ):
                with attempt:
                    deliveries = await self._deliveries(batch, sources)
                    if attempt.retry_state.attempt_number > 1:  # the last try may have stored
                        deliveries.look_everywhere()
                    outcome = await self._issuance.issue(
                        events, deliveries, lambda: self._mark_inflight(offsets)
                    )
                    failed = [
                        (sources[pos], kind, "no free code left in the definition's code space")
                        for pos, kind in outcome.failed.items()
                    ]
                    out = [issued_record(c, self._s.topic_coupons_issued) for c in outcome.announce]
                    now = datetime.now(UTC).isoformat()
                    out += [
                        dead_letter(r, self._s.topic_dlq, k, m, now) for r, k, m in dead + failed
                    ]
                    await self._publish_and_commit(out, offsets)
        except RetryError:
            log.warning("batch_abandoned_on_shutdown", records=len(records))
            return
        except CommitFailedError as exc:  # the group moved on; the new owner redelivers
            log.warning("commit_failed_rebalance", error=repr(exc))
            return
        await self._advance_marks(offsets, saved=bool(outcome.announce))
        self._observe(batch, records, events, outcome, dead + failed, offsets, started)

    def _forget(self, assigned: Sequence[TopicPartition]) -> None:
        for tp in assigned:
            self._marks.pop(tp, None)

    async def _deliveries(self, batch: Batch, sources: list[Record]) -> "_Deliveries":
        """Per event: is its record a replay (below the announced mark), and may an attempt
        that died have stored coupons for it (below the inflight mark)?"""
        unknown = [tp for tp in batch if tp not in self._marks]
        if unknown:
            loaded = await self._announced.load([(tp.topic, tp.partition) for tp in unknown])
            for tp in unknown:
                self._marks[tp] = loaded[(tp.topic, tp.partition)]
        return _Deliveries(sources, dict(self._marks))

    async def _mark_inflight(self, offsets: dict[TopicPartition, int]) -> None:
        await self._announced.mark_inflight(
            {(tp.topic, tp.partition): o for tp, o in offsets.items()}
        )

    async def _advance_marks(self, offsets: dict[TopicPartition, int], saved: bool) -> None:
        """`saved`: the batch announced coupons. A batch that announced none needn't move
        the stored marks (its records, replayed, find nothing to announce): one MongoDB
        write saved per batch of non-matching events."""
        for tp, offset in offsets.items():
            mark, inflight = self._marks.get(tp, (0, 0))
            self._marks[tp] = (max(mark, offset), inflight)
        if not saved:
            return
        try:
            await self._announced.advance(
                {(tp.topic, tp.partition): o for tp, o in offsets.items()}
            )
        except Exception as exc:  # only a later replay could announce these again
            log.warning("announced_offsets_not_saved", error=repr(exc))

    async def _publish_and_commit(
        self, out: list[OutboundRecord], offsets: dict[TopicPartition, int]
    ) -> None:
        if self._renew_producer:
            await self._replace_producer()
        assert self._producer is not None and self._consumer is not None
        producer = self._producer
        if self._s.exactly_once:
            async with producer.transaction():
                await asyncio.gather(*[await send(producer, r) for r in out])
                await producer.send_offsets_to_transaction(offsets, self._s.consumer_group)
            return
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

    async def _log_retry(self, state: RetryCallState) -> None:
        error = _exception(state)
        metrics.ERRORS.labels(type(error).__name__).inc()
        if isinstance(error, PRODUCER_LOST):
            self._renew_producer = True
        log.warning("batch_retry", attempt=state.attempt_number, error=repr(error))

    def _observe(
        self,
        batch: Batch,
        records: list[Record],
        events: Sequence[Event],
        outcome: Any,
        dead: list[tuple[Record, str, str]],
        offsets: dict[TopicPartition, int],
        started: float,
    ) -> None:
        metrics.BATCH_SIZE.observe(len(records))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.COUPONS_ISSUED.inc(outcome.issued)
        metrics.COUPONS_ANNOUNCED.inc(len(outcome.announce))
        matched = Counter(events[pos].event_type for pos in outcome.matched)
        for event_type, count in matched.items():
            metrics.EVENTS_MATCHED.labels(event_type).inc(count)
        for record, kind, message in dead:
            metrics.DEAD_LETTERS.labels(kind).inc()
            log.warning(
                "dead_lettered",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reason=kind,
                error=message,
            )
        assert self._consumer is not None
        for tp in batch:
            high = self._consumer.highwater(tp)
            if high is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(0, high - offsets[tp])
                )
        log.info(
            "batch_processed",
            records=len(records),
            matched=len(outcome.matched),
            issued=outcome.issued,
            announced=len(outcome.announce),
            dead=len(dead),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )


def _split(
    records: list[Record], decoded: Sequence[Event | PoisonRecord]
) -> tuple[Sequence[Event], list[Record], list[tuple[Record, str, str]]]:
    """The events and the records they came from, and the records to dead-letter."""
    if PoisonRecord not in map(type, decoded):
        return cast("Sequence[Event]", decoded), records, []
    events: list[Event] = []
    sources: list[Record] = []
    dead: list[tuple[Record, str, str]] = []
    for record, one in zip(records, decoded, strict=True):
        if isinstance(one, PoisonRecord):
            dead.append((record, one.kind, one.message))
        else:
            events.append(one)
            sources.append(record)
    return events, sources, dead


class _Deliveries:
    """A batch's deliveries, made on demand from the records and the partitions' marks."""

    def __init__(self, sources: list[Record], marks: dict[TopicPartition, tuple[int, int]]) -> None:
        self._sources = sources
        self._marks = marks
        self._everywhere = False

    def look_everywhere(self) -> None:
        """A retry: the failed attempt may have stored coupons for any of the records."""
        self._everywhere = True

    def _flags(self, r: Record) -> tuple[bool, bool]:
        announced_up_to, inflight = self._marks[TopicPartition(r.topic, r.partition)]
        announced = r.offset < announced_up_to
        return announced, not announced and (self._everywhere or r.offset < inflight)

    def __getitem__(self, pos: int) -> Delivery:
        r = self._sources[pos]
        announced, lookup = self._flags(r)
        return Delivery(f"{r.topic}:{r.partition}:{r.offset}", announced, lookup)

    def lookups(self) -> list[int]:
        if not self._everywhere and all(inf <= ann for ann, inf in self._marks.values()):
            return []  # the usual case: nothing stored past what was announced
        return [i for i, r in enumerate(self._sources) if self._flags(r)[1]]


def _leave_on_stop(consumer: AIOKafkaConsumer) -> None:
    """aiokafka sends no LeaveGroup for a static member, so the partitions of a worker that
    stops would wait for its session to expire before moving. A stopping worker leaves: they
    move at once (the next owner starts at the offsets committed on revocation)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and hasattr(coordinator, "_group_instance_id"):
        coordinator._group_instance_id = None


def _exception(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def _error(state: RetryCallState) -> str:
    return repr(_exception(state))
