"""End-to-end latency: matching events produced at a steady rate to a running worker; each
event's latency is the time its `coupon.issued` record is consumed minus the time the event
was handed to the producer (one process, one monotonic clock).

The worker also stamps, per event, when its batch started and when the batch's records and
offsets went to Kafka: the latency splits into stages (see `STAGES`)."""

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from bench.common import (
    KINDS,
    BenchError,
    Servers,
    create_definitions,
    event,
    now,
    scenario_settings,
    topic_of,
)
from consumers.loop import Batch, Worker
from phoenix_coupons.adapters.kafka import OutboundRecord, ensure_topics
from phoenix_coupons.bootstrap import Container

DRAIN_TIMEOUT_S = 30.0
WARMUP_EVENTS = 20
STAGES = {
    "wait": "produced -> the worker's batch starts (its fetch, and the batch before it)",
    "store": "decode, match, insert_many (look-up after an assignment only)",
    "publish": "coupon.issued produced and acknowledged, offsets committed",
    "deliver": "committed -> consumed downstream (< 0: read before the commit returned)",
}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class LatencyRun:
    events: int
    rate: float
    seconds: float
    latencies_ms: list[float]
    stages_ms: dict[str, list[float]]

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


class _StampedWorker(Worker):
    """The real worker; notes per event when its batch started, when publishing started and
    when the batch's offsets were committed. The event ids are read after the batch."""

    def __init__(self, container: Container) -> None:
        super().__init__(
            container.settings,
            container.issuance,
            container.redelivery(),
            container.definition_cache,
        )
        self.stamps: dict[str, tuple[float, float, float]] = {}
        self._publishing = 0.0
        self._committed = 0.0
        self.stamped = asyncio.Event()

    async def _process(self, batch: Batch) -> None:
        started = now()
        await super()._process(batch)
        for records in batch.values():
            for record in records:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    event_id = json.loads(record.value or b"")["event_id"]
                    self.stamps[event_id] = (started, self._publishing, self._committed)
        self.stamped.set()

    async def _publish_and_commit(
        self, out: list[OutboundRecord], offsets: dict[TopicPartition, int]
    ) -> None:
        self._publishing = now()
        await super()._publish_and_commit(out, offsets)
        self._committed = now()


class _Outbound:
    """Reads `coupon.issued` and stamps when each trigger event's coupon arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # A downstream consumer that wants events fast does not let the broker park an
            # empty fetch for the default 500 ms.
            fetch_max_wait_ms=50,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._loop(), name="bench-outbound")

    async def _loop(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=50)
            stamp = now()
            for records in batch.values():
                for record in records:
                    trigger = json.loads(record.value or b"{}").get("trigger_event_id")
                    if trigger and trigger not in self.arrived:
                        self.arrived[trigger] = stamp
            if batch:
                self.changed.set()

    async def wait_for(self, ids: set[str], within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while not ids <= self.arrived.keys():
                self.changed.clear()
                await self.changed.wait()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def latency_run(servers: Servers, rate: float, seconds: float) -> LatencyRun:
    settings = scenario_settings(servers, "latency")
    await ensure_topics(settings)
    container = Container(settings)
    await container.start()
    outbound = _Outbound(servers.kafka, settings.topic_coupons_issued)
    # Upstream's producer as a latency-minded service would configure it: no linger.
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka, acks="all", linger_ms=0)
    worker = _StampedWorker(container)
    task: asyncio.Task[None] | None = None
    try:
        await create_definitions(container)
        await outbound.start()
        await producer.start()
        task = asyncio.create_task(worker.run(), name="bench-latency-worker")
        # Warm-up: the worker has joined its group and issued coupons before the clock runs.
        warm: set[str] = set()
        for i in range(WARMUP_EVENTS):
            kind = KINDS[i % 3]
            event_id, key, value = event(kind, 10_000_000 + i, matching=True)
            await producer.send(topic_of(settings, kind), key=key, value=value)
            warm.add(event_id)
        await outbound.wait_for(warm, DRAIN_TIMEOUT_S)

        count = int(rate * seconds)
        sent: dict[str, float] = {}
        start = now()
        for i in range(count):
            delay = start + i / rate - now()
            if delay > 0:
                await asyncio.sleep(delay)
            kind = KINDS[i % 3]
            event_id, key, value = event(kind, i, matching=True)
            sent[event_id] = now()
            await producer.send(topic_of(settings, kind), key=key, value=value)
        produced_in = now() - start
        await producer.flush()
        try:
            await outbound.wait_for(set(sent), DRAIN_TIMEOUT_S)
        except TimeoutError as exc:
            missing = len(set(sent) - outbound.arrived.keys())
            raise BenchError(f"latency: {missing} of {count} coupons not announced") from exc
        async with asyncio.timeout(DRAIN_TIMEOUT_S):  # the last batch may still be closing
            while not sent.keys() <= worker.stamps.keys() and not task.done():
                worker.stamped.clear()
                await worker.stamped.wait()
        if task.done():
            task.result()
            raise BenchError("latency: the worker stopped during the run")
        latencies = [(outbound.arrived[e] - t) * 1000 for e, t in sent.items()]
        stages: dict[str, list[float]] = {name: [] for name in STAGES}
        for e, produced in sent.items():
            started, publishing, committed = worker.stamps[e]
            for name, (a, b) in {
                "wait": (produced, started),
                "store": (started, publishing),
                "publish": (publishing, committed),
                "deliver": (committed, outbound.arrived[e]),
            }.items():
                stages[name].append((b - a) * 1000)
        return LatencyRun(count, count / produced_in, produced_in, latencies, stages)
    finally:
        worker.request_stop()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await producer.stop()
        await outbound.stop()
        await container.stop()
