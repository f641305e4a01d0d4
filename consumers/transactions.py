"""Exactly-once output without KIP-447 (aiokafka commits offsets in a transaction without
the group generation): one transactional producer per assigned input partition, with the
transactional id `{group}.{topic}.{partition}`.

Starting a producer initialises its transactional id (InitProducerId): the coordinator bumps
the id's epoch, which fences any earlier producer of that id (a former owner of the
partition, stalled past its session), and completes or aborts the transaction it left open,
offsets included. So a partition is initialised when it is assigned and before its committed
offset is read; the records and offset of each of its batches then go in its own transaction,
which a stalled former owner can no longer commit."""

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import ProducerFenced
from aiokafka.structs import TopicPartition

from consumers.membership import joined
from phoenix_coupons.adapters.kafka import OutboundRecord, make_producer, send

log = structlog.get_logger(__name__)


def transactional_id(group: str, tp: TopicPartition) -> str:
    return f"{group}.{tp.topic}.{tp.partition}"


class PartitionProducers:
    """The transactional producers of the assigned partitions, by partition."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        factory: Callable[..., AIOKafkaProducer] = make_producer,
    ) -> None:
        self._bootstrap = bootstrap
        self._group = group
        self._factory = factory
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}

    def transactional_ids(self) -> dict[TopicPartition, str]:
        """Of the partitions whose producer is initialised."""
        return {tp: transactional_id(self._group, tp) for tp in self._producers}

    def ready(self, tp: TopicPartition) -> bool:
        return tp in self._producers

    async def start(self, partitions: Iterable[TopicPartition]) -> None:
        """Start (initialise) a producer per partition, a partition's earlier one closed
        first; all or none: a failure closes those started and raises."""
        tps = list(partitions)
        await self.close(tps)
        started = await asyncio.gather(*map(self._start_one, tps), return_exceptions=True)
        failed = next((s for s in started if isinstance(s, BaseException)), None)
        if failed is not None:
            await asyncio.gather(*[_stop(s) for s in started if isinstance(s, AIOKafkaProducer)])
            raise failed
        for tp, producer in zip(tps, started, strict=True):
            assert isinstance(producer, AIOKafkaProducer)
            self._producers[tp] = producer
        log.info(
            "transactional_producers_initialised",
            transactional_ids=[transactional_id(self._group, tp) for tp in tps],
        )

    async def _start_one(self, tp: TopicPartition) -> AIOKafkaProducer:
        producer = self._factory(
            self._bootstrap, linger_ms=0, transactional_id=transactional_id(self._group, tp)
        )
        try:
            await producer.start()  # InitProducerId: fences the former owner
        except BaseException:
            await _stop(producer)
            raise
        return producer

    async def close(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        tps = list(self._producers) if partitions is None else list(partitions)
        gone = [self._producers.pop(tp) for tp in tps if tp in self._producers]
        await asyncio.gather(*map(_stop, gone))

    async def commit(self, tp: TopicPartition, records: list[OutboundRecord], offset: int) -> None:
        """A partition's records and its next offset in one transaction."""
        producer = self._producers[tp]
        async with producer.transaction():
            await asyncio.gather(*[await send(producer, r) for r in records])
            await producer.send_offsets_to_transaction({tp: offset}, self._group)


class PartitionTransactions:
    """Where each assigned partition stands: `pending` (assigned, its producer not
    initialised yet: paused until it is), ready (its producer initialised), fenced (its
    producer was fenced: paused, its work dropped), or broken (a transaction failed: the
    producer is replaced before the retry). The worker calls these under its batch lock."""

    def __init__(
        self, producers: PartitionProducers, consumer: AIOKafkaConsumer, retake_after_s: float
    ) -> None:
        """`retake_after_s`: a fenced partition still assigned that long is taken again."""
        self.producers = producers
        self._consumer = consumer
        self._retake_after_s = retake_after_s
        self._pending: set[TopicPartition] = set()
        self._fenced_at: dict[TopicPartition, float] = {}
        self._broken: set[TopicPartition] = set()

    def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Called by the assignment listener before it awaits anything. aiokafka 0.14 starts
        the task that fetches the committed offsets just before it calls the listener
        (`GroupCoordinator._on_join_complete`), and its fetcher resumes from them, so the
        listener cannot run first: instead no record is fetched until the partition's
        producer fenced its former owner (whose transaction may still commit offsets).
        `take` initialises the producers, then reads the offsets again and resumes."""
        tps = list(tps)
        if tps:
            self._consumer.pause(*tps)
            self._pending.update(tps)

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        await self.producers.close(tps)
        for tp in tps:
            self._fenced_at.pop(tp, None)
            self._broken.discard(tp)
        self._pending.difference_update(tps)

    def wanted(self) -> bool:
        """Partitions to take: newly assigned ones, and fenced ones that no revocation took
        away while the group coordinator answered this worker's heartbeats (the fence came
        from an earlier owner's late initialisation: still this worker's). A wrong guess
        costs a fenced batch on either side, never a duplicate: each initialisation reads
        the committed offset after fencing."""
        stale = time.monotonic() - self._retake_after_s
        retake = joined(self._consumer)
        for tp in [tp for tp, at in self._fenced_at.items() if retake and at < stale]:
            del self._fenced_at[tp]
            self._pending.add(tp)
            log.warning("partition_taken_again", partition=f"{tp.topic}:{tp.partition}")
        return bool(self._pending)

    async def take(self) -> None:
        """Initialise the pending partitions' producers, then read their committed offsets
        (the former owner's transaction is complete by then) and resume them. A failure
        leaves them pending (and paused), to be tried again."""
        consumer = self._consumer
        tps = sorted(self._pending & consumer.assignment())
        self._pending.intersection_update(tps)
        if not tps:
            return
        try:
            await self.producers.start(tps)
            offsets = await consumer.seek_to_committed(*tps)
            # None committed: from the start (auto_offset_reset), wherever it stood.
            unset = [tp for tp, offset in offsets.items() if offset is None]
            if unset:
                await consumer.seek_to_beginning(*unset)
        except BaseException:
            await self.producers.close(tps)
            raise
        consumer.resume(*tps)
        self._pending.difference_update(tps)

    async def repair(
        self, todo: dict[TopicPartition, object], offsets: Mapping[TopicPartition, int]
    ) -> set[TopicPartition]:
        """Before an attempt at a batch: replace the producers a failed transaction left (the
        new one completes or aborts that transaction) and return those of their partitions
        that did commit after all. Drops from `todo` those, and the partitions without a
        producer (fenced, or revoked)."""
        broken = sorted(self._broken & set(todo))
        committed: set[TopicPartition] = set()
        if broken:
            await self.producers.start(broken)
            self._broken.difference_update(broken)
            for tp in broken:
                offset = await self._consumer.committed(tp)
                if offset is not None and offset >= offsets[tp]:
                    committed.add(tp)
        for tp in list(todo):
            if tp in committed or not self.producers.ready(tp):
                del todo[tp]
        return committed

    async def commit(
        self,
        out: Mapping[TopicPartition, list[OutboundRecord]],
        offsets: Mapping[TopicPartition, int],
    ) -> tuple[set[TopicPartition], set[TopicPartition], BaseException | None]:
        """One transaction per partition, all at once. Returns the partitions committed,
        those fenced (moved to another worker: their work is dropped, not committed; the new
        owner redelivers it), and the first other failure (its partitions' producers are
        replaced before the retry)."""
        tps = list(offsets)
        results = await asyncio.gather(
            *[self.producers.commit(tp, out.get(tp, []), offsets[tp]) for tp in tps],
            return_exceptions=True,
        )
        done: set[TopicPartition] = set()
        fenced: set[TopicPartition] = set()
        failure: BaseException | None = None
        for tp, result in zip(tps, results, strict=True):
            if result is None:
                done.add(tp)
            elif isinstance(result, ProducerFenced):
                fenced.add(tp)
            else:
                self._broken.add(tp)
                failure = failure or result
        if fenced:
            await self._drop(fenced)
        return done, fenced, failure

    async def _drop(self, tps: set[TopicPartition]) -> None:
        await self.producers.close(tps)
        self._consumer.pause(*tps)
        now = time.monotonic()
        for tp in tps:
            self._fenced_at[tp] = now
        log.warning(
            "partitions_fenced",
            partitions=[f"{tp.topic}:{tp.partition}" for tp in sorted(tps)],
            hint="another worker initialised these partitions' producers: they moved; "
            "their batch is not committed and their new owner processes it",
        )


async def _stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()
