"""Publishes issued coupons that are not yet announced: the coupon row is its own outbox
entry (`publish_pending`). Written in the same single-document insert as the coupon, so no
coupon exists without its event eventually reaching Kafka, through Kafka outages and crashes.

Several relays (API replicas, workers) may run: each claims a batch with a lease first, so
they rarely publish the same coupon twice; when they do (a crash after the send, before the
mark), consumers drop the repeat by `event_id`.

Each record gets its own verdict: sent rows are marked announced, rows whose record can never
be sent (outbox_failures.py) are set aside as dead with their reason (`<prefix>_dead` on the
row, one document in `outbox_dead`) and never retried, and rows that failed for a passing
reason stay pending for the retry. So one bad record never holds up the others.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownTopicOrPartitionError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from phoenix_coupons.adapters import outbox_metrics
from phoenix_coupons.adapters.background import cancel_and_wait
from phoenix_coupons.adapters.coupon_repo import from_doc
from phoenix_coupons.adapters.kafka import OutboundRecord, issued_record, send
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import OUTBOX_DEAD
from phoenix_coupons.adapters.nx27017_compat import (
    aware,
    epoch_ms,
    free_lease,
    replace_by_id,
    update_many_or,
)
from phoenix_coupons.adapters.outbox_failures import Unsendable, dead_reason
from phoenix_coupons.adapters.outbox_metrics import OutboxMetrics
from phoenix_coupons.domain.clock import Clock

log = structlog.get_logger(__name__)

ProducerFactory = Callable[[], AIOKafkaProducer]
DEAD_COLLECTION = OUTBOX_DEAD.name
ERROR_CHARS = 500


def outbox_entry(prefix: str, pending: bool = True) -> Doc:
    """The fields that make a row an entry of the outbox `prefix` (the only place that sets
    them outside the relay): pending or not, and claimed by no relay."""
    pending_f, lease_f, owner_f = _outbox_fields(prefix)
    return {pending_f: pending, lease_f: None, owner_f: None}


def _outbox_fields(prefix: str) -> tuple[str, str, str]:
    return f"{prefix}_pending", f"{prefix}_lease", f"{prefix}_owner"


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
    # The field whose age `phoenix_outbox_oldest_pending_seconds` reports (default order_by).
    since: str | None = None

    @property
    def fields(self) -> tuple[str, str, str]:
        return _outbox_fields(self.prefix)

    @property
    def dead_field(self) -> str:
        return f"{self.prefix}_dead"


@dataclass
class Delivery:
    """What became of a claimed batch: sent, dead, or left pending for the retry."""

    sent: list[Doc] = field(default_factory=list)
    dead: list[tuple[Doc, BaseException]] = field(default_factory=list)
    transient: BaseException | None = None  # the first passing failure: its rows stay pending

    def failed(self, doc: Doc, exc: BaseException) -> None:
        if dead_reason(exc) is not None:
            self.dead.append((doc, exc))
        elif self.transient is None:
            self.transient = exc


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
        metrics: OutboxMetrics = outbox_metrics.DEFAULT,
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
        self._metrics = metrics
        self._missing_topics: set[str] = set()  # confirmed missing during this sweep
        self.published_total = 0

    def wake(self) -> None:
        """Publish now instead of at the next poll (called after coupons are stored)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            await cancel_and_wait(self._task)
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
        Sources are drained in order, so a redemption is announced before its rollback.
        Raises the first passing failure after every source had its turn (its rows stay
        pending): the caller backs off and gives the leases back."""
        total, transient = 0, None
        self._missing_topics.clear()
        for source in self._sources:
            sent, failure = await self._publish_source(source)
            total += sent
            transient = transient or failure
        if transient is not None:
            raise transient
        return total

    async def _publish_source(self, source: OutboxSource) -> tuple[int, BaseException | None]:
        col = self._db[source.collection]
        pending, lease_f, owner_f = source.fields
        at = self._clock()
        now = epoch_ms(at)
        free = free_lease(lease_f, now)
        since = source.since or source.order_by
        cursor = col.find({pending: True, **(source.requires or {}), **free}, {since: 1})
        seen = [d async for d in cursor.sort(source.order_by, 1).limit(self._batch)]
        self._observe(source, seen, at)
        ids = [d["_id"] for d in seen]
        if not ids:
            return 0, None
        lease = now + self._lease_ms
        await update_many_or(
            col,
            {"_id": {"$in": ids}, pending: True, **free},
            {"$set": {lease_f: lease, owner_f: self._owner}},
        )
        claimed = [
            d async for d in col.find({"_id": {"$in": ids}, owner_f: self._owner, pending: True})
        ]
        if not claimed:
            return 0, None
        claimed.sort(key=lambda d: d[source.order_by])
        delivery = await self._deliver(source, claimed)
        if delivery.sent:
            await col.update_many(
                {"_id": {"$in": [d["_id"] for d in delivery.sent]}},
                {"$set": {pending: False, lease_f: None}},
            )
            self.published_total += len(delivery.sent)
            self._metrics.published.labels(source.name).inc(len(delivery.sent))
            log.info("outbox_announced", count=len(delivery.sent), source=source.name)
        for doc, exc in delivery.dead:
            await self._set_aside(source, doc, exc)
        return len(delivery.sent), delivery.transient

    def _observe(self, source: OutboxSource, seen: list[Doc], now: datetime) -> None:
        since = source.since or source.order_by
        stamps = [aware(d[since]) for d in seen if d.get(since) is not None]
        age = max(0.0, (now - min(stamps)).total_seconds()) if stamps else 0.0
        self._metrics.oldest_pending.labels(source.name).set(age)
        self._metrics.backlog.labels(source.name).set(len(seen))

    async def _deliver(self, source: OutboxSource, docs: list[Doc]) -> Delivery:
        """Queue every record in order (per-partition order is kept), then wait for each
        acknowledgement. After a passing failure nothing more is queued: those rows stay
        pending."""
        delivery = Delivery()
        producer = await self._ensure_producer()
        queued: list[tuple[Doc, asyncio.Future[object]]] = []
        for doc in docs:
            if delivery.transient is not None:
                break
            try:
                queued.append((doc, await self._queue(producer, source, doc)))
            except Exception as exc:
                delivery.failed(doc, exc)
        acks = await asyncio.gather(*(f for _, f in queued), return_exceptions=True)
        failed: list[tuple[Doc, BaseException]] = []
        for (doc, _), ack in zip(queued, acks, strict=True):
            if isinstance(ack, BaseException):
                failed.append((doc, ack))
            else:
                delivery.sent.append(doc)
        if not failed:
            return delivery
        await self._reset_producer()  # its state may be off (a sequence gap, see below)
        if not any(dead_reason(error) for _, error in failed):
            for doc, error in failed:
                delivery.failed(doc, error)
            return delivery
        # The broker refuses whole batches, so a refused record may only have shared one
        # with the culprit, and the refusal leaves a gap in the idempotent producer's
        # sequence (later batches fail with OutOfOrderSequenceNumber). Each failed record
        # is sent again alone, in order, to get a verdict of its own.
        for doc, _ in failed:
            try:
                await (await self._queue(await self._ensure_producer(), source, doc))
            except Exception as exc:
                await self._reset_producer()
                delivery.failed(doc, exc)
                if dead_reason(exc) is None:
                    break  # Kafka itself fails now: the rest stays pending for the retry
            else:
                delivery.sent.append(doc)
        return delivery

    async def _queue(
        self, producer: AIOKafkaProducer, source: OutboxSource, doc: Doc
    ) -> "asyncio.Future[object]":
        try:
            record = source.render(doc)
        except Unsendable:
            raise
        except Exception as exc:
            raise Unsendable("unrenderable", f"{type(exc).__name__}: {exc}") from exc
        if record.topic in self._missing_topics:
            raise Unsendable("unknown_topic", f"topic {record.topic!r} does not exist")
        try:
            return await send(producer, record)
        except UnknownTopicOrPartitionError as exc:
            # aiokafka waited request_timeout_ms for the topic's metadata. Dead only if a
            # broker that answers confirms the topic is missing (not during an outage).
            if not await topic_missing(producer, record.topic):
                raise
            self._missing_topics.add(record.topic)
            raise Unsendable("unknown_topic", f"topic {record.topic!r} does not exist") from exc

    async def _set_aside(self, source: OutboxSource, doc: Doc, exc: BaseException) -> None:
        """Dead: never retried. `outbox_dead` lists them for operators (README: No lost events);
        written first, so a crash in between only repeats the verdict."""
        reason = dead_reason(exc) or "rejected"
        error = (str(exc) if isinstance(exc, Unsendable) else f"{type(exc).__name__}: {exc}")[
            :ERROR_CHARS
        ]
        at = self._clock()
        tenant = doc.get("tenant_id")
        dead_id = f"{source.name}:{doc['_id']}"
        await replace_by_id(
            self._db[DEAD_COLLECTION],
            dead_id,
            {
                "source": source.name,
                "collection": source.collection,
                "row_id": doc["_id"],
                "tenant_id": tenant,
                "reason": reason,
                "error": error,
                "at": at,
            },
        )
        pending, lease_f, _ = source.fields
        await self._db[source.collection].update_one(
            {"_id": doc["_id"]},
            {
                "$set": {
                    pending: False,
                    lease_f: None,
                    source.dead_field: {"reason": reason, "error": error, "at": at},
                }
            },
        )
        self._metrics.dead.labels(source.name, reason).inc()
        log.error(
            "outbox_record_dead",
            source=source.name,
            row_id=doc["_id"],
            tenant_id=tenant,
            reason=reason,
            error=error,
        )


async def topic_missing(producer: AIOKafkaProducer, topic: str) -> bool:
    """Whether a broker answering a metadata request for all topics lists no `topic`
    (a request for all topics creates none, even where auto-creation is on)."""
    try:
        metadata = await producer.client.fetch_all_metadata()
    except Exception:
        return False  # no broker answered: an outage, not a missing topic
    return topic not in metadata.topics()
