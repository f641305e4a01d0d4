"""What the worker does when the group's assignment changes. aiokafka awaits these in its
group coordination: `on_partitions_revoked` before it rejoins, `on_partitions_assigned`
after the new assignment is set."""

import asyncio
from collections.abc import Iterable, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from consumers import batch_metrics
from consumers.membership import Fencing
from consumers.transactions import PartitionTransactions
from phoenix_coupons.domain.delivery import Partition
from phoenix_coupons.services.redelivery import Redelivery

log = structlog.get_logger(__name__)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        batch_lock: asyncio.Lock,
        fencing: Fencing,
        redelivery: Redelivery,
        transactions: PartitionTransactions | None,
    ) -> None:
        """`batch_lock`: held while a batch is processed; `transactions`: exactly once, the
        partitions' transactions."""
        self._consumer = consumer
        self._lock = batch_lock
        self._fencing = fencing
        self._redelivery = redelivery
        self._txns = transactions

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Waits for the batch in hand to finish and commit: the next owner of a partition
        starts exactly where this worker stopped."""
        async with self._lock:
            log.info("partitions_revoked", partitions=names(revoked))
            batch_metrics.forget_lag(list(revoked))
            if self._txns is not None:
                await self._txns.revoked(revoked)
            await self._fencing.check_lost(self._consumer)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        if self._fencing.fenced is not None:
            return
        self._fencing.was_member = True
        if self._txns is not None:
            self._txns.assigned(assigned)  # pauses them first
        self._redelivery.forget(Partition(tp.topic, tp.partition) for tp in assigned)
        log.info("partitions_assigned", partitions=names(assigned))


def names(partitions: Iterable[TopicPartition]) -> list[str]:
    return [f"{p.topic}:{p.partition}" for p in partitions]
