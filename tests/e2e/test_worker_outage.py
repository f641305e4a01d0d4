"""The worker through a MongoDB outage and a Kafka outage: transient errors
are retried with backoff, nothing is committed meanwhile, the order within a partition is kept,
and once the server is back every matching event ends with exactly one coupon, announced.

The session's servers are shared with other tests and must stay up: each test starts a private
server of its own on a fixed port, takes it down mid-stream and brings it back on the same port
and data folder. MongoDB: the nx-27017 process is stopped (SIGTERM) and started again. Kafka:
the noida-db process keeps running and its Kafka service is stopped and started (`noida-db
stop kafka` / `start kafka`): a noida-db process stopped while records are being produced loses
records it acknowledged just before (measured: a few hundred per partition), which no client
can survive, whereas a stopped service keeps every acknowledged record."""

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from pymongo import AsyncMongoClient

from phoenix_coupons.adapters.kafka import ensure_topics
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.devservers import _noida_binary, _nx_binary, free_port
from phoenix_coupons.settings import Settings
from tests.conftest import ALL
from tests.e2e.conftest import (
    ACHIEVEMENT,
    LEADERBOARD,
    MILESTONE,
    RANK,
    STREAK,
    EventStream,
    Inbound,
    Scenario,
    Topics,
    WorkerProcess,
    Workers,
    announced,
    build_stream,
    check_announced,
    check_stored,
    coupon_count,
    create_topics,
    log_events,
    wait_for_all,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow

USERS = 300
KAFKA_USERS = 1200
BATCH = 20  # small batches: the outage finds the worker with work in hand
RETRIES = 3  # failed attempts of one batch seen before the server comes back
GRACE_S = 10.0
# The worker's MongoDB client gives up an operation (server selection included: with an
# operation timeout, PyMongo waits that long for a server) after 1 s: one failed attempt per
# second, so the test sees several retries in a short outage.
SELECTION_MS = 1000


# --------------------------------------------------------------------------- private servers


class PrivateServer:
    """One server process of the test's own, restartable on the same port and data folder."""

    def __init__(
        self,
        name: str,
        argv: Callable[[], list[str]],
        probe: Callable[[], Awaitable[None]],
        log: Path,
    ) -> None:
        self.name = name
        self._argv = argv
        self._probe = probe
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, deadline_s: float = 30.0) -> None:
        """Start the process and wait until it answers on its wire protocol."""
        self._spawn()
        await wait_until(self._answers, deadline_s=deadline_s, step_s=0.1)

    async def _answers(self) -> bool:
        proc = self.proc
        assert proc is not None and proc.poll() is None, f"{self.name} exited"
        try:
            await self._probe()
        except Exception:
            return False
        return True

    def _spawn(self) -> "subprocess.Popen[bytes]":
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                self._argv(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self.proc

    def stop(self) -> None:
        """SIGTERM, and wait for the exit (SIGKILL past 10 s)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class PrivateKafka(PrivateServer):
    """noida-db: its Kafka service is stopped and started inside the running process."""

    def __init__(
        self,
        name: str,
        argv: Callable[[], list[str]],
        probe: Callable[[], Awaitable[None]],
        log: Path,
        data: Path,
    ) -> None:
        super().__init__(name, argv, probe, log)
        self._data = data

    async def _service(self, command: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            _noida_binary(),
            command,
            "kafka",
            "--data-dir",
            str(self._data),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, f"noida-db {command} kafka: {out.decode(errors='replace')}"

    async def stop_service(self) -> None:
        """Kafka down: the port refuses connections once this returns."""
        await self._service("stop")

    async def start_service(self, deadline_s: float = 30.0) -> None:
        await self._service("start")
        await wait_until(self._answers, deadline_s=deadline_s, step_s=0.1)


@pytest.fixture
async def private_mongo(tmp_path: Path) -> AsyncIterator[tuple[PrivateServer, str]]:
    """An nx-27017 of this test's own, and its URI."""
    port = free_port()
    data = tmp_path / "mongodb"
    data.mkdir()
    uri = (
        f"mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS={SELECTION_MS}"
    )

    def argv() -> list[str]:
        return [
            _nx_binary(),
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--log-file",
            str(tmp_path / "mongodb.log"),
            "--pid-file",
            str(tmp_path / "mongodb.pid"),
        ]

    async def ping() -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri, serverSelectionTimeoutMS=500
        )
        try:
            await client.admin.command("ping")
        finally:
            await client.close()

    server = PrivateServer("nx-27017", argv, ping, tmp_path / "mongodb.out")
    await server.start()
    try:
        yield server, uri
    finally:
        server.stop()


@pytest.fixture
async def private_kafka(tmp_path: Path) -> AsyncIterator[tuple[PrivateKafka, str]]:
    """A noida-db (Kafka only) of this test's own, and its bootstrap address."""
    port = free_port()
    data = tmp_path / "kafka"
    data.mkdir()
    bootstrap = f"127.0.0.1:{port}"

    def argv() -> list[str]:
        return [
            _noida_binary(),
            "start",
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
        ]

    async def metadata() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    server = PrivateKafka("noida-db", argv, metadata, tmp_path / "kafka.out", data)
    await server.start()
    try:
        yield server, bootstrap
    finally:
        server.stop()


# --------------------------------------------------------------------------- test's own setup


@contextlib.asynccontextmanager
async def api_client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(container, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


async def create_scenario(container: Container, tenant: str) -> Scenario:
    """A reward and one auto-generate definition per trigger (as the e2e `scenario` fixture),
    created through the API of `container`."""
    _, plaintext = await container.api_keys.create("outage", ALL, tenant)
    headers = {"X-API-Key": plaintext}
    triggers = {
        "achievement_completed": {"achievement_id": ACHIEVEMENT},
        "streak_milestone": {"streak_id": STREAK, "milestone_threshold": MILESTONE},
        "leaderboard_rank": {"leaderboard_id": LEADERBOARD, "rank_threshold": RANK},
    }
    async with api_client(container) as client:
        created = await client.post(
            f"/v1/tenants/{tenant}/rewards",
            headers=headers,
            json={"name": "100 Bonus Points", "reward_type": "points", "payload": {"amount": 100}},
        )
        assert created.status_code == 201, created.text
        reward_id = created.json()["item_id"]
        ids: dict[str, str] = {}
        for trigger, trigger_config in triggers.items():
            body = {
                "name": f"outage {trigger}",
                "config": {
                    "reward_item_id": reward_id,
                    "code_format": "random",
                    "code_prefix": trigger[:3].upper(),
                    "usage_limit": {"limit_type": "per_user", "max_uses": 1},
                    "auto_generate": {
                        "enabled": True,
                        "trigger": trigger,
                        "trigger_config": trigger_config,
                    },
                },
            }
            response = await client.post(
                f"/v1/tenants/{tenant}/coupons", json=body, headers=headers
            )
            assert response.status_code == 201, response.text
            defn = response.json()
            assert (defn["status"], defn["config"]["auto_generate"]["trigger"]) == (
                "active",
                trigger,
            )
            ids[trigger] = defn["id"]
    return Scenario(tenant, ids)


PoolFactory = Callable[[Settings], Awaitable[Workers]]


@pytest.fixture
async def pools(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[PoolFactory]:
    """`await pools(settings)`: workers on those settings' servers, with inbound topics (and
    the outbound ones, on a private Kafka) and a consumer group of the test's own. Every
    process left is killed at the end; their logs are printed when the test failed."""
    made: list[Workers] = []

    async def make(settings: Settings) -> Workers:
        assert settings.kafka_bootstrap_servers
        run = uuid.uuid4().hex[:8]
        prefix = f"{settings.topic_achievements.rsplit('.', 1)[0]}.outage-{run}"
        topics = Topics(f"{prefix}.achievements", f"{prefix}.streaks", f"{prefix}.leaderboards")
        await ensure_topics(settings)
        await create_topics(settings.kafka_bootstrap_servers, topics.all, settings.topic_partitions)
        pool = Workers(settings, topics, f"outage-{run}", tmp_path)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.kill_all()
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        for pool in made:
            print(pool.tails())


@dataclass(frozen=True)
class Sent:
    tp: TopicPartition
    offset: int
    record: Inbound


async def produce_tracked(
    producer: AIOKafkaProducer, topics: Topics, records: list[Inbound]
) -> list[Sent]:
    """Send keyed by user (as the e2e `produce`), keeping where each record landed."""
    futures = [
        await producer.send(topics.for_type(r.event_type), r.value, key=r.user_id.encode())
        for r in records
    ]
    metas = await asyncio.gather(*futures)
    return [
        Sent(TopicPartition(m.topic, m.partition), m.offset, r)
        for m, r in zip(metas, records, strict=True)
    ]


async def committed(
    bootstrap: str, group: str, topics: Topics, partitions: int
) -> dict[TopicPartition, int]:
    """The group's committed offset per inbound partition (0: none yet)."""
    tps = [TopicPartition(t, p) for t in topics.all for p in range(partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp: max(0, found[tp].offset) if tp in found else 0 for tp in tps}


def retries(worker: WorkerProcess) -> list[dict[str, Any]]:
    return log_events(worker, "batch_retry")


def processed_batches(worker: WorkerProcess) -> int:
    """Batches processed and committed (`batch_processed` is logged after the commit)."""
    return len(log_events(worker, "batch_processed"))


# aiokafka's own log lines: a produce request failed (and is retried by the producer), or a
# connection to the broker was refused (the producer's retry, the consumer's fetch: a stop
# that finds no request in flight shows only these); the consumer lost its group coordinator.
PRODUCE_ERROR = "Got error produce response"
CONNECT_ERROR = "Unable connect to node"
COORDINATOR_DEAD = ("Marking the coordinator dead", "Group Coordinator Request failed")
PRODUCE_ERRORS = 5


def log_count(worker: WorkerProcess, text: str) -> int:
    return sum(1 for e in log_events_any(worker) if str(e.get("event", "")).startswith(text))


def log_events_any(worker: WorkerProcess) -> list[dict[str, Any]]:
    found = []
    for line in worker.log_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                found.append(entry)
    return found


def kafka_errors(worker: WorkerProcess) -> int:
    return log_count(worker, PRODUCE_ERROR) + log_count(worker, CONNECT_ERROR)


def kafka_outage_seen(worker: WorkerProcess) -> bool:
    lost = sum(log_count(worker, text) for text in COORDINATOR_DEAD)
    return kafka_errors(worker) >= PRODUCE_ERRORS and bool(lost)


# --------------------------------------------------------------------------- outcome checks


def check_order(docs: list[dict[str, Any]]) -> None:
    """Within each inbound partition, coupons were issued in offset order: a later record's
    coupon is never issued before an earlier one's (`issued_at` is the batch's clock)."""
    by_partition: dict[str, list[tuple[int, datetime]]] = {}
    for doc in docs:
        topic_partition, offset = doc["trigger_record"].rsplit(":", 1)
        at = aware(doc["issued_at"])
        assert at is not None
        by_partition.setdefault(topic_partition, []).append((int(offset), at))
    assert len(by_partition) > 1, "the stream should spread over several partitions"
    for topic_partition, issued in by_partition.items():
        times = [at for _, at in sorted(issued)]
        assert times == sorted(times), f"{topic_partition}: coupons issued out of order"


async def full_docs(container: Container, tenant: str) -> list[dict[str, Any]]:
    return [doc async for doc in container.mongo.coupons.find({"tenant_id": tenant})]


def check_outcome(
    docs: list[dict[str, Any]], events: list[dict[str, Any]], stream: EventStream
) -> None:
    check_stored(docs, stream)
    per_coupon = check_announced(docs, events, exactly_once=False)
    assert len(per_coupon) == len(docs) == len(stream.expected)
    check_order(docs)


# --------------------------------------------------------------------------- the tests


async def test_mongodb_outage_retries_commits_nothing_then_loses_nothing(
    private_mongo: tuple[PrivateServer, str],
    settings: Settings,
    pools: PoolFactory,
) -> None:
    """MongoDB down mid-stream while records keep coming: the batch in hand fails on every
    attempt and is retried with growing waits, the group's offsets stay where they were (all
    below them stored before the outage), and the worker lives on. Once MongoDB is back on
    the same port and data: exactly one coupon per matching event, each announced, issued in
    offset order within each partition."""
    assert settings.kafka_bootstrap_servers
    bootstrap = settings.kafka_bootstrap_servers
    mongo, uri = private_mongo
    own = Container(
        settings.model_copy(update={"mongodb_uri": uri, "mongodb_timeout_ms": SELECTION_MS})
    )
    await own.start_storage()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        scenario = await create_scenario(own, tenant)
        stream = build_stream(scenario, USERS, seed=USERS, prefix="mdb")
        half = len(stream.records) // 2
        first, rest = stream.records[:half], stream.records[half:]
        pool = await pools(own.settings)
        sent = await produce_tracked(producer, pool.topics, first)
        worker = await pool.start_ready("outage-mdb", batch_size=BATCH)

        async def some_stored() -> bool:
            return await coupon_count(own, tenant) >= BATCH

        await wait_until(some_stored, deadline_s=20)
        mongo.stop()
        down_at = time.time()
        # MongoDB down: the worker gets more records, fails on each attempt and waits.
        sent += await produce_tracked(producer, pool.topics, rest)
        await wait_until(lambda: retries(worker), deadline_s=20)
        held = await committed(bootstrap, pool.group, pool.topics, settings.topic_partitions)
        done = processed_batches(worker)
        await wait_until(lambda: len(retries(worker)) >= RETRIES, deadline_s=20)
        assert worker.alive, worker.tail()
        assert processed_batches(worker) == done, "a batch processed while MongoDB was down"
        during = await committed(bootstrap, pool.group, pool.topics, settings.topic_partitions)
        assert during == held, "offsets committed while MongoDB was down"
        ends: dict[TopicPartition, int] = {}
        for s in sent:
            ends[s.tp] = max(ends.get(s.tp, 0), s.offset + 1)
        assert any(held.get(tp, 0) < end for tp, end in ends.items()), "nothing was pending"
        attempts = [int(e["attempt"]) for e in retries(worker)]
        assert attempts[:RETRIES] == list(range(1, RETRIES + 1)), attempts
        errors = {e["error"].split("(", 1)[0] for e in retries(worker)}
        assert errors & {"ServerSelectionTimeoutError", "AutoReconnect", "NetworkTimeout"}, errors

        await mongo.start()
        await wait_for_all(own, own.settings, pool, tenant, len(stream.expected))
        assert worker.alive, worker.tail()
        worker.terminate()
        assert await worker.wait_exit(GRACE_S) == 0, worker.tail()

        docs = await full_docs(own, tenant)
        check_outcome(docs, await announced(settings, tenant), stream)
        # What was committed while MongoDB was down had been stored before it went down.
        issued_at = {d["issue_key"]: aware(d["issued_at"]) for d in docs}
        below = [s for s in sent if s.record.issue_key and s.offset < held[s.tp]]
        assert below, "nothing was committed before the outage"
        for s in below:
            at = issued_at[s.record.issue_key]
            assert at is not None and at.timestamp() < down_at, s
        print(
            f"outage: {len(retries(worker))} retries; committed while down {sum(held.values())}"
            f"/{sum(ends.values())} records, {len(below)} of them matching"
        )
    finally:
        await producer.stop()
        await own.stop()


async def test_kafka_outage_holds_the_batch_commits_nothing_then_loses_nothing(
    private_kafka: tuple[PrivateKafka, str],
    scenario: Scenario,
    container: Container,
    settings: Settings,
    pools: PoolFactory,
) -> None:
    """Kafka down with a batch in hand: its coupons are stored, their announcement fails and
    is retried (by the idempotent producer, in order) while the worker commits nothing; once
    Kafka is back the worker rejoins its group and issues the rest of the stream, produced
    after the outage. Exactly one coupon per matching event, each announced, in order."""
    kafka, bootstrap = private_kafka
    own = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
    tenant = scenario.tenant
    stream = build_stream(scenario, KAFKA_USERS, seed=KAFKA_USERS, prefix="kfk")
    cut = len(stream.records) * 2 // 3
    pool = await pools(own)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        await produce_tracked(producer, pool.topics, stream.records[:cut])
        worker = await pool.start_ready("outage-kfk", batch_size=BATCH)

        async def some_stored() -> bool:
            return await coupon_count(container, tenant) >= BATCH

        await wait_until(some_stored, deadline_s=20)
        await kafka.stop_service()
        # The batch in hand is stored; its announcement fails, and the consumer loses its
        # group coordinator.
        await wait_until(lambda: kafka_outage_seen(worker), deadline_s=20)
        done = processed_batches(worker)
        stored = await coupon_count(container, tenant)
        assert BATCH <= stored < len(stream.expected)
        await wait_until(lambda: kafka_errors(worker) >= 3 * PRODUCE_ERRORS)
        assert worker.alive, worker.tail()
        assert processed_batches(worker) == done, "a batch committed while Kafka was down"

        await kafka.start_service()
        await produce_tracked(producer, pool.topics, stream.records[cut:])
        await wait_for_all(container, own, pool, tenant, len(stream.expected))
        assert worker.alive, worker.tail()
        assert processed_batches(worker) > done
        worker.terminate()
        assert await worker.wait_exit(GRACE_S) == 0, worker.tail()

        docs = await full_docs(container, tenant)
        check_outcome(docs, await announced(own, tenant), stream)
        print(f"kafka outage: {stored} coupons stored when seen, after {done} batches")
    finally:
        await producer.stop()
