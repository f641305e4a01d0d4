"""The event worker end to end, on the embedded Kafka and MongoDB, driven as users drive it:
definitions through the HTTP API, JSON records on the inbound topics, coupons in MongoDB and
`coupon.issued` records out. One worker runs for the whole module.

All tests share the session's topics: each filters by its own fresh tenant (and user ids).
"""

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition
from prometheus_client import REGISTRY

from consumers.decode import decode
from consumers.health import HealthServer
from consumers.loop import Worker
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.codes import UPPER_ALPHABET
from phoenix_coupons.settings import Settings
from tests.support import read_events, wait_until

Headers = list[tuple[str, bytes]]
WORKER_STOP_S = 15.0
# An API change reaches the worker within 5 s.
REFRESH_BOUND_S = 5.0

# Every tenant this module issues coupons in: the replay test counts their coupons.
TENANTS: set[str] = set()


# --- fixtures -------------------------------------------------------------------------------


async def _start(worker: Worker) -> "asyncio.Task[None]":
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.ready or task.done())
    if task.done():
        task.result()  # raises what stopped it
    assert worker.ready
    return task


async def _stop(worker: Worker, task: "asyncio.Task[None]") -> None:
    worker.request_stop()
    await asyncio.wait_for(task, WORKER_STOP_S)


@pytest.fixture(scope="module")
async def worker(container: Container) -> AsyncIterator[Worker]:
    """The worker of the service, with the service's settings (definitions refreshed every
    `definitions_refresh_seconds`), for the whole module."""
    w = container.worker()
    task = await _start(w)
    yield w
    await _stop(w, task)


@pytest.fixture(scope="module")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await p.start()
    yield p
    await p.stop()


@pytest.fixture(scope="module")
async def kafka_admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    yield admin
    await admin.close()


# --- helpers --------------------------------------------------------------------------------


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def event(
    event_type: str, tenant: str, user: str, data: dict[str, Any], event_id: str | None = None
) -> dict[str, Any]:
    return {
        "event_id": event_id or uid("evt"),
        "event_type": event_type,
        "tenant_id": tenant,
        "user_id": user,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }


def topic_of(settings: Settings, event_type: str) -> str:
    return {
        "achievement_completed": settings.topic_achievements,
        "streak_milestone": settings.topic_streaks,
        "leaderboard_rank": settings.topic_leaderboards,
    }[event_type]


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    value: bytes,
    key: str,
    headers: Headers | None = None,
) -> RecordMetadata:
    return await producer.send_and_wait(topic, value, key=key.encode(), headers=headers or [])


async def produce_event(
    producer: AIOKafkaProducer, settings: Settings, payload: dict[str, Any]
) -> RecordMetadata:
    topic = topic_of(settings, payload["event_type"])
    return await produce(producer, topic, json.dumps(payload).encode(), payload["user_id"])


async def create_definition(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    tenant: str,
    reward: dict[str, Any],
    trigger: str,
    trigger_config: dict[str, Any],
    prefix: str,
    length: int = 8,
    shape: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`shape`: the code's fields instead of `prefix` and `length` (a pattern, a charset)."""
    auto = {"enabled": True, "trigger": trigger, "trigger_config": trigger_config}
    body: dict[str, Any] = {
        "name": f"auto {trigger}",
        "config": {
            "reward_item_id": reward["item_id"],
            "code_format": "random",
            **(shape or {"code_prefix": prefix, "code_length": length}),
            "usage_limit": {"limit_type": "per_user", "max_uses": 1},
            "auto_generate": auto,
        },
    }
    response = await client.post(
        f"/v1/tenants/{tenant}/coupons", json=body, headers=admin["headers"]
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["status"] == "active"
    assert created["config"]["auto_generate"] == auto
    TENANTS.add(tenant)
    return created


def cached_ids(container: Container, sample: dict[str, Any]) -> set[str]:
    """Ids of the definitions the worker's in-memory index matches `sample` against now."""
    found = container.definition_cache.index().match(
        decode(json.dumps(sample).encode()), datetime.now(UTC)
    )
    return {m.definition.id for m in found}


async def until_cached(
    container: Container, sample: dict[str, Any], *definitions: dict[str, Any]
) -> None:
    """The worker matches `sample` against `definitions` (the cache refreshed)."""
    ids = {d["id"] for d in definitions}
    await wait_until(lambda: ids <= cached_ids(container, sample), deadline_s=REFRESH_BOUND_S)


async def until_dropped(
    container: Container, sample: dict[str, Any], definition: dict[str, Any]
) -> None:
    await wait_until(
        lambda: definition["id"] not in cached_ids(container, sample),
        deadline_s=REFRESH_BOUND_S,
    )


async def coupons_of(container: Container, tenant: str, **query: Any) -> list[dict[str, Any]]:
    cursor = container.mongo.coupons.find({"tenant_id": tenant, **query})
    return [doc async for doc in cursor]


async def until_coupons(
    container: Container, tenant: str, count: int, **query: Any
) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        found = await coupons_of(container, tenant, **query)
        return found if len(found) >= count else None

    found: list[dict[str, Any]] = await wait_until(enough)
    assert len(found) == count, found
    return found


async def until_announced(container: Container, tenant: str) -> None:
    """The worker's announced marks passed the records of every coupon of the tenant (the
    step after the commit): a replay of those records announces nothing again."""

    async def marks_passed() -> bool:
        records = [
            c["trigger_record"]
            async for c in container.mongo.coupons.find(
                {"tenant_id": tenant, "source": "event"}, {"trigger_record": 1}
            )
        ]
        marks = {
            d["_id"]: d.get("offset", 0) async for d in container.mongo.announced_offsets.find({})
        }
        return all(marks.get(r.rsplit(":", 1)[0], 0) > int(r.rsplit(":", 1)[1]) for r in records)

    await wait_until(marks_passed)


async def committed(
    kafka_admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    offsets = await kafka_admin.list_consumer_group_offsets(group, partitions=partitions)
    return {tp: (meta.offset if meta is not None else -1) for tp, meta in offsets.items()}


async def until_processed(
    kafka_admin: AIOKafkaAdminClient, group: str, *records: RecordMetadata
) -> None:
    """The group committed past `records`: their coupons are stored, their coupon.issued and
    dead letters acknowledged by Kafka."""
    want = {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        want[tp] = max(want[tp], r.offset + 1)

    async def done() -> bool:
        have = await committed(kafka_admin, group, list(want))
        return all(have.get(tp, -1) >= offset for tp, offset in want.items())

    await wait_until(done, step_s=0.1)


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its current end (however many there are)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            positions = [await consumer.position(tp) for tp in partitions]
            return any(pos < end[tp] for pos, tp in zip(positions, partitions, strict=True))

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for rs in batch.values():
                records += [r for r in rs if r.offset < end[TopicPartition(r.topic, r.partition)]]
    finally:
        await consumer.stop()
    return records


async def issued_of(settings: Settings, tenant: str) -> list[dict[str, Any]]:
    """All coupon.issued records of `tenant` now in the topic."""
    assert settings.kafka_bootstrap_servers
    found = []
    for r in await read_all(settings.kafka_bootstrap_servers, settings.topic_coupons_issued):
        body = json.loads(r.value)
        if body["tenant_id"] == tenant:
            body["_key"] = r.key.decode() if r.key else None
            body["_headers"] = {k: v.decode() for k, v in r.headers}
            found.append(body)
    return found


def assert_code(code: str, prefix: str, length: int) -> None:
    assert code.startswith(prefix), code
    assert len(code) == len(prefix) + length, code
    assert set(code[len(prefix) :]) <= set(UPPER_ALPHABET), code


# --- end to end per trigger -----------------------------------------------------------------

TRIGGERS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("achievement_completed", {"achievement_id": "first-win"}, {"achievement_id": "first-win"}),
    (
        "streak_milestone",
        {"streak_id": "daily-login", "milestone_threshold": 7},
        {
            "streak_id": "daily-login",
            "streak_length": 7,
            "streak_started_at": "2025-01-09T00:00:00Z",
        },
    ),
    (
        "leaderboard_rank",
        {"leaderboard_id": "weekly", "rank_threshold": 3},
        {"leaderboard_id": "weekly", "rank": 3, "period_id": "2025-W03"},
    ),
]


@pytest.mark.parametrize(
    ("trigger", "trigger_config", "data"), TRIGGERS, ids=[t[0] for t in TRIGGERS]
)
async def test_a_matching_event_issues_one_coupon_and_announces_it(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    trigger: str,
    trigger_config: dict[str, Any],
    data: dict[str, Any],
) -> None:
    definition = await create_definition(
        client, admin, tenant, reward, trigger, trigger_config, prefix="AUTO-", length=6
    )
    user = uid("user")
    record = event(trigger, tenant, user, data)
    await until_cached(container, record, definition)

    meta = await produce_event(producer, settings, record)
    assert meta.topic == topic_of(settings, trigger)

    (coupon,) = await until_coupons(container, tenant, 1)
    assert coupon["source"] == "event"
    assert coupon["kind"] == "issued"
    assert coupon["status"] == "active"
    assert coupon["trigger_event_id"] == record["event_id"]
    assert coupon["user_id"] == user
    assert coupon["definition_id"] == definition["id"]
    assert coupon["reward_item_id"] == reward["item_id"]
    assert_code(coupon["code"], "AUTO-", 6)

    (issued,) = await read_events(
        settings.kafka_bootstrap_servers or "",
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant,
        count=1,
    )
    assert issued["_key"] == user
    assert issued["_headers"]["event_type"] == "coupon.issued"
    assert issued["_headers"]["tenant_id"] == tenant
    assert issued["_headers"]["event_id"] == issued["event_id"]
    assert issued["event_type"] == "coupon.issued"
    assert issued["coupon_id"] == coupon["_id"]
    assert issued["code"] == coupon["code"]
    assert issued["user_id"] == user
    assert issued["definition_id"] == definition["id"]
    assert issued["reward_item_id"] == reward["item_id"]
    assert issued["source"] == "event"
    assert issued["trigger_event_id"] == record["event_id"]

    # Once the offsets are committed, the coupon is announced exactly once.
    await until_processed(kafka_admin, settings.consumer_group, meta)
    assert [e["coupon_id"] for e in await issued_of(settings, tenant)] == [coupon["_id"]]
    await until_announced(container, tenant)


async def test_one_event_issues_a_coupon_per_matching_definition(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    cfg = {"achievement_id": "boss"}
    gold = await create_definition(client, admin, tenant, reward, "achievement_completed", cfg, "G")
    silver = await create_definition(
        client, admin, tenant, reward, "achievement_completed", cfg, "S", length=10
    )
    users = [uid("user"), uid("user")]
    records = [event("achievement_completed", tenant, u, cfg) for u in users]
    await until_cached(container, records[0], gold, silver)

    metas = [await produce_event(producer, settings, r) for r in records]

    coupons = await until_coupons(container, tenant, 4)
    await until_processed(kafka_admin, settings.consumer_group, *metas)
    by_pair = {(c["definition_id"], c["user_id"]): c for c in coupons}
    assert set(by_pair) == {(d["id"], u) for d in (gold, silver) for u in users}
    for user, record in zip(users, records, strict=True):
        assert_code(by_pair[(gold["id"], user)]["code"], "G", 8)
        assert_code(by_pair[(silver["id"], user)]["code"], "S", 10)
        assert by_pair[(gold["id"], user)]["trigger_event_id"] == record["event_id"]
    issued = await issued_of(settings, tenant)
    assert sorted(e["coupon_id"] for e in issued) == sorted(c["_id"] for c in coupons)


async def test_the_worker_issues_codes_of_the_definition_s_pattern_and_charset(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    cfg = {"achievement_id": "patterned"}
    shapes = {
        "WIN-{udigit:4}-{uletter:4}": ({"code_pattern": "WIN-####-????"}, r"WIN-[2-9]{4}-[A-Z]{4}"),
        "N{digit:6}": (  # the space ignores case
            {"code_pattern": "n******", "charset": "numeric", "case_sensitive": True},
            r"n[0-9]{6}",
        ),
    }
    made = {
        space: await create_definition(
            client, admin, tenant, reward, "achievement_completed", cfg, "", shape=shape
        )
        for space, (shape, _) in shapes.items()
    }
    users = [uid("user") for _ in range(3)]
    records = [event("achievement_completed", tenant, u, cfg) for u in users]
    await until_cached(container, records[0], *made.values())
    for record in records:
        await produce_event(producer, settings, record)

    coupons = await until_coupons(container, tenant, 6)
    for space, (_, pattern) in shapes.items():
        mine = [c for c in coupons if c["definition_id"] == made[space]["id"]]
        assert sorted(c["user_id"] for c in mine) == sorted(users)
        assert all(re.fullmatch(pattern, c["code"]) for c in mine), mine
        assert {c["code_space"] for c in mine} == {space}
    announced = await read_events(
        settings.kafka_bootstrap_servers or "",
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant,
        count=6,
    )
    assert {e["coupon_id"]: e["code"] for e in announced} == {c["_id"]: c["code"] for c in coupons}
    await until_announced(container, tenant)


# --- events that match nothing --------------------------------------------------------------


async def test_non_matching_events_issue_nothing(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    achievement = await create_definition(
        client, admin, tenant, reward, "achievement_completed", {"achievement_id": "ach"}, "A"
    )
    streak = await create_definition(
        client,
        admin,
        tenant,
        reward,
        "streak_milestone",
        {"streak_id": "login", "milestone_threshold": 7},
        "S",
    )
    board = await create_definition(
        client,
        admin,
        tenant,
        reward,
        "leaderboard_rank",
        {"leaderboard_id": "weekly", "rank_threshold": 3},
        "L",
    )
    other_tenant = uid("t")
    user = uid("user")
    misses = [
        event("streak_milestone", tenant, user, {"streak_id": "login", "streak_length": 6}),
        event("leaderboard_rank", tenant, user, {"leaderboard_id": "weekly", "rank": 4}),
        event("achievement_completed", tenant, user, {"achievement_id": "other"}),
        event("streak_milestone", tenant, user, {"streak_id": "other", "streak_length": 99}),
        event("leaderboard_rank", tenant, user, {"leaderboard_id": "monthly", "rank": 1}),
        # The right ids in another tenant.
        event("achievement_completed", other_tenant, user, {"achievement_id": "ach"}),
        event("streak_milestone", other_tenant, user, {"streak_id": "login", "streak_length": 7}),
        event("leaderboard_rank", other_tenant, user, {"leaderboard_id": "weekly", "rank": 1}),
        # An achievement id differing in case only.
        event("achievement_completed", tenant, user, {"achievement_id": "ACH"}),
    ]
    hits = [
        event("achievement_completed", tenant, user, {"achievement_id": "ach"}),
        event("streak_milestone", tenant, user, {"streak_id": "login", "streak_length": 7}),
        event("leaderboard_rank", tenant, user, {"leaderboard_id": "weekly", "rank": 3}),
    ]
    for hit, definition in zip(hits, (achievement, streak, board), strict=True):
        await until_cached(container, hit, definition)

    metas = [await produce_event(producer, settings, r) for r in misses]
    await until_processed(kafka_admin, settings.consumer_group, *metas)
    assert await coupons_of(container, tenant) == []
    assert await coupons_of(container, other_tenant) == []

    # The same user, topics and definitions do issue for the matching events behind them.
    metas = [await produce_event(producer, settings, r) for r in hits]
    coupons = await until_coupons(container, tenant, 3)
    assert {c["trigger_event_id"] for c in coupons} == {r["event_id"] for r in hits}
    await until_processed(kafka_admin, settings.consumer_group, *metas)
    assert len(await issued_of(settings, tenant)) == 3
    assert await issued_of(settings, other_tenant) == []


# --- idempotency ----------------------------------------------------------------------------


async def test_the_same_event_delivered_twice_issues_one_coupon(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    cfg = {"achievement_id": "twice"}
    definition = await create_definition(
        client, admin, tenant, reward, "achievement_completed", cfg, "TW"
    )
    first, second = uid("user"), uid("user")
    a = event("achievement_completed", tenant, first, cfg)
    b = event("achievement_completed", tenant, second, cfg)
    await until_cached(container, a, definition)

    # Back to back (likely in one batch) ...
    metas = [await produce_event(producer, settings, a) for _ in range(2)]
    await until_processed(kafka_admin, settings.consumer_group, *metas)
    # ... and once more after it was processed and committed (another batch).
    metas = [await produce_event(producer, settings, a)]
    await until_processed(kafka_admin, settings.consumer_group, *metas)
    # A second user on the same key path: processed after the duplicates.
    metas = [await produce_event(producer, settings, b) for _ in range(2)]
    await until_processed(kafka_admin, settings.consumer_group, *metas)

    coupons = await coupons_of(container, tenant)
    assert sorted((c["user_id"], c["trigger_event_id"]) for c in coupons) == sorted(
        [(first, a["event_id"]), (second, b["event_id"])]
    )
    issued = await issued_of(settings, tenant)
    assert sorted(e["coupon_id"] for e in issued) == sorted(c["_id"] for c in coupons)


async def test_the_same_occurrence_with_a_new_event_id_issues_nothing_new(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    ach = await create_definition(
        client, admin, tenant, reward, "achievement_completed", {"achievement_id": "once"}, "A"
    )
    streak = await create_definition(
        client,
        admin,
        tenant,
        reward,
        "streak_milestone",
        {"streak_id": "login", "milestone_threshold": 3},
        "S",
    )
    board = await create_definition(
        client,
        admin,
        tenant,
        reward,
        "leaderboard_rank",
        {"leaderboard_id": "weekly", "rank_threshold": 10},
        "L",
    )
    user = uid("user")
    jan, feb = "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"

    def streak_event(length: int, started: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"streak_id": "login", "streak_length": length}
        if started:
            data["streak_started_at"] = started
        return event("streak_milestone", tenant, user, data)

    def board_event(rank: int, period: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"leaderboard_id": "weekly", "rank": rank}
        if period:
            data["period_id"] = period
        return event("leaderboard_rank", tenant, user, data)

    # (event, new occurrence?) in production order.
    stream: list[tuple[dict[str, Any], bool]] = [
        (event("achievement_completed", tenant, user, {"achievement_id": "once"}), True),
        (event("achievement_completed", tenant, user, {"achievement_id": "once"}), False),
        (streak_event(3, jan), True),
        (streak_event(4, jan), False),  # the same streak, longer
        (streak_event(30, jan), False),
        (streak_event(3, feb), True),  # a new streak of the same id
        (streak_event(5, None), True),  # no start: the streak id is the occurrence
        (streak_event(9, None), False),
        (board_event(10, "2025-W03"), True),
        (board_event(1, "2025-W03"), False),  # a better rank, same period
        (board_event(2, "2025-W04"), True),  # the next period
        (board_event(1, None), True),  # no period: the leaderboard id is the occurrence
        (board_event(5, None), False),
    ]
    await until_cached(container, stream[0][0], ach)
    await until_cached(container, stream[2][0], streak)
    await until_cached(container, stream[8][0], board)

    metas = [await produce_event(producer, settings, r) for r, _ in stream]
    await until_processed(kafka_admin, settings.consumer_group, *metas)

    coupons = await coupons_of(container, tenant)
    expected = sorted(r["event_id"] for r, new in stream if new)
    assert sorted(c["trigger_event_id"] for c in coupons) == expected
    issued = await issued_of(settings, tenant)
    assert sorted(e["trigger_event_id"] for e in issued) == expected


# --- validity window ------------------------------------------------------------------------


async def test_an_expired_definition_issues_nothing(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    cfg = {"achievement_id": "window"}
    definition = await create_definition(
        client, admin, tenant, reward, "achievement_completed", cfg, "EX"
    )
    url = f"/v1/tenants/{tenant}/coupons/{definition['id']}"
    now = datetime.now(UTC).replace(microsecond=0)  # MongoDB keeps milliseconds
    window = {
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "expires_at": (now + timedelta(days=30)).isoformat(),
    }
    updated = await client.put(url, json={"config": window}, headers=admin["headers"])
    assert updated.status_code == 200, updated.text
    first, second = uid("user"), uid("user")
    hit = event("achievement_completed", tenant, first, cfg)

    def cached_window() -> tuple[datetime | None, datetime | None] | None:
        found = container.definition_cache.index().match(
            decode(json.dumps(hit).encode()), datetime.now(UTC)
        )
        return next(
            ((m.definition.config.starts_at, m.definition.config.expires_at) for m in found),
            None,
        )

    # The update (a window) reaches the worker's cache, then the event issues a coupon that
    # carries the window.
    expected = (now - timedelta(days=1), now + timedelta(days=30))
    await wait_until(lambda: cached_window() == expected, deadline_s=REFRESH_BOUND_S)
    await produce_event(producer, settings, hit)
    (coupon,) = await until_coupons(container, tenant, 1)
    (issued,) = await read_events(
        settings.kafka_bootstrap_servers or "",
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant,
        count=1,
    )
    assert datetime.fromisoformat(issued["starts_at"]) == expected[0]
    assert datetime.fromisoformat(issued["expires_at"]) == expected[1]
    assert issued["coupon_id"] == coupon["_id"]

    # Expired a minute ago: the worker drops it, and the next event issues nothing.
    past = {"expires_at": (now - timedelta(minutes=1)).isoformat(), "starts_at": None}
    expired = await client.put(url, json={"config": past}, headers=admin["headers"])
    assert expired.status_code == 200, expired.text
    assert expired.json()["status"] == "active"
    late = event("achievement_completed", tenant, second, cfg)
    await until_dropped(container, late, definition)
    meta = await produce_event(producer, settings, late)
    await until_processed(kafka_admin, settings.consumer_group, meta)
    assert [c["user_id"] for c in await coupons_of(container, tenant)] == [first]
    assert [e["user_id"] for e in await issued_of(settings, tenant)] == [first]


# --- pause, archive -------------------------------------------------------------------------


async def test_a_paused_definition_issues_nothing_and_reactivation_resumes(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    cfg = {"streak_id": "login", "milestone_threshold": 3}
    definition = await create_definition(
        client, admin, tenant, reward, "streak_milestone", cfg, "P"
    )
    url = f"/v1/tenants/{tenant}/coupons/{definition['id']}"
    user = uid("user")

    def streak(started: str) -> dict[str, Any]:
        data = {"streak_id": "login", "streak_length": 3, "streak_started_at": started}
        return event("streak_milestone", tenant, user, data)

    before, during, after = (
        streak("2025-01-01T00:00:00Z"),
        streak("2025-02-01T00:00:00Z"),
        streak("2025-03-01T00:00:00Z"),
    )
    await until_cached(container, before, definition)
    await produce_event(producer, settings, before)
    await until_coupons(container, tenant, 1)

    paused = await client.put(f"{url}/status", json={"status": "paused"}, headers=admin["headers"])
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    # The pause reaches the worker within the refresh bound; an event after that issues nothing.
    await until_dropped(container, during, definition)
    meta = await produce_event(producer, settings, during)
    await until_processed(kafka_admin, settings.consumer_group, meta)
    coupons = await coupons_of(container, tenant)
    assert [c["trigger_event_id"] for c in coupons] == [before["event_id"]]

    active = await client.put(f"{url}/status", json={"status": "active"}, headers=admin["headers"])
    assert active.status_code == 200, active.text
    assert active.json()["status"] == "active"
    await until_cached(container, after, definition)
    meta = await produce_event(producer, settings, after)
    await until_processed(kafka_admin, settings.consumer_group, meta)
    coupons = await coupons_of(container, tenant)
    # The event consumed while paused is not issued after the fact.
    assert sorted(c["trigger_event_id"] for c in coupons) == sorted(
        [before["event_id"], after["event_id"]]
    )
    assert len(await issued_of(settings, tenant)) == 2

    # Archive it, so that replaying the topic later (another test) finds nothing to issue
    # for the event consumed while paused.
    archived = await client.delete(url, headers=admin["headers"])
    assert archived.status_code == 204, archived.text
    await until_dropped(container, during, definition)


async def test_an_archived_definition_issues_nothing(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    cfg = {"leaderboard_id": "season", "rank_threshold": 1}
    definition = await create_definition(
        client, admin, tenant, reward, "leaderboard_rank", cfg, "Z"
    )
    url = f"/v1/tenants/{tenant}/coupons/{definition['id']}"
    users = [uid("user") for _ in range(3)]
    records = [
        event("leaderboard_rank", tenant, u, {"leaderboard_id": "season", "rank": 1}) for u in users
    ]
    await until_cached(container, records[0], definition)
    await produce_event(producer, settings, records[0])
    await until_coupons(container, tenant, 1)

    archived = await client.delete(url, headers=admin["headers"])
    assert archived.status_code == 204, archived.text
    await until_dropped(container, records[1], definition)
    meta = await produce_event(producer, settings, records[1])
    await until_processed(kafka_admin, settings.consumer_group, meta)

    # Archiving is final: it cannot be re-activated, and still issues nothing.
    again = await client.put(f"{url}/status", json={"status": "active"}, headers=admin["headers"])
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "definition_archived"
    shown = await client.get(url, headers=admin["headers"])
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == "archived"
    meta = await produce_event(producer, settings, records[2])
    await until_processed(kafka_admin, settings.consumer_group, meta)

    coupons = await coupons_of(container, tenant)
    assert [c["trigger_event_id"] for c in coupons] == [records[0]["event_id"]]
    assert [e["user_id"] for e in await issued_of(settings, tenant)] == [users[0]]
    assert cached_ids(container, records[2]) == set()


# --- poison records -------------------------------------------------------------------------


async def test_poison_records_go_to_the_dlq_and_the_records_behind_them_are_processed(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    ach = await create_definition(
        client, admin, tenant, reward, "achievement_completed", {"achievement_id": "ok"}, "OK"
    )
    board = await create_definition(
        client,
        admin,
        tenant,
        reward,
        "leaderboard_rank",
        {"leaderboard_id": "weekly", "rank_threshold": 1},
        "LB",
    )
    user = uid("user")
    good_ach = event("achievement_completed", tenant, user, {"achievement_id": "ok"})
    good_board = event("leaderboard_rank", tenant, user, {"leaderboard_id": "weekly", "rank": 1})
    await until_cached(container, good_ach, ach)
    await until_cached(container, good_board, board)

    naive = {**good_ach, "event_id": uid("evt"), "occurred_at": "2025-01-15T10:00:00"}
    rank_0 = event("leaderboard_rank", tenant, user, {"leaderboard_id": "weekly", "rank": 0})
    poison: list[tuple[str, bytes, str]] = [
        (settings.topic_achievements, b"\xff\xfenot json {", "not_json"),
        (settings.topic_achievements, b'{"event_id": "x", "event_type": ', "not_json"),
        (
            settings.topic_achievements,
            json.dumps({**good_ach, "event_id": uid("evt"), "event_type": "level_up"}).encode(),
            "unknown_event_type",
        ),
        (
            settings.topic_achievements,
            json.dumps({k: v for k, v in good_ach.items() if k != "data"}).encode(),
            "schema_violation",
        ),
        (settings.topic_achievements, json.dumps(naive).encode(), "schema_violation"),
        (settings.topic_leaderboards, json.dumps(rank_0).encode(), "schema_violation"),
        (settings.topic_streaks, b"", "empty"),
    ]
    trace: Headers = [("trace_id", b"abc-123")]
    sent = [(await produce(producer, t, v, user, trace), v, k) for t, v, k in poison]
    # The good records behind them, on the same partitions (same key).
    good = [
        await produce_event(producer, settings, good_ach),
        await produce_event(producer, settings, good_board),
    ]
    for meta, _, _ in sent:
        if meta.topic in (settings.topic_achievements, settings.topic_leaderboards):
            same = good[0] if meta.topic == settings.topic_achievements else good[1]
            assert meta.partition == same.partition
            assert meta.offset < same.offset

    coupons = await until_coupons(container, tenant, 2)
    assert {c["trigger_event_id"] for c in coupons} == {
        good_ach["event_id"],
        good_board["event_id"],
    }
    await until_processed(kafka_admin, settings.consumer_group, *good, *(m for m, _, _ in sent))

    assert settings.kafka_bootstrap_servers
    dead = [
        r
        for r in await read_all(settings.kafka_bootstrap_servers, settings.topic_dlq)
        if r.key == user.encode()
    ]
    assert len(dead) == len(poison)
    by_source = {
        (h["dlq_source_topic"], int(h["dlq_source_offset"])): (r, h)
        for r in dead
        for h in [{k: v.decode() for k, v in r.headers}]
    }
    for meta, value, kind in sent:
        record, headers = by_source[(meta.topic, meta.offset)]
        assert record.value == value
        assert record.key == user.encode()
        assert headers["dlq_error_kind"] == kind
        assert headers["dlq_error"]
        assert headers["dlq_source_partition"] == str(meta.partition)
        assert datetime.fromisoformat(headers["dlq_failed_at"]).tzinfo is not None
        assert headers["trace_id"] == "abc-123"
    assert len(await issued_of(settings, tenant)) == 2


# --- metrics --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_metrics_count_events_and_coupons(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    cfg = {"streak_id": "metrics", "milestone_threshold": 2}
    definition = await create_definition(
        client, admin, tenant, reward, "streak_milestone", cfg, "M"
    )
    users = [uid("user") for _ in range(3)]
    hits = [
        event("streak_milestone", tenant, u, {"streak_id": "metrics", "streak_length": 2})
        for u in users
    ]
    miss = event("streak_milestone", tenant, users[0], {"streak_id": "metrics", "streak_length": 1})
    await until_cached(container, hits[0], definition)
    consumed = "phoenix_worker_events_consumed_total"
    streak_label = {"event_type": "streak_milestone"}
    before = {
        "consumed": sample(consumed, streak_label),
        "matched": sample("phoenix_worker_events_matched_total", streak_label),
        "issued": sample("phoenix_worker_coupons_issued_total"),
        "dead": sample("phoenix_worker_dead_letters_total", {"reason": "not_json"}),
    }

    metas = [await produce_event(producer, settings, r) for r in [*hits, miss]]
    metas.append(await produce(producer, settings.topic_streaks, b"nope", users[0]))
    await until_processed(kafka_admin, settings.consumer_group, *metas)
    await until_coupons(container, tenant, 3)

    # Other tests' records may be counted too (shared registry): at least ours are.
    assert sample(consumed, streak_label) >= before["consumed"] + 4
    assert sample("phoenix_worker_events_matched_total", streak_label) >= before["matched"] + 3
    assert sample("phoenix_worker_coupons_issued_total") >= before["issued"] + 3
    assert sample("phoenix_worker_dead_letters_total", {"reason": "not_json"}) >= before["dead"] + 1
    assert (sample("phoenix_worker_batch_size_count")) > 0

    # The same registry is what the worker's health server (standalone worker) and the API
    # (`phoenix-coupons run`) serve on /metrics.
    port = free_port()
    health = HealthServer("127.0.0.1", port, lambda: worker.ready)
    await health.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
            served = await http.get("/metrics")
            ready = await http.get("/readyz")
            alive = await http.get("/healthz")
            missing = await http.get("/nope")
    finally:
        await health.stop()
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found"})
    for response in (served, await client.get("/metrics")):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        lines = response.text.splitlines()
        issued = next(x for x in lines if x.startswith("phoenix_worker_coupons_issued_total "))
        assert float(issued.split()[1]) >= before["issued"] + 3
        consumed_line = f'{consumed}{{event_type="streak_milestone"}} '
        assert float(next(x for x in lines if x.startswith(consumed_line)).split()[1]) >= 4


# --- replay ---------------------------------------------------------------------------------


async def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def until_caught_up(
    kafka_admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]
) -> None:
    want = {tp: end for tp, end in ends.items() if end > 0}

    async def done() -> bool:
        have = await committed(kafka_admin, group, list(want))
        return all(have.get(tp, -1) >= end for tp, end in want.items())

    await wait_until(done, deadline_s=60, step_s=0.2)


async def event_coupons(container: Container) -> int:
    return await container.mongo.coupons.count_documents(
        {"tenant_id": {"$in": sorted(TENANTS)}, "source": "event"}
    )


async def test_replaying_the_topics_from_offset_0_issues_nothing_new(
    worker: Worker,
    container: Container,
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    definitions = [
        await create_definition(client, admin, tenant, reward, trigger, cfg, f"R{i}")
        for i, (trigger, cfg, _) in enumerate(TRIGGERS)
    ]
    user = uid("user")
    records = [event(trigger, tenant, user, data) for trigger, _, data in TRIGGERS]
    for record, definition in zip(records, definitions, strict=True):
        await until_cached(container, record, definition)
    for record in records:
        await produce_event(producer, settings, record)
    await until_coupons(container, tenant, 3)
    # A final non-matching record: once the group is past it, everything before is done.
    sentinel = event("achievement_completed", tenant, user, {"achievement_id": "none"})
    await produce_event(producer, settings, sentinel)
    await until_caught_up(
        kafka_admin, settings.consumer_group, await end_offsets(settings, worker.topics)
    )
    await until_announced(container, tenant)
    before = await event_coupons(container)
    issued_before = await issued_of(settings, tenant)
    assert len(issued_before) == 3

    group = uid("replay")
    replay = Container(settings.model_copy(update={"consumer_group": group, "worker_id": group}))
    second = replay.worker()
    try:
        task = await _start(second)
        try:
            # Everything now in the topics, with another group, from offset 0.
            ends = await end_offsets(settings, second.topics)
            await until_caught_up(kafka_admin, group, ends)
        finally:
            await _stop(second, task)
    finally:
        await replay.mongo.close()

    assert await event_coupons(container) == before
    assert len(await coupons_of(container, tenant)) == 3
    issued_after = await issued_of(settings, tenant)
    assert sorted(e["coupon_id"] for e in issued_after) == sorted(
        e["coupon_id"] for e in issued_before
    )
