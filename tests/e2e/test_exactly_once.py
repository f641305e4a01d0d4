"""Exactly-once mode (`PHOENIX_EXACTLY_ONCE=true`): the `coupon.issued` records and the
consumed offsets go in one Kafka transaction, so a read_committed consumer sees each coupon
exactly once, across SIGKILLs and restarts (same worker id: the restart fences the killed
incarnation's producer, whose open transaction is aborted)."""

import random

import pytest
from aiokafka import AIOKafkaProducer

from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings
from tests.e2e.conftest import (
    EventStream,
    Scenario,
    Workers,
    announced,
    build_stream,
    check_announced,
    check_stored,
    kill_rounds,
    produce,
    stored_coupons,
    wait_for_all,
)
from tests.support import read_events

pytestmark = pytest.mark.slow

USERS = 2400
KILLS = 3
GRACE_S = 10.0


async def test_read_committed_sees_one_record_per_coupon_across_sigkills(
    scenario: Scenario,
    workers: Workers,
    producer: AIOKafkaProducer,
    container: Container,
    settings: Settings,
    rng: random.Random,
) -> None:
    assert settings.kafka_bootstrap_servers
    tenant = scenario.tenant
    stream = build_stream(scenario, USERS, rng.randrange(2**32), prefix="eos")
    chunks = stream.chunks(KILLS + 1)
    kills = await kill_rounds(
        workers, producer, container, settings, tenant, chunks[:-1], rng, "eos-1", exactly_once=True
    )
    assert all(after < len(stream.expected) for _, _, after in kills), kills
    await produce(producer, workers.topics, chunks[-1])
    worker = await workers.start_ready("eos-1", exactly_once=True)
    await wait_for_all(container, settings, workers, tenant, len(stream.expected))
    worker.terminate()
    assert await worker.wait_exit(GRACE_S) == 0

    docs = await stored_coupons(container, tenant)
    check_stored(docs, stream)
    # A read_committed consumer reading for the count of coupons gets every one of them...
    seen = await read_events(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant,
        count=len(docs),
        isolation_level="read_committed",
    )
    assert {e["coupon_id"] for e in seen} == {d["_id"] for d in docs}
    # ...and reading on to the end of the topic, no record twice.
    committed = await announced(settings, tenant, isolation_level="read_committed")
    check_announced(docs, committed, exactly_once=True)
    everything = await announced(settings, tenant)
    print(
        f"kills (trigger, threshold, stored): {kills}; records of aborted transactions: "
        f"{len(everything) - len(committed)}"
    )


async def test_redelivered_event_after_a_crash_between_commit_and_marking_announces_nothing(
    scenario: Scenario,
    workers: Workers,
    producer: AIOKafkaProducer,
    container: Container,
    settings: Settings,
    rng: random.Random,
) -> None:
    """A SIGKILL after the transaction committed and before the announced marks were advanced
    leaves the marks behind the committed offsets. The window is a few milliseconds wide, so
    the state is set up directly: the marks deleted after a clean run. An upstream redelivery
    of the same events (same event ids, later offsets) must then announce nothing a second
    time."""
    tenant = scenario.tenant
    stream = build_stream(scenario, 60, rng.randrange(2**32), prefix="win")
    originals = [r for r in stream.records if r.issue_key][:30]
    await produce(producer, workers.topics, originals)
    worker = await workers.start_ready("win-1", exactly_once=True)
    expected = EventStream.coupons_of(originals)
    await wait_for_all(container, settings, workers, tenant, expected)
    docs = await stored_coupons(container, tenant)
    assert len(docs) == expected
    marks = [f"{t}:{p}" for t in workers.topics.all for p in range(settings.topic_partitions)]
    emulated = await container.mongo.announced_offsets.delete_many({"_id": {"$in": marks}})
    assert emulated.deleted_count > 0

    await produce(producer, workers.topics, originals)  # the upstream sends them again
    await wait_for_all(container, settings, workers, tenant, expected)
    worker.terminate()
    assert await worker.wait_exit(GRACE_S) == 0
    assert len(await stored_coupons(container, tenant)) == expected
    committed = await announced(settings, tenant, isolation_level="read_committed")
    check_announced(docs, committed, exactly_once=True)
