"""The consume loop: a batch from `getmany`, coupons issued with bulk writes, records
produced without waiting on each, offsets committed only after Kafka acknowledged them.

At least once (default): a crash before the commit redelivers the batch; coupons are not
issued twice (unique issue key) and those already stored are announced again.
Exactly once (`PHOENIX_EXACTLY_ONCE=true`): each input partition has its own transactional
producer (consumers/transactions.py); a batch's records and offsets of one partition go in
that partition's transaction, so `read_committed` consumers see each announcement once.
"""

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import Any, TypeAlias, cast

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    OutOfOrderSequenceNumber,
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
from consumers.decode import decode_batch
from consumers.membership import (
    Membership,
    WorkerFenced,
    group_members,
    is_fenced_instance,
    joined,
    leave_on_stop,
    membership_lost,
)
from consumers.poison import PoisonRecord
from consumers.readiness import Readiness
from consumers.transactions import PartitionProducers, PartitionTransactions
from phoenix_coupons.adapters.announced_offsets import AnnouncedOffsets
from phoenix_coupons.adapters.definition_cache import DefinitionCache
from phoenix_coupons.adapters.kafka import (
    OutboundRecord,
    TopicsUnavailable,
    dead_letter,
    ensure_topics,
    issued_record,
    make_producer,
    send,
)
from phoenix_coupons.domain.matching import Event
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.issuance import BatchOutcome, Delivery, IssuanceService
from phoenix_coupons.settings import ServiceSettings

log = structlog.get_logger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Batch: TypeAlias = dict[TopicPartition, list[Record]]
Dead: TypeAlias = list[tuple[Record, str, str]]
# Not retried: the group moved on, the partitions' new owner redelivers the batch. Retrying
# would hold the lock the revocation waits for, and fail for ever. (A fenced partition
# producer is handled per partition: consumers/transactions.py.)
NOT_RETRIED = (CommitFailedError,)
# The producer's sender stops for good on these (a broker that lost the idempotent producer's
# state, e.g. restarted): the retry starts a new producer.
PRODUCER_LOST = (OutOfOrderSequenceNumber, UnknownProducerId)
# In C: no Python-level step per record.
_EVENT_TYPE = attrgetter("event_type")
_VALUE = attrgetter("value")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka awaits these in its group coordination, before it rejoins (revoked) and
    after the new assignment is set (assigned)."""

    def __init__(self, worker: "Worker", consumer: AIOKafkaConsumer) -> None:
        self._worker = worker
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._worker._on_revoked(self._consumer, revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._worker._on_assigned(self._consumer, assigned)


class Worker:
    def __init__(
        self,
        settings: ServiceSettings,
        issuance: IssuanceService,
        cache: DefinitionCache,
        announced: AnnouncedOffsets,
        ping: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`ping`: MongoDB's, for the readiness (none: not part of it)."""
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
        self._membership = Membership.of(settings)
        self._fenced: WorkerFenced | None = None
        self._was_member = False  # joined once: a member id forgotten later is a loss
        self._eos = settings.exactly_once
        assert settings.kafka_bootstrap_servers
        self._producers = PartitionProducers(
            settings.kafka_bootstrap_servers, settings.consumer_group
        )
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
        if self._fenced is not None:
            raise self._fenced

    async def _ensure_topics(self) -> None:
        try:
            await ensure_topics(self._s)
        except TopicsUnavailable as exc:
            log.error("kafka_topics_unavailable", error=str(exc))
            raise

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
                if self._readiness.failing and self._readiness.failing.startswith("fetch"):
                    self._readiness.failing = None
            except KafkaError as exc:  # the broker away: wait, then fetch again
                if is_fenced_instance(exc):
                    self._fence(self._membership.fenced_message(None), exc)
                    break
                failures += 1
                metrics.ERRORS.labels(type(exc).__name__).inc()
                self._readiness.failing = f"fetch: {exc!r}"
                log.warning("fetch_failed", attempt=failures, error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), min(10.0, 0.2 * 2**failures))
                continue
            if batch and self._fenced is None:  # fenced: it stops, leaving the records
                async with self._lock:
                    await self._process(batch)

    async def _close(self) -> None:
        if self._consumer is not None and self._membership.static:
            leave_on_stop(self._consumer)
        for closer in (self._consumer, self._producer):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.stop()
        await self._producers.close()
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
        """At least once: one idempotent producer."""
        assert self._s.kafka_bootstrap_servers
        # A whole batch is queued before the worker waits for the acks: lingering would only
        # add its 5 ms to every batch (and to the end-to-end latency).
        producer = make_producer(self._s.kafka_bootstrap_servers, linger_ms=0)
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
            client_id=self._membership.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._s.worker_batch_size,
            session_timeout_ms=self._s.kafka_session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_ms,
            # Static membership (an explicit PHOENIX_WORKER_ID): a restarted worker takes its
            # partitions back at once, instead of waiting for its killed incarnation's session
            # to expire. Without one, dynamic: processes on one host never share an id.
            group_instance_id=self._membership.instance_id,
        )
        if self._eos:
            # A fenced partition that no revocation took within two heartbeats is still ours.
            self._txns = PartitionTransactions(
                self._producers, consumer, 2 * self._heartbeat_ms / 1000
            )
        consumer.subscribe(self.topics, listener=_Listener(self, consumer))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    @property
    def _heartbeat_ms(self) -> int:
        return max(1000, self._s.kafka_session_timeout_ms // 3)

    # ------------------------------------------------------------------ group membership

    async def _on_revoked(
        self, consumer: AIOKafkaConsumer, revoked: Sequence[TopicPartition]
    ) -> None:
        """Waits for the batch in hand to finish and commit: the next owner of a partition
        starts exactly where this worker stopped."""
        async with self._lock:
            log.info("partitions_revoked", partitions=_names(revoked))
            for tp in revoked:  # the new owner reports its lag; a stale value here would alert
                with contextlib.suppress(KeyError):
                    metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
            if self._txns is not None:
                await self._txns.revoked(revoked)
            lost = self._was_member and membership_lost(consumer)
            if self._membership.static and self._fenced is None and lost:
                holder = await self._holder_elsewhere()
                if holder is not None:
                    self._fence(self._membership.fenced_message(holder))
                    # aiokafka rejoins next: as a dynamic member, which takes nothing from
                    # the process holding the id; the worker then stops and leaves.
                    leave_on_stop(consumer)

    def _on_assigned(self, consumer: AIOKafkaConsumer, assigned: Sequence[TopicPartition]) -> None:
        if self._fenced is not None:
            return
        self._was_member = True
        if self._txns is not None:
            self._txns.assigned(assigned)  # pauses them first
        for tp in assigned:
            self._marks.pop(tp, None)
        log.info("partitions_assigned", partitions=_names(assigned))

    async def _holder_elsewhere(self) -> str | None:
        """Another process of this worker id among the group's members, asked when the
        membership was lost (it is nobody's while this worker rejoins, unless taken)."""
        assert self._s.kafka_bootstrap_servers
        try:
            members = await group_members(self._s.kafka_bootstrap_servers, self._s.consumer_group)
        except Exception as exc:  # can't tell: rejoin, as before
            log.warning("group_members_unknown", error=repr(exc))
            return None
        return self._membership.held_elsewhere(members)

    def _fence(self, message: str, cause: BaseException | None = None) -> None:
        if self._fenced is None:
            self._fenced = WorkerFenced(message)
            self._readiness.fenced = True
            log.error(
                "worker_fenced",
                error=message,
                cause=repr(cause) if cause else None,
                worker_id=self._s.worker_id,
                client_id=self._membership.client_id,
            )
        self._stop.set()

    # ------------------------------------------------------------------ exactly once

    async def _take_partitions(self, txns: PartitionTransactions) -> None:
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)
                return
        if self._readiness.failing and self._readiness.failing.startswith("initialising"):
            self._readiness.failing = None

    # ------------------------------------------------------------------ batches

    async def _process(self, batch: Batch) -> None:
        started = time.perf_counter()
        records: list[Record] = list(chain.from_iterable(batch.values()))
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items()}
        decoded = decode_batch(list(map(_VALUE, records)))
        events, sources, dead = _split(records, decoded)
        # Counted once per type and batch: a labelled increment per event cost 3 us each.
        for event_type, count in Counter(map(_EVENT_TYPE, events)).items():
            metrics.EVENTS_CONSUMED.labels(event_type).inc(count)
        todo = dict(batch)  # exactly once: partitions whose transaction is not committed
        committed: set[TopicPartition] = set()
        outcome = BatchOutcome()
        failed: Dead = []
        try:
            async for attempt in AsyncRetrying(
                wait=wait_exponential(multiplier=0.1, max=10),
                stop=lambda _: self._stop.is_set(),
                retry=retry_if_exception(_retried),
                before_sleep=self._log_retry,
            ):
                with attempt:
                    if self._txns is not None:
                        committed |= await self._txns.repair(todo, offsets)
                        if len(todo) < len(batch):
                            events, sources, dead = _narrow(records, decoded, todo)
                    part = {tp: offsets[tp] for tp in todo}
                    deliveries = await self._deliveries(todo, sources)
                    if attempt.retry_state.attempt_number > 1:  # the last try may have stored
                        deliveries.look_everywhere()
                    outcome = await self._issuance.issue(
                        events, deliveries, partial(self._mark_inflight, part)
                    )
                    failed = [
                        (sources[pos], kind, "no free code left in the definition's code space")
                        for pos, kind in outcome.failed.items()
                    ]
                    if self._txns is not None:
                        out = self._by_partition(outcome.announce, dead + failed)
                        done, fenced, failure = await self._txns.commit(out, part)
                        metrics.ERRORS.labels("ProducerFenced").inc(len(fenced))
                        committed |= done
                        for tp in done | fenced:
                            del todo[tp]
                        if failure is not None:
                            raise failure
                    else:
                        topic = self._s.topic_coupons_issued
                        now = datetime.now(UTC).isoformat()
                        await self._publish_and_commit(
                            [issued_record(c, topic) for c in outcome.announce]
                            + [
                                dead_letter(r, self._s.topic_dlq, k, m, now)
                                for r, k, m in dead + failed
                            ],
                            offsets,
                        )
                        committed = set(offsets)
            self._readiness.failing = None
        except RetryError:
            log.warning("batch_abandoned_on_shutdown", records=len(records))
            return
        except CommitFailedError as exc:  # the group moved on; the new owner redelivers
            self._readiness.failing = None  # a rebalance, not a dependency failing
            log.warning("commit_failed_rebalance", error=repr(exc))
            return
        except KafkaError as exc:
            if not is_fenced_instance(exc):
                raise
            self._fence(self._membership.fenced_message(None), exc)
            return
        if committed:
            await self._advance_marks(
                {tp: offsets[tp] for tp in committed}, saved=bool(outcome.announce)
            )
        self._observe(batch, records, events, outcome, dead + failed, offsets, started)

    def _by_partition(
        self, coupons: list[Coupon], dead: Dead
    ) -> dict[TopicPartition, list[OutboundRecord]]:
        """Exactly once: the records to produce, by the input partition they come from."""
        out: dict[TopicPartition, list[OutboundRecord]] = defaultdict(list)
        topic = self._s.topic_coupons_issued
        for coupon in coupons:
            assert coupon.trigger_record is not None
            source, partition, _offset = coupon.trigger_record.rsplit(":", 2)
            out[TopicPartition(source, int(partition))].append(issued_record(coupon, topic))
        now = datetime.now(UTC).isoformat()
        for record, kind, message in dead:
            out[TopicPartition(record.topic, record.partition)].append(
                dead_letter(record, self._s.topic_dlq, kind, message, now)
            )
        return out

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

    async def _log_retry(self, state: RetryCallState) -> None:
        error = _exception(state)
        metrics.ERRORS.labels(type(error).__name__).inc()
        if isinstance(error, PRODUCER_LOST):
            self._renew_producer = True
        self._readiness.failing = f"batch: {error!r}"
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
            dead.append((record, one.code, one.message))
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


def _narrow(
    records: list[Record], decoded: Sequence[Event | PoisonRecord], todo: Batch
) -> tuple[Sequence[Event], list[Record], list[tuple[Record, str, str]]]:
    """`_split` of the records of the partitions in `todo` only."""
    kept = [(r, d) for r, d in zip(records, decoded, strict=True) if (r.topic, r.partition) in todo]
    return _split([r for r, _ in kept], [d for _, d in kept])


def _retried(exc: BaseException) -> bool:
    return not isinstance(exc, NOT_RETRIED) and not is_fenced_instance(exc)


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return [f"{p.topic}:{p.partition}" for p in partitions]


def _exception(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def _error(state: RetryCallState) -> str:
    return repr(_exception(state))
