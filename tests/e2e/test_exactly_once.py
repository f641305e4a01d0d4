"""Exactly-once mode (`PHOENIX_EXACTLY_ONCE=true`): the `coupon.issued` records and the
consumed offsets of an input partition go in that partition's Kafka transaction, so a
read_committed consumer sees each coupon exactly once, across SIGKILLs and restarts (the
restart initialises the partitions' transactional ids, which fences the killed incarnation's
producers and aborts their open transactions), and across a stalled worker whose partitions
moved to another one meanwhile (SIGSTOP, then SIGCONT)."""

import os
import random
import signal

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
    coupon_count,
    kill_rounds,
    log_events,
    produce,
    stored_at_least,
    stored_coupons,
    wait_for_all,
)
from tests.support import read_events, wait_until

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


async def test_a_stalled_worker_whose_partitions_moved_commits_nothing_when_it_resumes(
    scenario: Scenario,
    workers: Workers,
    producer: AIOKafkaProducer,
    container: Container,
    settings: Settings,
    rng: random.Random,
) -> None:
    """The first worker is stopped (SIGSTOP) mid-stream, with batches in hand, until its
    partitions move to a second worker; then it resumes (SIGCONT) and finishes what it held.
    Its transactions must not commit: the second worker initialised the partitions'
    transactional ids when it got them, which fenced the first's producers.

    How the partitions move: the embedded Kafka never moves a stalled member's partitions
    (measured: neither a static nor a dynamic member's session expires while it is stopped,
    and a rebalance waits for it), so the second worker joins with the first's
    PHOENIX_WORKER_ID: a static member with the same id replaces the stalled one at once,
    which is exactly the stalled-owner case. On resuming, the first finds its membership
    taken by another process with its id, and stops with an error."""
    tenant = scenario.tenant
    stream = build_stream(scenario, 1500, rng.randrange(2**32), prefix="stall")
    first_half, second_half = stream.chunks(2)
    await produce(producer, workers.topics, first_half)
    first = await workers.start_ready("eos-stall", exactly_once=True)
    due = EventStream.coupons_of(first_half)
    target = rng.randint(due // 5, due // 2)
    await wait_until(lambda: stored_at_least(container, tenant, target), deadline_s=40, step_s=0.02)
    os.kill(first.proc.pid, signal.SIGSTOP)
    try:
        at_stop = await coupon_count(container, tenant)
        second = await workers.start_ready("eos-stall", exactly_once=True)
        await produce(producer, workers.topics, second_half)
        # The second gets past what the first held when it stopped.
        await wait_until(
            lambda: stored_at_least(container, tenant, min(due, at_stop + 50)), deadline_s=40
        )
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    assert await first.wait_exit(30) != 0
    fenced = log_events(first, "worker_fenced")
    assert fenced and "PHOENIX_WORKER_ID" in fenced[0]["error"], first.tail()

    await wait_for_all(container, settings, workers, tenant, len(stream.expected))
    second.terminate()
    assert await second.wait_exit(GRACE_S) == 0
    docs = await stored_coupons(container, tenant)
    check_stored(docs, stream)
    committed = await announced(settings, tenant, isolation_level="read_committed")
    check_announced(docs, committed, exactly_once=True)
    everything = await announced(settings, tenant)
    print(
        f"stopped at {at_stop}/{len(stream.expected)} coupons; partitions the resumed worker "
        f"found fenced: {sum(len(e['partitions']) for e in log_events(first, 'partitions_fenced'))}"
        f"; records of aborted transactions: {len(everything) - len(committed)}"
    )
