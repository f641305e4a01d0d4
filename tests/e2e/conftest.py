"""End-to-end helpers: the event worker as real subprocesses (`python -m phoenix_coupons worker`)
on the session's embedded servers, a stream of inbound events of a tenant of the test's own,
and the checks of what ends in MongoDB and on the `coupon.issued` topic.

Each test gets inbound topics of its own: a worker group reading from offset 0 then sees only
the test's records (no catching up on the session's history, no matching of other tests'
events). `coupon.issued` is the session's topic, read filtered by tenant."""

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from phoenix_coupons.adapters import list_keys
from phoenix_coupons.adapters.coupon_repo import BY_DEFINITION
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.devservers import free_port
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.events import event_id as outbound_event_id
from phoenix_coupons.settings import Settings
from tests.conftest import TEST_SECRET
from tests.support import POLL_S, wait_until

READY_DEADLINE_S = 40.0
# Smaller batches than the service's default: more of them in a stream, so a kill lands in
# any phase of one (matching, insert, produce, commit, mark) rather than mostly between two.
BATCH_SIZE = 250
ACHIEVEMENT, STREAK, LEADERBOARD = "ach-e2e", "streak-e2e", "lb-e2e"
MILESTONE, RANK = 7, 10


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item: fixtures print worker logs when a test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --------------------------------------------------------------------------- worker processes


@dataclass
class WorkerProcess:
    worker_id: str
    port: int
    log_path: Path
    proc: "subprocess.Popen[bytes]"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        """Poll /readyz until 200; fail with the log's tail if the process died or is late."""
        url = f"http://127.0.0.1:{self.port}/readyz"
        end = time.monotonic() + deadline_s
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                if not self.alive:
                    raise AssertionError(
                        f"worker {self.worker_id} exited with {self.proc.returncode} before "
                        f"ready:\n{self.tail()}"
                    )
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > end:
                    raise AssertionError(
                        f"worker {self.worker_id} not ready in {deadline_s} s:\n{self.tail()}"
                    )
                await asyncio.sleep(POLL_S)

    def kill(self) -> None:
        """SIGKILL: no batch finished, nothing committed, nothing closed."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout_s: float) -> int:
        """The exit code, waiting at most `timeout_s`; fail with the log's tail past it."""
        end = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > end:
                raise AssertionError(
                    f"worker {self.worker_id} still running {timeout_s} s after SIGTERM:\n"
                    f"{self.tail()}"
                )
            await asyncio.sleep(POLL_S)
        return self.proc.returncode


@dataclass
class Topics:
    achievements: str
    streaks: str
    leaderboards: str

    def for_type(self, event_type: str) -> str:
        return {
            "achievement_completed": self.achievements,
            "streak_milestone": self.streaks,
            "leaderboard_rank": self.leaderboards,
        }[event_type]

    @property
    def all(self) -> list[str]:
        return [self.achievements, self.streaks, self.leaderboards]


class Workers:
    """Starts worker subprocesses for one test; the fixture kills what is left at the end."""

    def __init__(self, settings: Settings, topics: Topics, group: str, workdir: Path) -> None:
        self._settings = settings
        self.topics = topics
        self.group = group
        self._dir = workdir
        self.started: list[WorkerProcess] = []

    def env(self, worker_id: str, port: int, exactly_once: bool, batch_size: int) -> dict[str, str]:
        s = self._settings
        assert s.kafka_bootstrap_servers and s.mongodb_uri
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "MONGODB_URI": s.mongodb_uri,
            "PHOENIX_MONGODB_DATABASE": s.mongodb_database,
            "PHOENIX_MONGODB_TIMEOUT_MS": str(s.mongodb_timeout_ms),
            "PHOENIX_SECRET_KEY": TEST_SECRET,
            "PHOENIX_TOPIC_COUPONS_ISSUED": s.topic_coupons_issued,
            "PHOENIX_TOPIC_COUPONS_REDEEMED": s.topic_coupons_redeemed,
            "PHOENIX_TOPIC_COUPONS_EXPIRY": s.topic_coupons_expiry,
            "PHOENIX_TOPIC_ACHIEVEMENTS": self.topics.achievements,
            "PHOENIX_TOPIC_STREAKS": self.topics.streaks,
            "PHOENIX_TOPIC_LEADERBOARDS": self.topics.leaderboards,
            "PHOENIX_TOPIC_DLQ": s.topic_dlq,
            "PHOENIX_TOPIC_PARTITIONS": str(s.topic_partitions),
            "PHOENIX_CONSUMER_GROUP": self.group,
            "PHOENIX_WORKER_ID": worker_id,
            "PHOENIX_WORKER_PORT": str(port),
            "PHOENIX_EXACTLY_ONCE": "true" if exactly_once else "false",
            "PHOENIX_WORKER_BATCH_SIZE": str(batch_size),
            "PHOENIX_DEFINITIONS_REFRESH_SECONDS": "0.5",
            "PHOENIX_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "PHOENIX_OUTBOX_POLL_SECONDS": "0.2",
            "PHOENIX_DATA_DIR": str(self._dir / "data"),
            "PHOENIX_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }

    def start(
        self, worker_id: str, exactly_once: bool = False, batch_size: int = BATCH_SIZE
    ) -> WorkerProcess:
        port = free_port()
        log_path = self._dir / f"{worker_id}-{len(self.started)}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "phoenix_coupons", "worker"],
                env=self.env(worker_id, port, exactly_once, batch_size),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        worker = WorkerProcess(worker_id, port, log_path, proc)
        self.started.append(worker)
        return worker

    async def start_ready(
        self, worker_id: str, exactly_once: bool = False, batch_size: int = BATCH_SIZE
    ) -> WorkerProcess:
        worker = self.start(worker_id, exactly_once, batch_size)
        await worker.wait_ready()
        return worker

    def kill_all(self) -> None:
        for worker in self.started:
            if worker.alive:
                worker.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(10)

    def tails(self) -> str:
        return "\n".join(
            f"----- {w.log_path.name} (exit {w.proc.returncode}) -----\n{w.tail()}"
            for w in self.started
        )


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


@pytest.fixture
async def workers(
    settings: Settings, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Workers]:
    """Worker processes of this test: own inbound topics and consumer group. Every process
    left is killed at the end; their logs are printed when the test failed."""
    assert settings.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    prefix = f"{settings.topic_achievements.rsplit('.', 1)[0]}.e2e-{run}"
    topics = Topics(f"{prefix}.achievements", f"{prefix}.streaks", f"{prefix}.leaderboards")
    await create_topics(settings.kafka_bootstrap_servers, topics.all, settings.topic_partitions)
    pool = Workers(settings, topics, f"e2e-{run}", tmp_path)
    yield pool
    pool.kill_all()
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        print(pool.tails())


# --------------------------------------------------------------------------- inbound events


@dataclass
class Scenario:
    """A tenant with one auto-generate definition per trigger, created through the API."""

    tenant: str
    definitions: dict[str, str]  # event type -> definition id


@pytest.fixture
async def scenario(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> Scenario:
    triggers = {
        "achievement_completed": {"achievement_id": ACHIEVEMENT},
        "streak_milestone": {"streak_id": STREAK, "milestone_threshold": MILESTONE},
        "leaderboard_rank": {"leaderboard_id": LEADERBOARD, "rank_threshold": RANK},
    }
    ids: dict[str, str] = {}
    for trigger, trigger_config in triggers.items():
        body = {
            "name": f"e2e {trigger}",
            "config": {
                "reward_item_id": reward["item_id"],
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
        created = await client.post(
            f"/v1/tenants/{tenant}/coupons", json=body, headers=admin["headers"]
        )
        assert created.status_code == 201, created.text
        defn = created.json()
        assert defn["status"] == "active"
        assert defn["config"]["auto_generate"]["trigger"] == trigger
        ids[trigger] = defn["id"]
    return Scenario(tenant, ids)


@dataclass(frozen=True)
class Inbound:
    event_type: str
    user_id: str
    value: bytes
    issue_key: str | None  # of the coupon it triggers (None: it matches nothing)


@dataclass
class EventStream:
    """The records to produce, in order, and the issue keys they must yield."""

    records: list[Inbound] = field(default_factory=list)

    @property
    def expected(self) -> set[str]:
        return {r.issue_key for r in self.records if r.issue_key}

    def chunks(self, parts: int) -> list[list[Inbound]]:
        size = -(-len(self.records) // parts)
        return [self.records[i : i + size] for i in range(0, len(self.records), size)]

    @staticmethod
    def coupons_of(records: list[Inbound]) -> int:
        """How many coupons these records issue (the first of each occurrence does)."""
        return len({r.issue_key for r in records if r.issue_key})


def _event(
    tenant: str, user: str, event_type: str, data: dict[str, Any], event_id: str | None = None
) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "tenant_id": tenant,
        "user_id": user,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }


def build_stream(scenario: Scenario, users: int, seed: int, prefix: str = "u") -> EventStream:
    """One matching event per user, the three triggers in turn; plus, spread later in the
    stream, exact redeliveries (same event id) of every 7th, a new event of the same occurrence
    for every 11th (same streak or period: no second coupon), and a non-matching event for every
    13th (below the streak milestone, outside the rank threshold, another achievement)."""
    rng = random.Random(seed)
    tenant = scenario.tenant
    started = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    stream = EventStream()
    main: list[Inbound] = []
    extra: list[tuple[int, Inbound]] = []
    for i in range(users):
        user = f"{prefix}-{i:05d}"
        kind = ("achievement_completed", "streak_milestone", "leaderboard_rank")[i % 3]
        if kind == "achievement_completed":
            data: dict[str, Any] = {"achievement_id": ACHIEVEMENT}
            occurrence = ACHIEVEMENT
            again: dict[str, Any] = data
            miss: dict[str, Any] = {"achievement_id": "some-other-achievement"}
        elif kind == "streak_milestone":
            data = {"streak_id": STREAK, "streak_length": MILESTONE, "streak_started_at": started}
            occurrence = f"{STREAK}@{datetime.fromisoformat(started).isoformat()}"
            again = {**data, "streak_length": MILESTONE + 3}
            miss = {"streak_id": STREAK, "streak_length": MILESTONE - 1}
        else:
            data = {"leaderboard_id": LEADERBOARD, "rank": 1 + i % RANK, "period_id": "w42"}
            occurrence = f"{LEADERBOARD}@w42"
            again = {**data, "rank": 1}
            miss = {"leaderboard_id": LEADERBOARD, "rank": RANK + 1, "period_id": "w42"}
        key = issue_keys.event(scenario.definitions[kind], user, occurrence)
        record = Inbound(kind, user, json.dumps(_event(tenant, user, kind, data)).encode(), key)
        main.append(record)
        later = len(main) + rng.randint(1, users // 2 + 1)
        if i % 7 == 0:
            extra.append((later, record))
        if i % 11 == 0:
            value = json.dumps(_event(tenant, user, kind, again)).encode()
            extra.append((later, Inbound(kind, user, value, key)))
        if i % 13 == 0:
            value = json.dumps(_event(tenant, user, kind, miss)).encode()
            extra.append((later, Inbound(kind, user, value, None)))
    by_position: dict[int, list[Inbound]] = {}
    for position, record in extra:
        by_position.setdefault(position, []).append(record)
    for position, record in enumerate(main, start=1):
        stream.records.append(record)
        stream.records.extend(by_position.pop(position, []))
    for position in sorted(by_position):
        stream.records.extend(by_position[position])
    return stream


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5
    )
    await p.start()
    yield p
    await p.stop()


async def produce(producer: AIOKafkaProducer, topics: Topics, records: list[Inbound]) -> None:
    """Send and wait for every acknowledgement; key = user id, so users spread over partitions."""
    futures = [
        await producer.send(topics.for_type(r.event_type), r.value, key=r.user_id.encode())
        for r in records
    ]
    await asyncio.gather(*futures)


# --------------------------------------------------------------------------- outcome checks


def of_tenant(tenant: str) -> dict[str, Any]:
    """The tenant's coupons as a range of the `by_definition` list key (its prefix is the
    tenant): an index range. A filter on `tenant_id` (no index) or `count_documents` scans
    every coupon, and on the embedded MongoDB, which answers one request at a time, a wait
    polling such a scan holds up the worker under test as the session's database grows."""
    start = tenant + list_keys.SEP
    return {BY_DEFINITION: {"$gte": start, "$lt": start + list_keys.END}}


async def coupon_count(container: Container, tenant: str) -> int:
    return len([d async for d in container.mongo.coupons.find(of_tenant(tenant), {"_id": 1})])


async def stored_at_least(container: Container, tenant: str, count: int) -> bool:
    return await coupon_count(container, tenant) >= count


async def stored_coupons(container: Container, tenant: str) -> list[dict[str, Any]]:
    cursor = container.mongo.coupons.find(
        of_tenant(tenant),
        {"issue_key": 1, "trigger_event_id": 1, "user_id": 1, "definition_id": 1, "code": 1},
    )
    return [doc async for doc in cursor]


class GroupProgress:
    """Whether a consumer group committed the end offsets of its topics (one admin client and
    one consumer, kept for the polls of a wait)."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], partitions: int) -> None:
        self._group = group
        self._tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def __aenter__(self) -> "GroupProgress":
        await self._admin.start()
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def caught_up(self) -> bool:
        committed = await self._admin.list_consumer_group_offsets(self._group, partitions=self._tps)
        ends = await self._consumer.end_offsets(self._tps)
        return all(
            tp in committed and committed[tp].offset >= ends[tp] for tp in self._tps if ends[tp]
        )


async def read_to_end(
    bootstrap: str,
    topic: str,
    partitions: int,
    tenant: str,
    isolation_level: str = "read_uncommitted",
) -> list[dict[str, Any]]:
    """Every record of `topic` for `tenant`, from offset 0 to the end offsets of now (under
    read_committed, the last stable offsets): duplicates included, unlike a read for a count."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        end = time.monotonic() + 30

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            assert time.monotonic() < end, "could not read the topic to its end in 30 s"
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    headers = {k: v.decode() for k, v in record.headers}
                    if headers.get("tenant_id") != tenant:
                        continue
                    event = json.loads(record.value)
                    event["_key"] = record.key.decode() if record.key else None
                    event["_headers"] = headers
                    found.append(event)
    finally:
        await consumer.stop()
    return found


async def announced(
    settings: Settings, tenant: str, isolation_level: str = "read_uncommitted"
) -> list[dict[str, Any]]:
    """The tenant's `coupon.issued` records, read to the end of the topic."""
    assert settings.kafka_bootstrap_servers
    return await read_to_end(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_issued,
        settings.topic_partitions,
        tenant,
        isolation_level,
    )


async def wait_for_all(
    container: Container,
    settings: Settings,
    workers: Workers,
    tenant: str,
    expected: int,
    deadline_s: float = 60.0,
) -> None:
    """Every expected coupon stored and the group caught up on the inbound topics."""
    assert settings.kafka_bootstrap_servers
    bootstrap = settings.kafka_bootstrap_servers

    progress = GroupProgress(
        bootstrap, workers.group, workers.topics.all, settings.topic_partitions
    )

    async def done() -> bool:
        if await coupon_count(container, tenant) < expected:
            return False
        return await progress.caught_up()

    async with progress:
        try:
            await wait_until(done, deadline_s=deadline_s, step_s=0.1)
        except AssertionError as exc:
            count = await coupon_count(container, tenant)
            raise AssertionError(f"{exc}: {count}/{expected} coupons stored") from None


def check_stored(docs: list[dict[str, Any]], stream: EventStream) -> None:
    """Exactly one coupon per matching (definition, user, occurrence), each issued by one of
    the records of its occurrence."""
    keys = [d["issue_key"] for d in docs]
    assert len(keys) == len(set(keys)), "two coupons with one issue key"
    expected = stream.expected
    assert set(keys) == expected, (
        f"missing {len(expected - set(keys))}, unexpected {len(set(keys) - expected)}"
    )
    pairs = [(d["definition_id"], d["user_id"]) for d in docs]
    assert len(pairs) == len(set(pairs)), "two coupons for one (definition, user, occurrence)"
    triggers = [d["trigger_event_id"] for d in docs]
    assert len(triggers) == len(set(triggers)), "one inbound event issued two coupons"
    sent = {json.loads(r.value)["event_id"]: r for r in stream.records}
    for doc in docs:
        record = sent[doc["trigger_event_id"]]
        assert (record.issue_key, record.user_id) == (doc["issue_key"], doc["user_id"])


def check_announced(
    docs: list[dict[str, Any]], events: list[dict[str, Any]], exactly_once: bool
) -> dict[str, int]:
    """Every stored coupon announced (at least once, or exactly once), each announcement the
    same record: one event_id per coupon, derived from its id; nothing announced that is not
    stored. Returns announcements per coupon id."""
    stored = {d["_id"]: d for d in docs}
    per_coupon: dict[str, int] = {}
    for event in events:
        coupon_id = event["coupon_id"]
        per_coupon[coupon_id] = per_coupon.get(coupon_id, 0) + 1
        assert coupon_id in stored, f"announced coupon {coupon_id} is not stored"
        doc = stored[coupon_id]
        assert event["event_id"] == outbound_event_id("coupon.issued", coupon_id)
        assert event["_headers"]["event_id"] == event["event_id"]
        assert event["_headers"]["event_type"] == "coupon.issued"
        assert event["_key"] == doc["user_id"] == event["user_id"]
        assert (event["code"], event["definition_id"]) == (doc["code"], doc["definition_id"])
        assert event["trigger_event_id"] == doc["trigger_event_id"]
        assert event["source"] == "event"
    missing = set(stored) - set(per_coupon)
    assert not missing, f"{len(missing)} stored coupons never announced"
    if exactly_once:
        repeated = {c: n for c, n in per_coupon.items() if n > 1}
        assert not repeated, f"{len(repeated)} coupons announced more than once"
    return per_coupon


async def issued_high_watermark(consumer: AIOKafkaConsumer, settings: Settings) -> int:
    """Records (of any tenant, committed or not) appended to `coupon.issued` so far."""
    tps = [
        TopicPartition(settings.topic_coupons_issued, p) for p in range(settings.topic_partitions)
    ]
    return sum((await consumer.end_offsets(tps)).values())


async def kill_rounds(
    workers: Workers,
    producer: AIOKafkaProducer,
    container: Container,
    settings: Settings,
    tenant: str,
    chunks: list[list[Inbound]],
    rng: random.Random,
    worker_id: str,
    exactly_once: bool = False,
) -> list[tuple[str, int, int]]:
    """Per chunk: the chunk is produced (the stream goes on), the worker (same id every time)
    starts, and is SIGKILLed at a random point before the end of the stream: once it stored a
    random part of the coupons due so far (a kill during or right after a bulk insert), or, in
    every other round, once it appended a random number of `coupon.issued` records (a kill
    between the produce and the commit, or inside an open transaction). Returns per kill the
    trigger, its threshold and the coupons stored when the process was dead."""
    kills: list[tuple[str, int, int]] = []
    produced: list[Inbound] = []
    offsets = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await offsets.start()
    try:
        for round_no, chunk in enumerate(chunks):
            await produce(producer, workers.topics, chunk)
            produced += chunk
            worker = await workers.start_ready(worker_id, exactly_once)
            before = await coupon_count(container, tenant)
            due = EventStream.coupons_of(produced)
            assert before < due, f"nothing left to issue in this round: {before}/{due}"
            step = rng.randint(1, max(1, (due - before) * 2 // 3))
            if round_no % 2 == 0:
                trigger, target = "stored", before + step

                async def reached(target: int = target) -> bool:
                    return await coupon_count(container, tenant) >= target
            else:
                trigger, target = "produced", step
                base = await issued_high_watermark(offsets, settings)

                async def reached(target: int = target, base: int = base) -> bool:
                    return await issued_high_watermark(offsets, settings) - base >= target

            await wait_until(reached, deadline_s=40, step_s=0.02)
            worker.kill()
            assert worker.proc.returncode == -signal.SIGKILL
            kills.append((trigger, target, await coupon_count(container, tenant)))
    finally:
        await offsets.stop()
    return kills


@pytest.fixture
def rng() -> Iterator[random.Random]:
    seed = random.randrange(2**32)
    yield random.Random(seed)
    print(f"random seed: {seed}")


def log_events(worker: WorkerProcess, name: str) -> list[dict[str, Any]]:
    """The worker's JSON log lines of one event (`batch_processed`, `partitions_assigned`)."""
    found = []
    for line in worker.log_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("event") == name:
            found.append(entry)
    return found


def processed(worker: WorkerProcess) -> int:
    """Records the worker processed and committed (its `batch_processed` lines)."""
    return sum(int(e["records"]) for e in log_events(worker, "batch_processed"))
