"""The outbox relay against the real wire servers: coupons stored with `publish_pending` reach
Kafka through an outage, after a crash between store and publish, and with two relays at once.

Each test runs its own relays on a database and topic of its own: the session container's
relay works on the session database and never sees these coupons."""

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.kafka import make_producer
from phoenix_coupons.adapters.mongo import Mongo, aware, epoch_ms
from phoenix_coupons.adapters.outbox_relay import OutboxRelay, ProducerFactory
from phoenix_coupons.devservers import free_port
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.settings import Settings
from tests.support import wait_until

Json = dict[str, Any]


@dataclass
class Outbox:
    """A database and a topic of this test's own."""

    mongo: Mongo
    bootstrap: str
    topic: str
    relays: list[OutboxRelay]

    def relay(
        self, bootstrap: str | None = None, batch_size: int = 100, lease_seconds: float = 30.0
    ) -> OutboxRelay:
        target = bootstrap or self.bootstrap
        return self.relay_with(lambda: make_producer(target), batch_size, lease_seconds)

    def relay_with(
        self,
        factory: ProducerFactory,
        batch_size: int = 100,
        lease_seconds: float = 30.0,
    ) -> OutboxRelay:
        relay = OutboxRelay(
            self.mongo,
            factory,
            self.topic,
            utc_now,
            batch_size=batch_size,
            poll_seconds=0.1,
            lease_seconds=lease_seconds,
        )
        self.relays.append(relay)
        return relay

    async def store(self, coupons: list[Coupon]) -> None:
        assert await MongoCouponRepo(self.mongo).insert_unordered(coupons) == []

    async def count(self, query: Json) -> int:
        """By a find: the embedded server answers count_documents with a full scan."""
        return len(await self.mongo.coupons.find(query, {"_id": 1}).to_list())

    async def pending(self) -> int:
        return await self.count({"publish_pending": True})

    async def all_announced(self) -> bool:
        return await self.pending() == 0

    async def events(self) -> list[Json]:
        """Every record on the topic, read up to its current end."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        found: list[Json] = []
        try:
            await consumer.topics()
            parts = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            assert tps, f"topic {self.topic} has no partitions"
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                batch = await consumer.getmany(*tps, timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        if record.offset < end[tp]:
                            event = json.loads(record.value)
                            event["_key"] = record.key.decode() if record.key else None
                            event["_headers"] = {k: v.decode() for k, v in record.headers}
                            found.append(event)
        finally:
            await consumer.stop()
        return found


@pytest.fixture
async def outbox(settings: Settings) -> AsyncIterator[Outbox]:
    assert settings.mongodb_uri and settings.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:10]
    mongo = Mongo(settings.mongodb_uri, f"phoenix_relay_{run}", settings.idempotency_ttl_seconds)
    await mongo.ensure_indexes()
    topic = f"test.relay.{run}.coupons.issued"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    box = Outbox(mongo, settings.kafka_bootstrap_servers, topic, [])
    try:
        yield box
    finally:
        for relay in box.relays:
            await relay.stop()
        await mongo.client.drop_database(mongo.db.name)
        await mongo.close()


def new_coupons(count: int, tenant: str | None = None) -> list[Coupon]:
    tenant = tenant or f"t-{uuid.uuid4().hex[:12]}"
    definition_id, reward_id = str(uuid.uuid4()), str(uuid.uuid4())
    out: list[Coupon] = []
    for i in range(count):
        issue_key = issue_keys.bulk(definition_id, None, i, str(uuid.uuid4()))
        code = f"OUT{i:06d}"
        out.append(
            Coupon(
                id=issue_keys.coupon_id(issue_key),
                tenant_id=tenant,
                definition_id=definition_id,
                reward_item_id=reward_id,
                code=code,
                code_norm=code,
                kind="issued",
                source="bulk",
                issue_key=issue_key,
                issued_at=utc_now(),
                user_id=f"user_{i:05d}",
            )
        )
    return out


def announced(events: list[Json]) -> Counter[str]:
    return Counter(e["coupon_id"] for e in events)


class CountingFactory:
    """A producer factory whose target can change, counting the producers it made."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.calls = 0

    def __call__(self) -> AIOKafkaProducer:
        self.calls += 1
        return make_producer(self.bootstrap)


async def test_kafka_outage_keeps_coupons_pending_until_a_relay_reaches_kafka(
    outbox: Outbox,
) -> None:
    coupons = new_coupons(250)
    await outbox.store(coupons)
    dead = CountingFactory(f"127.0.0.1:{free_port()}")
    down = outbox.relay_with(dead, batch_size=100, lease_seconds=1)
    down.start()
    # Three producers made: the first attempts failed and the relay kept retrying.
    await wait_until(lambda: dead.calls >= 3)
    assert down.published_total == 0
    assert await outbox.pending() == 250, "nothing is marked announced during the outage"
    assert await outbox.count({}) == 250, "nothing is lost"
    await down.stop()
    assert await outbox.pending() == 250

    up = outbox.relay(batch_size=100)
    up.start()
    await wait_until(outbox.all_announced)
    assert up.published_total == 250
    counts = announced(await outbox.events())
    assert set(counts) == {c.id for c in coupons}, "every coupon announced at least once"
    assert all(n == 1 for n in counts.values())
    leased = await outbox.count({"publish_lease": {"$gt": 0}})
    assert leased == 0


async def test_a_relay_recovers_by_itself_when_kafka_comes_back(outbox: Outbox) -> None:
    coupons = new_coupons(120)
    await outbox.store(coupons)
    factory = CountingFactory(f"127.0.0.1:{free_port()}")
    relay = outbox.relay_with(factory, batch_size=50, lease_seconds=30)
    relay.start()
    await wait_until(lambda: factory.calls >= 2)
    assert await outbox.pending() == 120

    factory.bootstrap = outbox.bootstrap  # Kafka is back
    await wait_until(outbox.all_announced)
    assert relay.published_total == 120
    counts = announced(await outbox.events())
    assert set(counts) == {c.id for c in coupons}
    assert sum(counts.values()) == 120


async def test_coupons_stored_before_a_crash_are_published_by_the_next_relay(
    outbox: Outbox,
) -> None:
    # The API stored these and died before its relay ran: no relay runs meanwhile.
    stored = new_coupons(60)
    await outbox.store(stored)
    # A relay died holding these: claimed with a lease that is now over.
    orphaned = new_coupons(40)
    await outbox.store(orphaned)
    expired = epoch_ms(utc_now()) - 1_000
    await outbox.mongo.coupons.update_many(
        {"_id": {"$in": [c.id for c in orphaned]}},
        {"$set": {"publish_owner": "dead-relay", "publish_lease": expired}},
    )
    assert await outbox.pending() == 100

    relay = outbox.relay(batch_size=30)
    relay.start()
    await wait_until(outbox.all_announced)
    events = await outbox.events()
    everything = {c.id: c for c in stored + orphaned}
    assert announced(events) == Counter({cid: 1 for cid in everything})
    for event in events:
        coupon = everything[event["coupon_id"]]
        assert event["event_id"] == event_id("coupon.issued", coupon.id)
        assert event["_headers"]["event_id"] == event["event_id"]
        assert event["_headers"]["event_type"] == "coupon.issued"
        assert event["_headers"]["tenant_id"] == coupon.tenant_id
        assert event["_key"] == coupon.user_id
        assert (event["code"], event["user_id"]) == (coupon.code, coupon.user_id)
        assert event["tenant_id"] == coupon.tenant_id
        assert aware(event["occurred_at"]) == coupon.issued_at


async def test_a_live_lease_keeps_other_relays_off_until_it_ends(outbox: Outbox) -> None:
    coupons = new_coupons(10)
    await outbox.store(coupons)
    ids = [c.id for c in coupons]
    held = epoch_ms(utc_now()) + 600_000
    await outbox.mongo.coupons.update_many(
        {"_id": {"$in": ids}}, {"$set": {"publish_owner": "busy-relay", "publish_lease": held}}
    )
    relay = outbox.relay()
    assert await relay.publish_pending() == 0
    assert await outbox.pending() == 10

    over = epoch_ms(utc_now()) - 1
    await outbox.mongo.coupons.update_many({"_id": {"$in": ids}}, {"$set": {"publish_lease": over}})
    assert await relay.publish_pending() == 10
    assert await outbox.pending() == 0
    assert announced(await outbox.events()) == Counter({cid: 1 for cid in ids})


async def test_two_relays_at_once_announce_every_coupon(outbox: Outbox) -> None:
    coupons = new_coupons(1_500)
    await outbox.store(coupons)
    first, second = outbox.relay(batch_size=100), outbox.relay(batch_size=100)
    first.start()
    second.start()
    await wait_until(outbox.all_announced, deadline_s=60, step_s=0.2)
    await first.stop()
    await second.stop()

    events = await outbox.events()
    counts = announced(events)
    assert set(counts) == {c.id for c in coupons}, "every coupon announced at least once"
    assert first.published_total + second.published_total == len(events)
    duplicates = len(events) - len(coupons)
    assert duplicates <= len(coupons) // 100, f"{duplicates} duplicates: leases should prevent"
    assert await outbox.count({"publish_pending": False}) == 1_500
