"""Throughput runs: the real worker and the raw baselines it is compared with.

Every run reads the same pre-produced records with its own consumer group. The clock starts
when the first non-empty batch is in hand (so group join and start-up are not counted, for
either side) and stops when the offsets committed cover the end of every partition."""

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from bench.common import (
    TENANT,
    BenchError,
    Inputs,
    Servers,
    check_committed,
    create_definitions,
    now,
    scenario_settings,
)
from consumers.loop import Batch, Worker
from phoenix_coupons.adapters.coupon_repo import to_doc
from phoenix_coupons.adapters.kafka import issued_record, make_producer
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.settings import Settings

RUN_TIMEOUT_S = 180.0


@dataclass
class Run:
    name: str
    events: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class _Progress:
    """Offsets committed so far, against the end of each partition."""

    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self._left = {tp for tp, end in ends.items() if end > 0}
        self._ends = ends
        self.started: float | None = None
        self.finished: float | None = None
        self.done = asyncio.Event()

    def first_batch(self) -> None:
        if self.started is None:
            self.started = now()

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if offset >= self._ends.get(tp, 0):
                self._left.discard(tp)
        if not self._left and not self.done.is_set():
            self.finished = now()
            self.done.set()

    @property
    def seconds(self) -> float:
        assert self.started is not None and self.finished is not None
        return self.finished - self.started


class TimedWorker(Worker):
    """The real worker; only stamps the first batch and the batch that completes the input.
    `_process` returns after the batch's offsets are committed (or the batch was abandoned,
    which the final check of the committed offsets catches)."""

    def __init__(self, container: Container, progress: _Progress) -> None:
        super().__init__(
            container.settings,
            container.issuance,
            container.redelivery(),
            container.definition_cache,
        )
        self.progress = progress

    async def _process(self, batch: Batch) -> None:
        self.progress.first_batch()
        await super()._process(batch)
        self.progress.committed({tp: rs[-1].offset + 1 for tp, rs in batch.items()})


def _raw_consumer(settings: Settings, inputs: Inputs) -> AIOKafkaConsumer:
    """Configured as the worker's consumer is (batch size, isolation, offsets): the baseline
    differs only in what it does with the records."""
    return AIOKafkaConsumer(
        *inputs.topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=settings.worker_batch_size,
    )


async def raw_consume(servers: Servers, inputs: Inputs, parse: bool = False) -> Run:
    """(a) baseline: getmany, touch each record, commit the batch. `parse`: also
    `json.loads` each record (a reference point, not the target's baseline)."""
    settings = scenario_settings(servers, "raw-parse" if parse else "raw-consume", inputs)
    progress = _Progress(inputs.ends)
    consumer = _raw_consumer(settings, inputs)
    await consumer.start()
    count = 0
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while not progress.done.is_set():
                batch = await consumer.getmany(
                    timeout_ms=settings.worker_poll_ms, max_records=settings.worker_batch_size
                )
                if not batch:
                    continue
                progress.first_batch()
                for records in batch.values():
                    if parse:
                        count += sum(bool(json.loads(r.value or b"null")) for r in records)
                    else:
                        count += sum(len(r.value or b"") > 0 for r in records)
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items()}
                await consumer.commit(offsets)
                progress.committed(offsets)
    finally:
        await consumer.stop()
    if count != inputs.total:
        raise BenchError(f"raw consumer saw {count} records of {inputs.total}")
    await check_committed(servers.kafka, settings.consumer_group, inputs.ends)
    return Run("raw consumer + json.loads" if parse else "raw consumer", count, progress.seconds)


def _template(settings: Settings) -> tuple[dict[str, object], bytes, list[tuple[str, bytes]]]:
    """A coupon document and its `coupon.issued` record as the worker writes them: the raw
    pipeline stores and sends documents and records of the same size."""
    issued_at = datetime.now(UTC)
    coupon = Coupon(
        id=str(uuid.uuid4()),
        tenant_id=TENANT,
        definition_id=str(uuid.uuid4()),
        reward_item_id=str(uuid.uuid4()),
        code="BX7K2M9QPR4",
        code_norm="BX7K2M9QPR4",
        kind="issued",
        source="event",
        issue_key=f"ev:{uuid.uuid4()}:user-0000001:ach-first-win",
        issued_at=issued_at,
        user_id="user-0000001",
        code_space="B:10",
        trigger_event_id=str(uuid.uuid4()),
    )
    record = issued_record(coupon, settings.topic_coupons_issued)
    doc = to_doc(coupon)
    doc.update(  # as the template always had: its size is the baseline's
        publish_owner=f"worker:bench:{uuid.uuid4().hex[:8]}",
        publish_lease=int(issued_at.timestamp() * 1000),
    )
    return doc, record.value, record.headers


async def raw_pipeline(servers: Servers, inputs: Inputs, indexed: bool = False) -> Run:
    """(b) baseline: getmany, one insert_many of equally sized documents, one record
    produced per input (no wait per record; the futures gathered), then commit.
    `indexed`: into a collection with the coupons' indexes (a reference point, not the
    target's baseline), each document with its own code, issue key and user, so that the
    share of the gap that is the database's index upkeep shows."""
    settings = scenario_settings(servers, "raw-indexed" if indexed else "raw-pipeline", inputs)
    doc, value, headers = _template(settings)
    mongo = Mongo(servers.mongodb, settings.mongodb_database, 3600)
    collection = mongo.db["raw_coupons"]
    if indexed:
        await mongo.ensure_indexes()
        collection = mongo.coupons
    # The worker's producer settings: idempotent, acks=all, no linger (consumers/loop.py).
    producer = make_producer(servers.kafka, linger_ms=0)
    progress = _Progress(inputs.ends)
    consumer = _raw_consumer(settings, inputs)
    await producer.start()
    await consumer.start()
    count = 0
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while not progress.done.is_set():
                batch = await consumer.getmany(
                    timeout_ms=settings.worker_poll_ms, max_records=settings.worker_batch_size
                )
                if not batch:
                    continue
                progress.first_batch()
                records = [r for rs in batch.values() for r in rs]
                await collection.insert_many(
                    [
                        _unique(doc) if indexed else {**doc, "_id": str(uuid.uuid4())}
                        for _ in records
                    ],
                    ordered=False,
                )
                futures = [
                    await producer.send(
                        settings.topic_coupons_issued, key=r.key, value=value, headers=headers
                    )
                    for r in records
                ]
                await asyncio.gather(*futures)
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items()}
                await consumer.commit(offsets)
                count += len(records)
                progress.committed(offsets)
        stored = await collection.count_documents({})
    finally:
        await consumer.stop()
        await producer.stop()
        await mongo.close()
    if count != inputs.total or stored != inputs.total:
        raise BenchError(f"raw pipeline: {count} consumed, {stored} stored of {inputs.total}")
    await check_committed(servers.kafka, settings.consumer_group, inputs.ends)
    return Run("raw pipeline, indexed" if indexed else "raw pipeline", count, progress.seconds)


def _with_id(doc: dict[str, object]) -> dict[str, object]:
    return {**doc, "_id": str(uuid.uuid4())}


def _unique(doc: dict[str, object]) -> dict[str, object]:
    """The template with the values the unique and query indexes key on drawn afresh."""
    key = uuid.uuid4().hex
    code = "B" + key[:10].upper()
    return {
        **doc,
        "_id": str(uuid.uuid4()),
        "code": code,
        "code_norm": code,
        "issue_key": "evt:" + key,
        "user_id": "user-" + key[10:20],
    }


async def worker_run(servers: Servers, inputs: Inputs, matching: bool) -> Run:
    """The real worker (Container + Worker, in process) on a fresh database and group."""
    settings = scenario_settings(servers, "worker-match" if matching else "worker-nomatch", inputs)
    container = Container(settings)
    await container.start()
    try:
        await create_definitions(container)
        progress = _Progress(inputs.ends)
        worker = TimedWorker(container, progress)
        task = asyncio.create_task(worker.run(), name="bench-worker")
        try:
            async with asyncio.timeout(RUN_TIMEOUT_S):
                waiter = asyncio.create_task(progress.done.wait())
                await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if task.done():
                    task.result()  # raises what stopped the worker
                    raise BenchError("the worker stopped before the end of the input")
        finally:
            worker.request_stop()
            await asyncio.wait_for(task, 30)
        await check_committed(servers.kafka, settings.consumer_group, inputs.ends)
        coupons = await container.mongo.coupons.count_documents({"source": "event"})
        want = inputs.total if matching else 0
        if coupons != want:
            raise BenchError(f"worker stored {coupons} coupons, expected {want}")
        return Run("worker", inputs.total, progress.seconds, {"coupons": coupons})
    finally:
        await container.stop()
