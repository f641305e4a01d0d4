"""The worker process killed at any moment (SIGKILL) or stopped (SIGTERM) mid-stream, then
restarted: every matching event ends with exactly one coupon in MongoDB and at least one
`coupon.issued` record (at-least-once mode, the default)."""

import random

import pytest
from aiokafka import AIOKafkaProducer

from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings
from tests.e2e.conftest import (
    Scenario,
    Workers,
    announced,
    build_stream,
    check_announced,
    check_stored,
    kill_rounds,
    produce,
    stored_at_least,
    stored_coupons,
    wait_for_all,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow

USERS = 3000
KILLS = 3
GRACE_S = 10.0


async def test_sigkill_mid_stream_then_restart_leaves_one_coupon_per_event(
    scenario: Scenario,
    workers: Workers,
    producer: AIOKafkaProducer,
    container: Container,
    settings: Settings,
    rng: random.Random,
) -> None:
    assert settings.kafka_bootstrap_servers
    tenant = scenario.tenant
    stream = build_stream(scenario, USERS, rng.randrange(2**32))
    chunks = stream.chunks(KILLS + 1)
    kills = await kill_rounds(
        workers, producer, container, settings, tenant, chunks[:-1], rng, worker_id="crash-1"
    )
    assert all(after < len(stream.expected) for _, _, after in kills), kills
    await produce(producer, workers.topics, chunks[-1])
    worker = await workers.start_ready("crash-1")
    await wait_for_all(container, settings, workers, tenant, len(stream.expected))
    worker.terminate()
    assert await worker.wait_exit(GRACE_S) == 0

    docs = await stored_coupons(container, tenant)
    check_stored(docs, stream)
    events = await announced(settings, tenant)
    per_coupon = check_announced(docs, events, exactly_once=False)
    again = sum(per_coupon.values()) - len(docs)
    print(f"kills (trigger, threshold, stored): {kills}; re-announced: {again}")


async def test_sigterm_mid_stream_exits_within_grace_and_restart_loses_nothing(
    scenario: Scenario,
    workers: Workers,
    producer: AIOKafkaProducer,
    container: Container,
    settings: Settings,
    rng: random.Random,
) -> None:
    """SIGTERM: the batch in hand is finished and committed, the process exits 0 within 10 s.
    What it stored is announced by then, exactly once; the restart resumes at the committed
    offsets: it re-issues and re-announces nothing, and issues the rest."""
    assert settings.kafka_bootstrap_servers
    tenant = scenario.tenant
    stream = build_stream(scenario, 1500, rng.randrange(2**32), prefix="term")
    await produce(producer, workers.topics, stream.records)
    worker = await workers.start_ready("term-1")
    target = rng.randint(50, len(stream.expected) // 2)
    await wait_until(lambda: stored_at_least(container, tenant, target), deadline_s=40, step_s=0.02)
    worker.terminate()
    assert await worker.wait_exit(GRACE_S) == 0
    assert "worker_stopped" in worker.log_text()

    stopped = await stored_coupons(container, tenant)
    assert 0 < len(stopped) < len(stream.expected)
    check_announced(stopped, await announced(settings, tenant), True)

    worker = await workers.start_ready("term-1")
    await wait_for_all(container, settings, workers, tenant, len(stream.expected))
    worker.terminate()
    assert await worker.wait_exit(GRACE_S) == 0
    docs = await stored_coupons(container, tenant)
    check_stored(docs, stream)
    codes = {d["_id"]: d["code"] for d in docs}
    assert all(codes.get(d["_id"]) == d["code"] for d in stopped)  # kept as they were
    events = await announced(settings, tenant)
    check_announced(docs, events, exactly_once=True)
