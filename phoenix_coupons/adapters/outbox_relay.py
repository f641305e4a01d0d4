"""Publishes issued coupons that are not yet announced: the coupon row is its own outbox
entry (`publish_pending`). Written in the same single-document insert as the coupon, so no
coupon exists without its event eventually reaching Kafka, through Kafka outages and crashes.

Several relays (API replicas, workers) may run: each claims a batch with a lease first, so
they rarely publish the same coupon twice; when they do (a crash after the send, before the
mark), consumers drop the repeat by `event_id`.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaProducer
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo, from_doc
from phoenix_coupons.adapters.kafka import issued_record, send
from phoenix_coupons.adapters.mongo import Mongo, epoch_ms
from phoenix_coupons.domain.clock import Clock

log = structlog.get_logger(__name__)

ProducerFactory = Callable[[], AIOKafkaProducer]


class OutboxRelay:
    def __init__(
        self,
        mongo: Mongo,
        producer_factory: ProducerFactory,
        topic: str,
        clock: Clock,
        batch_size: int = 1000,
        poll_seconds: float = 1.0,
        lease_seconds: float = 30.0,
    ) -> None:
        self._col = mongo.coupons
        self._coupons = MongoCouponRepo(mongo)
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._topic = topic
        self._clock = clock
        self._batch = batch_size
        self._poll = poll_seconds
        self._lease_ms = int(lease_seconds * 1000)
        self._owner = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published_total = 0

    def wake(self) -> None:
        """Publish now instead of at the next poll (called after coupons are stored)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._producer:
            await self._producer.stop()
            self._producer = None

    async def _run(self) -> None:
        while True:
            # Retried forever with backoff: Kafka or MongoDB may be down for a while.
            async for attempt in AsyncRetrying(
                wait=wait_exponential(multiplier=0.2, max=15),
                retry=retry_if_exception_type(Exception),
                before_sleep=self._log_retry,
            ):
                with attempt:
                    published = await self.publish_pending()
            if published >= self._batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def _log_retry(self, state: object) -> None:
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        log.warning("outbox_relay_retry", error=repr(error))
        await self._reset_producer()
        # Give back our claims so the retry (ours or another relay's) needn't wait the lease.
        with contextlib.suppress(Exception):
            await self._col.update_many(
                {"publish_owner": self._owner, "publish_pending": True},
                {"$set": {"publish_lease": None}},
            )

    async def _reset_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._producer_factory()
            await producer.start()
            self._producer = producer
        return self._producer

    async def publish_pending(self) -> int:
        """Claim, send and mark one batch; returns how many coupons were announced."""
        now = epoch_ms(self._clock())
        free = {"$or": [{"publish_lease": None}, {"publish_lease": {"$lt": now}}]}
        cursor = self._col.find({"publish_pending": True, **free}, {"_id": 1})
        ids = [d["_id"] async for d in cursor.sort("issued_at", 1).limit(self._batch)]
        if not ids:
            return 0
        lease = now + self._lease_ms
        await self._col.update_many(
            {"_id": {"$in": ids}, "publish_pending": True, **free},
            {"$set": {"publish_lease": lease, "publish_owner": self._owner}},
        )
        claimed = [
            d
            async for d in self._col.find(
                {"_id": {"$in": ids}, "publish_owner": self._owner, "publish_pending": True}
            )
        ]
        if not claimed:
            return 0
        producer = await self._ensure_producer()
        sends = [await send(producer, issued_record(from_doc(d), self._topic)) for d in claimed]
        await asyncio.gather(*sends)
        await self._coupons.mark_announced([d["_id"] for d in claimed])
        self.published_total += len(claimed)
        log.info("coupons_announced", count=len(claimed), topic=self._topic)
        return len(claimed)
