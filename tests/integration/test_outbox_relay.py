"""The outbox relay against the real wire servers: coupons stored with their ready `outbox`
entries reach Kafka through an outage, after a crash between store and publish, and with two
relays at once; sent entries are deleted, dead ones set aside in `outbox_dead`.

Each test runs its own relays on a database and topic of its own: the session container's
relay works on the session database and never sees these coupons."""

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry
from pymongo import monitoring
from pymongo.asynchronous.collection import AsyncCollection

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.kafka import make_producer
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.mongo_schema import OUTBOX
from phoenix_coupons.adapters.nx27017_compat import aware, epoch_ms
from phoenix_coupons.adapters.outbox import MongoOutbox, sweep_outbox
from phoenix_coupons.adapters.outbox_metrics import OutboxMetrics
from phoenix_coupons.adapters.outbox_relay import (
    DEAD_COLLECTION,
    OutboxRelay,
    ProducerFactory,
    topic_missing,
)
from phoenix_coupons.adapters.redemption_repo import to_doc as redemption_doc
from phoenix_coupons.devservers import free_port
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.outbox import issued, redeemed, rolled_back
from phoenix_coupons.domain.redemption import Redemption, free_slot
from phoenix_coupons.settings import Settings
from schemas.redemptions import Coupon as CouponSnapshot
from schemas.rewards import RewardItem
from tests.support import wait_until

Json = dict[str, Any]


@dataclass
class Outbox:
    """A database and a topic of this test's own."""

    mongo: Mongo
    bootstrap: str
    topic: str
    relays: list[OutboxRelay]
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.metrics = OutboxMetrics(self.registry)

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

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
        topic: str | None = None,
    ) -> OutboxRelay:
        """`topic`: where coupon.issued goes (redemption events go to the test's topic)."""
        topics = {
            "coupon.issued": topic or self.topic,
            "coupon.redeemed": self.topic,
            "coupon.redemption_rolled_back": self.topic,
        }
        relay = OutboxRelay(
            self.mongo,
            factory,
            topics,
            utc_now,
            batch_size=batch_size,
            poll_seconds=0.1,
            lease_seconds=lease_seconds,
            metrics=self.metrics,
        )
        self.relays.append(relay)
        return relay

    async def store(self, coupons: list[Coupon]) -> None:
        """As bulk generation stores them: entries prepared, coupons inserted, entries ready."""
        outbox = MongoOutbox(self.mongo)
        await outbox.prepare([issued(c) for c in coupons])
        assert await MongoCouponRepo(self.mongo).insert_unordered(coupons) == []
        await outbox.ready([issued(c) for c in coupons])

    @property
    def entries(self) -> AsyncCollection[Json]:
        return self.mongo.db[OUTBOX.name]

    async def count(self, query: Json) -> int:
        """Outbox entries, by a find: the embedded server counts by a full scan."""
        return len(await self.entries.find(query, {"_id": 1}).to_list())

    async def stored(self) -> int:
        return len(await self.mongo.coupons.find({}, {"_id": 1}).to_list())

    async def pending(self) -> int:
        return await self.count({})

    async def dead(self) -> list[Json]:
        return await self.mongo.db[DEAD_COLLECTION].find().sort("at", 1).to_list()

    async def all_announced(self) -> bool:
        return await self.pending() == 0

    async def events(self, topic: str | None = None) -> list[Json]:
        """Every record on the topic, read up to its current end."""
        topic = topic or self.topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        found: list[Json] = []
        try:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            assert tps, f"topic {topic} has no partitions"
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


def new_coupons(count: int, tenant: str | None = None, prefix: str = "OUT") -> list[Coupon]:
    tenant = tenant or f"t-{uuid.uuid4().hex[:12]}"
    definition_id, reward_id = str(uuid.uuid4()), str(uuid.uuid4())
    out: list[Coupon] = []
    for i in range(count):
        issue_key = issue_keys.bulk(definition_id, None, i, str(uuid.uuid4()))
        code = f"{prefix}{i:06d}"
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
    assert await outbox.stored() == 250, "nothing is lost"
    await down.stop()
    assert await outbox.pending() == 250

    up = outbox.relay(batch_size=100)
    up.start()
    await wait_until(outbox.all_announced)
    assert up.published_total == 250
    counts = announced(await outbox.events())
    assert set(counts) == {c.id for c in coupons}, "every coupon announced at least once"
    assert all(n == 1 for n in counts.values())
    leased = await outbox.count({"lease": {"$gt": 0}})
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
    await outbox.entries.update_many(
        {"_id": {"$in": [issued(c).id for c in orphaned]}},
        {"$set": {"owner": "dead-relay", "lease": expired}},
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
    entry_ids = [issued(c).id for c in coupons]
    held = epoch_ms(utc_now()) + 600_000
    await outbox.entries.update_many(
        {"_id": {"$in": entry_ids}}, {"$set": {"owner": "busy-relay", "lease": held}}
    )
    relay = outbox.relay()
    assert await relay.publish_pending() == 0
    assert await outbox.pending() == 10

    over = epoch_ms(utc_now()) - 1
    await outbox.entries.update_many({"_id": {"$in": entry_ids}}, {"$set": {"lease": over}})
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
    assert (await outbox.pending(), await outbox.stored()) == (0, 1_500), "sent ones deleted"


# --- records that can never be sent ---------------------------------------------------------

SMALL_REQUESTS = 4096  # the producer's max_request_size in these tests


def small_producer(bootstrap: str) -> ProducerFactory:
    return lambda: make_producer(bootstrap, max_request_size=SMALL_REQUESTS)


def oversized(coupon: Coupon, size: int = 2 * SMALL_REQUESTS) -> Coupon:
    """The coupon with a user id that makes its record larger than `size` bytes, issued
    before the others (the relay takes the oldest rows first)."""
    return replace(coupon, user_id="u" * size, issued_at=utc_now() - timedelta(seconds=5))


async def test_an_unsendable_record_is_set_aside_and_other_tenants_events_go_on(
    outbox: Outbox,
) -> None:
    [big] = [oversized(c) for c in new_coupons(1, tenant="tenant-a")]
    others = new_coupons(20, tenant="tenant-b")
    await outbox.store([big])
    await outbox.store(others)
    relay = outbox.relay_with(small_producer(outbox.bootstrap), batch_size=100)
    relay.start()
    # Within the relay's normal delay (it polls every 0.1 s here), not after a stall.
    await wait_until(outbox.all_announced, deadline_s=5)
    counts = announced(await outbox.events())
    assert counts == Counter({c.id: 1 for c in others})
    assert await outbox.entries.find_one({"_id": issued(big).id}) is None, "never retried"
    # Operators find it in `outbox_dead`, named with its source and tenant.
    [dead] = await outbox.dead()
    assert dead["reason"] == "too_large"
    assert "MessageSizeTooLarge" in dead["error"]
    assert dead["_id"] == f"coupon.issued:{big.id}"
    assert (dead["source"], dead["collection"], dead["row_id"]) == (
        "coupon.issued",
        "coupons",
        big.id,
    )
    assert (dead["tenant_id"], dead["reason"]) == ("tenant-a", "too_large")
    of_issued = {"source": "coupon.issued"}
    assert outbox.sample("phoenix_outbox_dead_total", **of_issued, reason="too_large") == 1
    assert outbox.sample("phoenix_outbox_published_total", **of_issued) == 20
    # Later events of every tenant keep flowing; the dead row is not tried again.
    later = new_coupons(5, tenant="tenant-a", prefix="LATER")
    await outbox.store(later)
    await wait_until(outbox.all_announced, deadline_s=5)
    assert set(announced(await outbox.events())) == {c.id for c in others + later}
    assert outbox.sample("phoenix_outbox_dead_total", **of_issued, reason="too_large") == 1


async def test_a_record_the_broker_refuses_dies_alone_and_its_batch_mates_go_on(
    outbox: Outbox, settings: Settings
) -> None:
    """The topic takes batches of at most 6000 bytes; the producer would send more. The broker
    refuses the whole batch holding the large record (small ones share it), and the idempotent
    producer's sequence then has a gap: neither may kill the small records."""
    topic = f"{outbox.topic}.small"
    admin = AIOKafkaAdminClient(bootstrap_servers=outbox.bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": "6000"}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
    finally:
        await admin.close()
    before, after = new_coupons(10), new_coupons(10)
    [big] = [replace(c, user_id="u" * 3500) for c in new_coupons(1)]
    for batch in (before, [big], after):
        await outbox.store(batch)
    relay = outbox.relay_with(lambda: make_producer(outbox.bootstrap), topic=topic)
    relay.start()
    await wait_until(outbox.all_announced, deadline_s=10)
    counts = announced(await outbox.events(topic))
    assert set(counts) == {c.id for c in before + after}
    [dead] = await outbox.dead()
    assert (dead["row_id"], dead["reason"]) == (big.id, "too_large")


def redemption_row(tenant: str, user: str, payload_bytes: int = 10) -> Redemption:
    """A redemption stored by the API, rolled back, neither event announced yet."""
    now = utc_now()
    redemption = Redemption(
        id=str(uuid.uuid4()),
        tenant_id=tenant,
        user_id=user,
        group=f"g:{tenant}",
        state="rolled_back",
        redeemed_at=now - timedelta(seconds=1),
        rolled_back_at=now,
        coupon=CouponSnapshot(
            id=str(uuid.uuid4()),
            tenant_id=tenant,
            definition_id=str(uuid.uuid4()),
            reward_item_id=str(uuid.uuid4()),
            code="ROLLED",
            kind="issued",
            source="bulk",
            user_id=user,
            status="active",
            issued_at=now - timedelta(days=1),
        ),
        reward=RewardItem(
            item_id=str(uuid.uuid4()),
            tenant_id=tenant,
            name="reward",
            description=None,
            reward_type="voucher",
            payload={"blob": "x" * payload_bytes},
            created_at=now,
            updated_at=now,
        ),
    )
    return redemption


async def test_a_rollback_whose_redeem_is_dead_is_set_aside_too(outbox: Outbox) -> None:
    """Its `coupon.redeemed` can never be sent: announcing the rollback alone would reverse a
    grant no reward service saw. Another tenant's pair goes on, in order."""
    dead = redemption_row("tenant-a", "alice", payload_bytes=2 * SMALL_REQUESTS)
    fine = redemption_row("tenant-b", "bob")
    pairs = [e for r in (dead, fine) for e in (redeemed(r), rolled_back(r))]
    box = MongoOutbox(outbox.mongo)
    await box.prepare(pairs)
    await outbox.mongo.redemptions.insert_many(
        [redemption_doc(r, free_slot(r.id), None) for r in (dead, fine)]
    )
    await box.ready(pairs)
    relay = outbox.relay_with(small_producer(outbox.bootstrap))
    relay.start()

    await wait_until(outbox.all_announced, deadline_s=5)
    reasons = {(d["source"], d["row_id"]): d["reason"] for d in await outbox.dead()}
    assert reasons == {
        ("coupon.redeemed", dead.id): "too_large",
        ("coupon.redemption_rolled_back", dead.id): "redeem_dead",
    }
    events = await outbox.events()
    assert [(e["event_type"], e["redemption_id"]) for e in events] == [
        ("coupon.redeemed", fine.id),
        ("coupon.redemption_rolled_back", fine.id),
    ]


async def test_a_row_that_cannot_be_rendered_is_set_aside(outbox: Outbox) -> None:
    [broken, fine] = new_coupons(2)
    await outbox.store([broken, fine])
    await outbox.entries.update_one({"_id": issued(broken).id}, {"$set": {"value": 12345}})
    relay = outbox.relay()
    assert await relay.publish_pending() == 1
    [dead] = await outbox.dead()
    assert (dead["row_id"], dead["reason"]) == (broken.id, "unrenderable")
    assert "TypeError" in dead["error"]
    assert announced(await outbox.events()) == Counter({fine.id: 1})
    assert await outbox.all_announced()


async def test_a_missing_topic_is_confirmed_by_a_broker_that_answers(outbox: Outbox) -> None:
    """aiokafka raises UnknownTopicOrPartitionError both for a missing topic and when no
    metadata came within its timeout: only a broker's answer listing all topics decides."""
    producer = make_producer(outbox.bootstrap)
    await producer.start()
    try:
        assert await topic_missing(producer, f"{outbox.topic}.never-created")
        assert not await topic_missing(producer, outbox.topic)
    finally:
        await producer.stop()
    unreachable = make_producer(f"127.0.0.1:{free_port()}")
    with contextlib.suppress(Exception):
        await unreachable.start()  # fails: no broker; the client still exists
    try:
        assert not await topic_missing(unreachable, f"{outbox.topic}.never-created")
    finally:
        await unreachable.stop()


async def test_the_backlog_gauges_tell_the_oldest_pending_row_and_how_many(
    outbox: Outbox,
) -> None:
    old = [replace(c, issued_at=utc_now() - timedelta(seconds=90)) for c in new_coupons(3)]
    await outbox.store(old + new_coupons(4))
    of_issued = {"source": "coupon.issued"}
    down = outbox.relay(f"127.0.0.1:{free_port()}", batch_size=5, lease_seconds=0.001)
    with pytest.raises(KafkaConnectionError):
        await down.publish_pending()  # Kafka unreachable: the rows stay pending
    assert outbox.sample("phoenix_outbox_backlog", **of_issued) == 5, "capped at the batch size"
    assert 90 <= outbox.sample("phoenix_outbox_oldest_pending_seconds", **of_issued) < 120
    await down.stop()

    up = outbox.relay(batch_size=5)
    while await up.publish_pending():
        pass
    assert await outbox.all_announced()
    assert outbox.sample("phoenix_outbox_backlog", **of_issued) == 0
    assert outbox.sample("phoenix_outbox_oldest_pending_seconds", **of_issued) == 0
    assert outbox.sample("phoenix_outbox_published_total", **of_issued) == 7


async def test_the_sweep_readies_prepared_entries_whose_coupon_came_and_drops_the_others(
    outbox: Outbox,
) -> None:
    """A writer that crashed between prepare and ready (or before its insert): past the
    grace, the entry is readied if its coupon is stored with that code, dropped if not."""
    came, never, other_code = new_coupons(3)
    box = MongoOutbox(outbox.mongo)
    await box.prepare([issued(c) for c in (came, never, other_code)])
    await MongoCouponRepo(outbox.mongo).insert_unordered([came, replace(other_code, code="X1")])
    now, grace = utc_now(), timedelta(minutes=2)
    assert await sweep_outbox(outbox.mongo, now, grace) == 0, "within the grace: left alone"
    assert await sweep_outbox(outbox.mongo, now + timedelta(minutes=3), grace) == 3
    left = await outbox.entries.find().to_list()
    assert [(d["_id"], d["state"]) for d in left] == [(issued(came).id, "ready")]


class _Commands(monitoring.CommandListener):
    """The commands sent to one database's outbox by clients made after registration."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        ours = event.database_name == self.database
        if ours and event.command.get(event.command_name) == OUTBOX.name:
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_round_of_one_event_costs_the_relay_three_commands(
    outbox: Outbox, settings: Settings
) -> None:
    """A quiet system's usual round: find the ready entry, claim and read it in one
    command, delete it once sent; several entries: one claim update, then their read."""
    listener = _Commands(outbox.mongo.db.name)
    monitoring.register(listener)  # for the client made next (PyMongo has no unregister)
    assert settings.mongodb_uri
    mongo = Mongo(settings.mongodb_uri, outbox.mongo.db.name, settings.idempotency_ttl_seconds)
    relay = OutboxRelay(
        mongo,
        lambda: make_producer(outbox.bootstrap),
        {"coupon.issued": outbox.topic},
        utc_now,
        metrics=OutboxMetrics(CollectorRegistry()),
    )
    try:
        await outbox.store(new_coupons(1))
        listener.names.clear()
        assert await relay.publish_pending() == 1
        assert listener.names == ["find", "findAndModify", "delete"]
        await outbox.store(new_coupons(3))
        listener.names.clear()
        assert await relay.publish_pending() == 3
        assert listener.names == ["find", "update", "find", "delete"]
    finally:
        await relay.stop()
        await mongo.close()
