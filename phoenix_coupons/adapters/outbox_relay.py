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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from phoenix_coupons.adapters.coupon_repo import from_doc
from phoenix_coupons.adapters.kafka import OutboundRecord, issued_record, send
from phoenix_coupons.adapters.mongo import Doc, Mongo, epoch_ms
from phoenix_coupons.domain.clock import Clock

log = structlog.get_logger(__name__)

ProducerFactory = Callable[[], AIOKafkaProducer]


@dataclass(frozen=True)
class OutboxSource:
    """Rows of `collection` whose `<prefix>_pending` is true are announced with `render`;
    `<prefix>_lease` / `<prefix>_owner` hold the claim of the relay sending them."""

    name: str
    collection: str
    prefix: str
    order_by: str
    render: Callable[[Doc], OutboundRecord]
    # Extra conditions a row must meet before it is announced (e.g. an earlier event first).
    requires: Doc | None = None

    @property
    def fields(self) -> tuple[str, str, str]:
        return f"{self.prefix}_pending", f"{self.prefix}_lease", f"{self.prefix}_owner"


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
        extra_sources: Sequence["OutboxSource"] = (),
    ) -> None:
        self._db = mongo.db
        self._sources = [
            OutboxSource(
                "coupon.issued",
                "coupons",
                "publish",
                "issued_at",
                lambda d: issued_record(from_doc(d), topic),
            ),
            *(extra_sources or ()),
        ]
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
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
        for source in self._sources:
            pending, lease_f, owner_f = source.fields
            with contextlib.suppress(Exception):
                await self._db[source.collection].update_many(
                    {owner_f: self._owner, pending: True}, {"$set": {lease_f: None}}
                )

    async def _reset_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._producer_factory()
            try:
                await producer.start()
            except BaseException:
                # A producer that failed to start still holds a client: close it, or every
                # retry during a Kafka outage leaks one.
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def publish_pending(self) -> int:
        """Claim, send and mark one batch of each source; returns how many were announced.
        Sources are drained in order, so a redemption is announced before its rollback."""
        total = 0
        for source in self._sources:
            total += await self._publish_source(source)
        return total

    async def _publish_source(self, source: OutboxSource) -> int:
        col = self._db[source.collection]
        pending, lease_f, owner_f = source.fields
        now = epoch_ms(self._clock())
        # `$eq: None` rather than a bare None: the embedded test server's `$or` matches a bare
        # None only against missing fields, not explicit nulls (same meaning on MongoDB).
        free = {"$or": [{lease_f: {"$eq": None}}, {lease_f: {"$lt": now}}]}
        cursor = col.find({pending: True, **(source.requires or {}), **free}, {"_id": 1})
        ids = [d["_id"] async for d in cursor.sort(source.order_by, 1).limit(self._batch)]
        if not ids:
            return 0
        lease = now + self._lease_ms
        # One update per kind of free lease, not one `$or`: the embedded test server's
        # update_many applies an `$or` branch without the other conditions (claiming rows
        # outside `ids`, which then wait a whole lease). Same effect on MongoDB.
        for free_lease in ({"$eq": None}, {"$lt": now}):
            await col.update_many(
                {"_id": {"$in": ids}, pending: True, lease_f: free_lease},
                {"$set": {lease_f: lease, owner_f: self._owner}},
            )
        claimed = [
            d async for d in col.find({"_id": {"$in": ids}, owner_f: self._owner, pending: True})
        ]
        if not claimed:
            return 0
        producer = await self._ensure_producer()
        claimed.sort(key=lambda d: d[source.order_by])
        await asyncio.gather(*[await send(producer, source.render(d)) for d in claimed])
        await col.update_many(
            {"_id": {"$in": [d["_id"] for d in claimed]}},
            {"$set": {pending: False, lease_f: None}},
        )
        self.published_total += len(claimed)
        log.info("outbox_announced", count=len(claimed), source=source.name)
        return len(claimed)
