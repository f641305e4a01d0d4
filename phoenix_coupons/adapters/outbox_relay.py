"""Publishes the events waiting in the `outbox` collection (outbox.py): the entries writers
prepared before the documents they announce and readied after them. No document without its
event reaching Kafka eventually, through Kafka outages and crashes.

Several relays (API replicas, workers) may run: each claims a batch with a lease first, so
they rarely publish the same event twice; when they do (a crash after the send, before the
delete), consumers drop the repeat by `event_id`. Sent entries are deleted: the collection
holds pending records only, and a relay's query is over that small collection alone.

Each record gets its own verdict: sent entries are deleted, entries whose record can never
be sent (outbox_failures.py) are set aside as dead with their reason (one document in
`outbox_dead`, the entry removed) and never retried, and entries that failed for a passing
reason stay for the retry. So one bad record never holds up the others. An entry with
`after` waits until that entry is gone (a rollback after its redemption's event), and dies
with it.

A bundle (outbox.py: a generation job chunk's `coupon.issued` events in one entry) is sent
as the single entries it expands to, each with its own verdict: once every one is sent or
set aside the bundle is deleted; after a passing failure it keeps the coupons still to
announce. A batch takes entries until their events reach the batch size (a bundle counts
its coupons). A writer in the relay's process hands it a readied bundle's coupons (`hand`):
the relay sends those without reading them back, and holds at most `HANDED_MAX` coupons
(the oldest handed are dropped first: their bundles are read as any other).
"""

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownTopicOrPartitionError
from pymongo import ReturnDocument
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from phoenix_coupons.adapters import outbox_metrics
from phoenix_coupons.adapters.background import cancel_and_wait
from phoenix_coupons.adapters.kafka import OutboundRecord, send, stored_record
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import OUTBOX, OUTBOX_DEAD
from phoenix_coupons.adapters.nx27017_compat import (
    aware,
    epoch_ms,
    free_lease,
    replace_by_id,
    update_many_or,
)
from phoenix_coupons.adapters.outbox import (
    READY,
    SIZE,
    bundle_subject,
    bundle_units,
    is_bundle,
)
from phoenix_coupons.adapters.outbox_failures import Unsendable, dead_reason
from phoenix_coupons.adapters.outbox_metrics import OutboxMetrics
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.outbox import IssuedBundle

log = structlog.get_logger(__name__)

ProducerFactory = Callable[[], AIOKafkaProducer]
DEAD_COLLECTION = OUTBOX_DEAD.name
ERROR_CHARS = 500


# Only a rollback follows another entry today: its redemption's event.
AFTER_DEAD = "redeem_dead"
# Coupons handed over and not sent yet, at most: a few job chunks (a relay of another
# process may take their bundles: what it sends is never handed here, and ages out).
HANDED_MAX = 10_000


def outbound(doc: Doc, topics: Mapping[str, str]) -> OutboundRecord:
    """An entry's record, as its writer laid it out, on its source's topic."""
    topic = topics.get(doc.get("source", ""))
    if topic is None:
        raise TypeError(f"no topic for source {doc.get('source')!r}")
    return stored_record(topic, doc.get("key"), doc.get("value"), doc.get("headers"))


@dataclass
class Delivery:
    """What became of a claimed batch: sent, dead, or left for the retry."""

    sent: list[Doc] = field(default_factory=list)
    dead: list[tuple[Doc, BaseException]] = field(default_factory=list)
    transient: BaseException | None = None  # the first passing failure: its entries stay

    def failed(self, doc: Doc, exc: BaseException) -> None:
        if dead_reason(exc) is not None:
            self.dead.append((doc, exc))
        elif self.transient is None:
            self.transient = exc


class OutboxRelay:
    """`topics`: the topic of each source (event type) it publishes."""

    def __init__(
        self,
        mongo: Mongo,
        producer_factory: ProducerFactory,
        topics: Mapping[str, str],
        clock: Clock,
        batch_size: int = 1000,
        poll_seconds: float = 1.0,
        lease_seconds: float = 30.0,
        metrics: OutboxMetrics = outbox_metrics.DEFAULT,
    ) -> None:
        self._mongo = mongo
        self._db = mongo.db
        self._col = mongo.db[OUTBOX.name]
        self._topics = dict(topics)
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._clock = clock
        self._batch = batch_size
        self._poll = poll_seconds
        self._lease_ms = int(lease_seconds * 1000)
        self._owner = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handed: dict[str, dict[str, Coupon]] = {}  # by bundle id: its coupons by id
        self._metrics = metrics
        self._missing_topics: set[str] = set()  # confirmed missing during this sweep
        self._held_back = False  # entries of the last round that waited for another
        self._cut = False  # the last round left ready entries out (the batch size reached)
        self.published_total = 0

    def wake(self) -> None:
        """Publish now instead of at the next poll (called after events are readied)."""
        self._wake.set()

    def hand(self, bundle: IssuedBundle) -> None:
        """A readied bundle and the coupons it names, as stored: sent without reading them
        back if this relay takes the bundle. Wakes the relay."""
        if bundle.coupons:
            self._handed[bundle.id] = {c.id: c for c in bundle.coupons}
            held = sum(len(c) for c in self._handed.values())
            while held > HANDED_MAX and len(self._handed) > 1:
                held -= len(self._handed.pop(next(iter(self._handed))))
        self.wake()

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
            if published >= self._batch or (published and (self._held_back or self._cut)):
                continue  # more waiting (a full or cut batch), or entries that waited
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
            await self._col.update_many({"owner": self._owner}, {"$set": {"lease": None}})

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
        """Claim, send and delete one batch of ready entries, oldest first; returns how many
        were announced. Raises the first passing failure (its entries stay): the caller backs
        off and gives the leases back."""
        self._missing_topics.clear()
        at = self._clock()
        now = epoch_ms(at)
        free = free_lease("lease", now)
        cursor = self._col.find(
            {"state": READY, **free},
            {"created_at": 1, "source": 1, "after": 1, SIZE: 1, "lease": 1},
        )
        oldest = [d async for d in cursor.sort("created_at", 1).limit(self._batch)]
        seen = _within(oldest, self._batch)
        self._cut = len(seen) < len(oldest)
        self._observe(seen, at)
        waiting, dead_before = await self._predecessors(seen)
        self._held_back = bool(waiting)
        ids = [d["_id"] for d in seen if d.get("after") not in waiting]
        if not ids:
            return 0
        claimed = await self._claim(seen, ids, now)
        claimed.sort(key=lambda d: (aware(d["created_at"]), d["_id"]))
        bundles = [d for d in claimed if is_bundle(d)]
        units = {
            d["_id"]: await bundle_units(self._mongo, d, self._handed.get(d["_id"]))
            for d in bundles
        }
        claimed = [u for d in claimed for u in (units[d["_id"]] if is_bundle(d) else [d])]
        orphans = [d for d in claimed if d.get("after") in dead_before]
        delivery = await self._deliver([d for d in claimed if d not in orphans])
        for doc in orphans:
            # A reversal of a grant no one saw would be wrong. An operator who re-queues
            # the dead entry re-queues this one too.
            error = Unsendable(AFTER_DEAD, f"the event it follows ({doc['after']}) is dead")
            delivery.dead.append((doc, error))
        if delivery.sent:
            of_bundles = {u["_id"] for bundle in units.values() for u in bundle}
            singles = [d["_id"] for d in delivery.sent if d["_id"] not in of_bundles]
            if singles:
                await self._col.delete_many({"_id": {"$in": singles}})
            self.published_total += len(delivery.sent)
            for source, n in Counter(d["source"] for d in delivery.sent).items():
                self._metrics.published.labels(source).inc(n)
                log.info("outbox_announced", count=n, source=source)
        for doc, exc in delivery.dead:
            await self._set_aside(doc, exc)
        await self._settle_bundles(units, delivery)
        if delivery.transient is not None:
            raise delivery.transient
        return len(delivery.sent)

    async def _claim(self, seen: list[Doc], ids: list[str], now: int) -> list[Doc]:
        """Lease the entries `ids` (of `seen`): those now ours, whole. When none had a lease
        (the usual case) the claim is one update, else one per branch of the free-lease
        `$or`; a single entry, a quiet system's usual round, is claimed and read in one
        command."""
        claim = {"$set": {"lease": now + self._lease_ms, "owner": self._owner}}
        if any(d.get("lease") is not None for d in seen):
            query = {"_id": {"$in": ids}, "state": READY, **free_lease("lease", now)}
            await update_many_or(self._col, query, claim)
        elif len(ids) == 1:
            doc = await self._col.find_one_and_update(
                {"_id": ids[0], "state": READY, "lease": {"$eq": None}},
                claim,
                return_document=ReturnDocument.AFTER,
            )
            return [] if doc is None else [doc]
        else:
            await self._col.update_many(
                {"_id": {"$in": ids}, "state": READY, "lease": {"$eq": None}}, claim
            )
        return [d async for d in self._col.find({"_id": {"$in": ids}, "owner": self._owner})]

    async def _settle_bundles(self, units: dict[str, list[Doc]], delivery: Delivery) -> None:
        """A bundle whose events were all sent or set aside is deleted; one with events left
        (a passing failure) keeps only those, for the retry."""
        done = {d["_id"] for d in delivery.sent} | {d["_id"] for d, _ in delivery.dead}
        for bundle_id, bundle in units.items():
            left = [u["subject"]["_id"] for u in bundle if u["_id"] not in done]
            if not left:
                await self._col.delete_one({"_id": bundle_id, "owner": self._owner})
                self._handed.pop(bundle_id, None)
            elif len(left) < len(bundle):
                await self._col.update_one(
                    {"_id": bundle_id, "owner": self._owner},
                    {"$set": {"subject": bundle_subject(left), SIZE: len(left)}},
                )

    async def _predecessors(self, seen: list[Doc]) -> tuple[set[str], set[str]]:
        """Of the entries that `seen` must follow: those still waiting, and those dead."""
        afters = list({d["after"] for d in seen if d.get("after")})
        if not afters:
            return set(), set()
        waiting = {d["_id"] async for d in self._col.find({"_id": {"$in": afters}}, {"_id": 1})}
        gone = [a for a in afters if a not in waiting]
        dead: set[str] = set()
        if gone:
            found = self._db[DEAD_COLLECTION].find({"entry_id": {"$in": gone}}, {"entry_id": 1})
            dead = {d["entry_id"] async for d in found}
        return waiting, dead

    def _observe(self, seen: list[Doc], now: datetime) -> None:
        oldest: dict[str, datetime] = {}
        counts: Counter[str] = Counter()
        for d in seen:
            source, at = d.get("source", ""), aware(d["created_at"])
            counts[source] += 1
            oldest[source] = min(oldest.get(source, at), at)
        for source in set(self._topics) | set(counts):
            age = (now - oldest[source]).total_seconds() if source in oldest else 0.0
            self._metrics.oldest_pending.labels(source).set(max(0.0, age))
            self._metrics.backlog.labels(source).set(counts[source])

    async def _deliver(self, docs: list[Doc]) -> Delivery:
        """Queue every record in order (per-partition order is kept), then wait for each
        acknowledgement. After a passing failure nothing more is queued: those entries
        stay."""
        delivery = Delivery()
        producer = await self._ensure_producer()
        queued: list[tuple[Doc, asyncio.Future[object]]] = []
        for doc in docs:
            if delivery.transient is not None:
                break
            try:
                queued.append((doc, await self._queue(producer, doc)))
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
                await (await self._queue(await self._ensure_producer(), doc))
            except Exception as exc:
                await self._reset_producer()
                delivery.failed(doc, exc)
                if dead_reason(exc) is None:
                    break  # Kafka itself fails now: the rest stays pending for the retry
            else:
                delivery.sent.append(doc)
        return delivery

    async def _queue(self, producer: AIOKafkaProducer, doc: Doc) -> "asyncio.Future[object]":
        try:
            record = outbound(doc, self._topics)
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

    async def _set_aside(self, doc: Doc, exc: BaseException) -> None:
        """Dead: never retried. `outbox_dead` lists them for operators (README: No lost events),
        with the entry to re-queue; written first, so a crash in between only repeats the
        verdict."""
        reason = dead_reason(exc) or "rejected"
        error = (str(exc) if isinstance(exc, Unsendable) else f"{type(exc).__name__}: {exc}")[
            :ERROR_CHARS
        ]
        at = self._clock()
        entry = await self._col.find_one({"_id": doc["_id"]}) or doc
        source, tenant = entry.get("source", ""), entry.get("tenant_id")
        subject = entry.get("subject") or {}
        await replace_by_id(
            self._db[DEAD_COLLECTION],
            f"{source}:{subject.get('_id', doc['_id'])}",
            {
                "source": source,
                "collection": subject.get("collection"),
                "row_id": subject.get("_id"),
                "entry_id": doc["_id"],
                "tenant_id": tenant,
                "reason": reason,
                "error": error,
                "at": at,
                "entry": {k: v for k, v in entry.items() if k not in ("lease", "owner")},
            },
        )
        await self._col.delete_one({"_id": doc["_id"]})
        self._metrics.dead.labels(source, reason).inc()
        log.error(
            "outbox_record_dead",
            source=source,
            row_id=subject.get("_id"),
            tenant_id=tenant,
            reason=reason,
            error=error,
        )


def _within(seen: list[Doc], events: int) -> list[Doc]:
    """The first entries of `seen` whose events stay within `events` (one entry at least):
    a bundle counts its coupons."""
    out: list[Doc] = []
    total = 0
    for doc in seen:
        total += int(doc.get(SIZE) or 1)
        if out and total > events:
            break
        out.append(doc)
    return out


async def topic_missing(producer: AIOKafkaProducer, topic: str) -> bool:
    """Whether a broker answering a metadata request for all topics lists no `topic`
    (a request for all topics creates none, even where auto-creation is on)."""
    try:
        metadata = await producer.client.fetch_all_metadata()
    except Exception:
        return False  # no broker answered: an outage, not a missing topic
    return topic not in metadata.topics()
