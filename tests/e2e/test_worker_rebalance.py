"""Two worker processes in one consumer group (different worker ids) on one stream of events:
the second joins mid-stream (rebalance), then the first is stopped with SIGTERM while events
keep coming (rebalance: it commits and leaves, the other takes its partitions). Exactly one
coupon per matching event, each announced."""

import asyncio
import random

import pytest
from aiokafka import AIOKafkaProducer

from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings
from tests.e2e.conftest import (
    EventStream,
    Scenario,
    WorkerProcess,
    Workers,
    announced,
    build_stream,
    check_announced,
    check_stored,
    coupon_count,
    log_events,
    processed,
    produce,
    stored_at_least,
    stored_coupons,
    wait_for_all,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow

USERS = 2400
GRACE_S = 10.0


def _partitions(worker: WorkerProcess) -> list[list[str]]:
    return [e["partitions"] for e in log_events(worker, "partitions_assigned")]


async def test_two_workers_share_the_stream_across_rebalances_without_duplicates(
    scenario: Scenario,
    workers: Workers,
    producer: AIOKafkaProducer,
    container: Container,
    settings: Settings,
    rng: random.Random,
) -> None:
    tenant = scenario.tenant
    stream = build_stream(scenario, USERS, rng.randrange(2**32), prefix="reb")
    chunks = stream.chunks(4)
    await produce(producer, workers.topics, chunks[0])
    first = await workers.start_ready("reb-1")
    await wait_until(lambda: stored_at_least(container, tenant, 1), deadline_s=30)
    assert await coupon_count(container, tenant) < len(stream.expected)

    # Rebalance 1: a second process joins; the first gives up part of its partitions.
    await produce(producer, workers.topics, chunks[1])
    second = await workers.start_ready("reb-2")
    total = 3 * settings.topic_partitions
    await wait_until(
        lambda: (
            _partitions(second)
            and _partitions(second)[-1]
            and len(_partitions(first)) >= 2
            and len(_partitions(first)[-1]) + len(_partitions(second)[-1]) == total
        ),
        deadline_s=30,
    )
    shared = set(_partitions(first)[-1]) | set(_partitions(second)[-1])
    assert len(shared) == total  # each partition has one owner

    # More events for both; then rebalance 2: SIGTERM the first while events keep coming.
    await produce(producer, workers.topics, chunks[2])
    due = EventStream.coupons_of([r for c in chunks[:3] for r in c])
    target = due // 2 + rng.randint(1, due // 2)
    await wait_until(lambda: stored_at_least(container, tenant, target), deadline_s=30)
    first.terminate()
    code, _ = await asyncio.gather(
        first.wait_exit(GRACE_S), produce(producer, workers.topics, chunks[3])
    )
    assert code == 0
    await wait_for_all(container, settings, workers, tenant, len(stream.expected))
    assert len(_partitions(second)[-1]) == total  # the survivor took all partitions over
    second.terminate()
    assert await second.wait_exit(GRACE_S) == 0
    assert processed(first) > 0 and processed(second) > 0

    docs = await stored_coupons(container, tenant)
    check_stored(docs, stream)
    per_coupon = check_announced(docs, await announced(settings, tenant), exactly_once=False)
    print(
        f"records processed: first {processed(first)}, second {processed(second)}; "
        f"re-announced: {sum(per_coupon.values()) - len(docs)}"
    )
