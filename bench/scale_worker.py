"""(scale) The worker at each store size: rounds of matching events through the real worker
(consumers/loop.py, in this process, on the scenario's own topics), each round's batches
timed inside the worker (`_process`: decode, plan, store, publish, commit), so that a
round's cost per event is the worker's own and not Kafka's fetch wait. Also timed alone:
the redelivery look-up of a round's events (what a restarted worker asks for the records it
gets again) and the background passes of a worker process while nothing is due (the
sweeps, the expiry scheduler): on the embedded MongoDB, which answers one request at a
time, a pass that scans holds up every other request meanwhile."""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from bench.common import (
    KINDS,
    TENANT,
    BenchError,
    create_definitions,
    end_offsets,
    event,
    fast_producer,
    topic_of,
)
from bench.throughput import TimedWorker, _Progress
from consumers.loop import Batch
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.delivery import EventRef

ROUND_EVENTS = 500  # matching events per round, one coupon each: a round lasts about 0.5 s
ROUND_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
WAKE_S = 0.5  # a look at the worker task between two batches


class _TimedWorker(TimedWorker):
    """The throughput scenarios' worker (its progress unused); adds up the time its batches
    take and the records they hold, and notes the offsets they committed."""

    def __init__(self, container: Container) -> None:
        super().__init__(container, _Progress({}))
        self.busy_s = 0.0
        self.records = 0
        self.committed: dict[TopicPartition, int] = {}
        self.progressed = asyncio.Event()

    async def _process(self, batch: Batch) -> None:
        started = time.perf_counter()
        await super()._process(batch)
        self.busy_s += time.perf_counter() - started
        self.records += sum(len(rs) for rs in batch.values())
        self.committed.update({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
        self.progressed.set()


@dataclass
class WorkerRounds:
    """Rounds of `ROUND_EVENTS` events (one user each, never seen before), produced, then
    waited for until the worker committed their ends."""

    container: Container
    producer: AIOKafkaProducer
    issued: int = 0  # events produced so far (their number keys their users)
    last: list[EventRef] = field(default_factory=list)  # the last round's events
    ends: dict[TopicPartition, int] = field(default_factory=dict)  # committed by now

    @classmethod
    async def open(cls, container: Container) -> "WorkerRounds":
        """The three auto-generate definitions of the throughput scenarios (their own code
        space), matched from memory; the producer of the inbound events."""
        await create_definitions(container)
        producer = fast_producer(container.settings.kafka_bootstrap_servers or "")
        await producer.start()
        return cls(container, producer)

    async def close(self) -> None:
        await self.producer.stop()

    async def measure(self, reps: int) -> list[float]:
        """Milliseconds of worker time per event, one sample per round; a worker started
        for these rounds and stopped after (its idle polls stay out of the other figures),
        so a round first, not kept: the new worker's first batches load its partitions'
        marks and set up its clients."""
        worker = _TimedWorker(self.container)
        worker.committed.update(self.ends)  # a partition this round leaves out is done
        task = asyncio.create_task(worker.run(), name="bench-scale-worker")
        samples: list[float] = []
        try:
            await self._round(worker, task)
            for _ in range(reps):
                samples.append(await self._round(worker, task))
        finally:
            worker.request_stop()
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
        return samples

    async def _round(self, worker: _TimedWorker, task: "asyncio.Task[None]") -> float:
        settings = self.container.settings
        futures, refs = [], []
        for i in range(self.issued, self.issued + ROUND_EVENTS):
            kind = KINDS[i % len(KINDS)]
            event_id, key, value = event(kind, i, True)
            futures.append(await self.producer.send(topic_of(settings, kind), key=key, value=value))
            refs.append(EventRef(TENANT, key.decode(), event_id))
        await asyncio.gather(*futures)
        self.issued += ROUND_EVENTS
        topics = [settings.topic_achievements, settings.topic_streaks, settings.topic_leaderboards]
        ends = await end_offsets(settings.kafka_bootstrap_servers or "", topics)
        busy, records = worker.busy_s, worker.records

        def behind() -> bool:
            return any(worker.committed.get(tp, 0) < end for tp, end in ends.items() if end)

        async with asyncio.timeout(ROUND_TIMEOUT_S):
            while behind():
                if task.done():
                    task.result()  # raises what stopped the worker
                    raise BenchError("the worker stopped during a round")
                worker.progressed.clear()
                if behind():  # a batch may have committed since the check
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(worker.progressed.wait(), WAKE_S)
        if worker.records - records != ROUND_EVENTS:
            raise BenchError(f"a round's batches held {worker.records - records} records")
        self.last, self.ends = refs, ends
        return (worker.busy_s - busy) * 1000 / ROUND_EVENTS

    async def redelivery_lookup(self) -> None:
        """The look-up of coupons an earlier attempt stored for the last round's events."""
        found = await MongoCouponRepo(self.container.mongo).for_trigger_events(self.last)
        if len(found) != len(self.last):
            raise BenchError(f"redelivery look-up found {len(found)} of {len(self.last)}")
