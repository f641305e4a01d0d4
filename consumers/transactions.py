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
from collections.abc import Callable, Iterable

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

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


async def _stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()
