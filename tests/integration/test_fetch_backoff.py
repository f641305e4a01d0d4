"""The pause after an empty fetch (adapters/fetch_backoff.py), on the session's Kafka: an idle
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

from phoenix_coupons.adapters import fetch_backoff
from phoenix_coupons.settings import Settings

PAUSE_MS = 20
IDLE_S = 1.0


@pytest.fixture
def counted_fetches(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[list[int]]:
    """Install the pause, then count the fetch requests sent under it."""
    fetch_backoff.install(PAUSE_MS)
    assert fetch_backoff.installed()
    calls = [0]
    installed = Fetcher._proc_fetch_request

    async def counting(self: Any, *args: Any) -> Any:
        calls[0] += 1
        return await installed(self, *args)

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", counting)
    yield calls
    monkeypatch.undo()
    fetch_backoff.install(settings.kafka_empty_fetch_backoff_ms)


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
    fetch_backoff.install(0)
    assert not fetch_backoff.installed()
    fetch_backoff.install(settings.kafka_empty_fetch_backoff_ms)
