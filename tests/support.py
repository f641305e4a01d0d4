"""Helpers shared by the integration and end-to-end tests."""

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

DEADLINE_S = 30.0
POLL_S = 0.05  # how often a wait on a condition looks again (never a wait in itself)


async def read_events(
    bootstrap: str,
    topic: str,
    want: Callable[[dict[str, Any]], bool],
    count: int,
    deadline_s: float = DEADLINE_S,
    isolation_level: str = "read_uncommitted",
) -> list[dict[str, Any]]:
    """Read `topic` from the start until `count` records satisfy `want` (or the deadline)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        end = time.monotonic() + deadline_s
        while len(found) < count and time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    event["_key"] = record.key.decode() if record.key else None
                    event["_headers"] = {k: v.decode() for k, v in record.headers}
                    if want(event):
                        found.append(event)
    finally:
        await consumer.stop()
    return found


async def records_to_end(
    bootstrap: str, topic: str, want: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Every record of `topic` satisfying `want`, from the start to the end offsets of now
    (so a test sees what is there, and that nothing more is): the JSON value, with `_key`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"topic {topic} has no partitions"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(*tps, timeout_ms=500)).values():
                for r in records:
                    if r.offset >= end[TopicPartition(r.topic, r.partition)]:
                        continue
                    event = json.loads(r.value)
                    event["_key"] = r.key.decode() if r.key else None
                    if want(event):
                        found.append(event)
    finally:
        await consumer.stop()
    return found


async def wait_until(
    predicate: Callable[[], Any], deadline_s: float = DEADLINE_S, step_s: float = POLL_S
) -> Any:
    """Poll an async or sync predicate until it returns a truthy value; fail at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {deadline_s} s")
        await asyncio.sleep(step_s)
