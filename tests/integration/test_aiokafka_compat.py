"""The aiokafka workarounds (adapters/aiokafka_compat.py) on the session's Kafka.

A static worker leaves its group when it stops. The pause after an empty fetch: an idle
consumer's fetches are bounded by the pause, and a record sent to an idle consumer still
arrives. Counts are upper bounds over the time that actually passed: a slow machine only
lowers them."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.fetcher import Fetcher

from phoenix_coupons.adapters.aiokafka_compat import fetch_pause_installed, install_fetch_pause
from phoenix_coupons.settings import Settings
from tests.integration.worker_groups import (
    create_inbound,
    group_members,
    group_settings,
    worker_pool,
)
from tests.support import wait_until

PAUSE_MS = 20
IDLE_S = 1.0


@pytest.fixture
def counted_fetches(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[list[int]]:
    """Install the pause, then count the fetch requests sent under it."""
    install_fetch_pause(PAUSE_MS)
    assert fetch_pause_installed()
    calls = [0]
    installed = Fetcher._proc_fetch_request

    async def counting(self: Any, *args: Any) -> Any:
        calls[0] += 1
        return await installed(self, *args)

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", counting)
    yield calls
    monkeypatch.undo()
    install_fetch_pause(settings.kafka_empty_fetch_backoff_ms)


async def test_an_idle_consumer_fetches_at_most_once_per_pause(
    settings: Settings, counted_fetches: list[int]
) -> None:
    topic = f"test.backoff.{uuid.uuid4().hex[:8]}"
    # Created first: a Kafka with auto.create.topics.enable=false (docker-compose.yml, the
    # test containers) refuses records for a topic it does not know.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"first")
        await consumer.start()
        assert [r.value for r in await _read(consumer, 1)] == [b"first"]

        counted_fetches[0] = 0
        started = time.monotonic()
        idle_until = started + IDLE_S
        while time.monotonic() < idle_until:  # idle: nothing to read
            assert not await consumer.getmany(timeout_ms=100)
        elapsed = time.monotonic() - started
        # One node, one fetch in flight at a time, then the pause. Without it the embedded
        # Kafka answered ~8,000 fetches a second.
        assert counted_fetches[0] <= elapsed / (PAUSE_MS / 1000) + 5, counted_fetches[0]

        await producer.send_and_wait(topic, b"second")
        assert [r.value for r in await _read(consumer, 1)] == [b"second"]
    finally:
        await consumer.stop()
        await producer.stop()


async def _read(consumer: AIOKafkaConsumer, count: int) -> list[Any]:
    found: list[Any] = []
    async with asyncio.timeout(30):
        while len(found) < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += records
    return found


def test_a_pause_of_zero_is_off(settings: Settings) -> None:
    install_fetch_pause(0)
    assert not fetch_pause_installed()
    install_fetch_pause(settings.kafka_empty_fetch_backoff_ms)


async def test_a_static_worker_that_stops_leaves_its_group_at_once(settings: Settings) -> None:
    """The leave on stop: its partitions move at once, not after its session (6 s here)
    expired. What Kafka's Java client does on close(LEAVE_GROUP)."""
    own = group_settings(settings, worker_id="leaving-1")
    await create_inbound(own)
    async with worker_pool() as pool:
        running = await pool.start(own)
        await wait_until(lambda: _members(own, 1), deadline_s=30, step_s=0.2)
        stopped = time.monotonic()
        await pool.stop(running)
        await wait_until(lambda: _members(own, 0), deadline_s=30, step_s=0.1)
        assert time.monotonic() - stopped < own.kafka_session_timeout_ms / 1000


async def _members(settings: Settings, count: int) -> bool:
    return len(await group_members(settings)) == count
