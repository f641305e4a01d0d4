"""What every scenario shares: servers, fresh settings, input records, the definitions that
match them, and the watch on a consumer group's committed offsets."""

import asyncio
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from phoenix_coupons.adapters.kafka import ensure_topics
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings
from schemas.coupons import (
    AutoGenerate,
    CouponConfig,
    DefinitionCreate,
    TriggerConfig,
    UsageLimit,
)
from schemas.rewards import RewardItemCreate

TENANT = "bench-tenant"
ACHIEVEMENT = "ach-first-win"
STREAK = "streak-daily-login"
LEADERBOARD = "lb-weekly"
STREAK_THRESHOLD = 7
RANK_THRESHOLD = 10
SECRET = "bench-secret-key-not-for-production"


class BenchError(RuntimeError):
    """The run itself went wrong (not a missed target): exit non-zero."""


@dataclass(frozen=True)
class Servers:
    kafka: str
    mongodb: str

    @classmethod
    def from_env(cls) -> "Servers":
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        mongo = os.environ.get("MONGODB_URI")
        if not kafka or not mongo:
            raise BenchError(
                "KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI must be set: run `make bench`"
            )
        return cls(kafka, mongo)


@dataclass(frozen=True)
class Inputs:
    """The three inbound topics of a scenario and how far each partition reaches."""

    achievements: str
    streaks: str
    leaderboards: str
    ends: dict[TopicPartition, int]

    @property
    def topics(self) -> list[str]:
        return [self.achievements, self.streaks, self.leaderboards]

    @property
    def total(self) -> int:
        return sum(self.ends.values())


# Never written to: the secret key is given and the URLs are set (no services.env is read).
_DATA_DIR = Path(tempfile.gettempdir()) / "phoenix-bench"


def scenario_settings(servers: Servers, tag: str, inputs: Inputs | None = None) -> Settings:
    """A fresh database, consumer group and outbound topics; the inbound topics are the
    scenario's (fresh ones when `inputs` is None)."""
    run = f"{tag}-{uuid.uuid4().hex[:8]}"
    inbound = (
        (inputs.achievements, inputs.streaks, inputs.leaderboards)
        if inputs
        else (f"bench.{run}.achievements", f"bench.{run}.streaks", f"bench.{run}.leaderboards")
    )
    return Settings(
        kafka_bootstrap_servers=servers.kafka,
        mongodb_uri=servers.mongodb,
        mongodb_database=f"bench_{run}".replace("-", "_"),
        data_dir=_DATA_DIR,
        secret_key=SECRET,
        topic_achievements=inbound[0],
        topic_streaks=inbound[1],
        topic_leaderboards=inbound[2],
        topic_coupons_issued=f"bench.{run}.coupons.issued",
        topic_coupons_redeemed=f"bench.{run}.coupons.redeemed",
        topic_coupons_expiry=f"bench.{run}.coupons.expiry",
        topic_dlq=f"bench.{run}.dlq",
        consumer_group=f"bench.{run}",
        worker_id=f"bench-{run}",
    )


def event(kind: str, i: int, matching: bool) -> tuple[str, bytes, bytes]:
    """(event_id, key, value) of inbound event number `i`: one user per event, so a matching
    event issues exactly one coupon. Non-matching events name subjects no definition uses."""
    user = f"user-{i:07d}"
    event_id = str(uuid.uuid4())
    body: dict[str, Any] = {
        "event_id": event_id,
        "event_type": kind,
        "tenant_id": TENANT,
        "user_id": user,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if kind == "achievement_completed":
        body["data"] = {"achievement_id": ACHIEVEMENT if matching else f"ach-{i % 97}"}
    elif kind == "streak_milestone":
        body["data"] = {
            "streak_id": STREAK if matching else f"streak-{i % 89}",
            "streak_length": STREAK_THRESHOLD + i % 5,
            "streak_started_at": "2026-01-05T00:00:00+00:00",
        }
    else:
        body["data"] = {
            "leaderboard_id": LEADERBOARD if matching else f"lb-{i % 83}",
            "rank": 1 + i % RANK_THRESHOLD,
            "period_id": "2026-W02",
        }
    return event_id, user.encode(), json.dumps(body).encode()


KINDS = ("achievement_completed", "streak_milestone", "leaderboard_rank")


def topic_of(settings: Settings, kind: str) -> str:
    return {
        "achievement_completed": settings.topic_achievements,
        "streak_milestone": settings.topic_streaks,
        "leaderboard_rank": settings.topic_leaderboards,
    }[kind]


def fast_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=512 * 1024
    )


async def produce_inputs(settings: Settings, count: int, matching: bool) -> Inputs:
    """Create the topics and write `count` events, spread evenly over the three event types
    (each on its topic), as fast as Kafka takes them. Not timed."""
    await ensure_topics(settings)
    producer = fast_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    try:
        futures = []
        for i in range(count):
            kind = KINDS[i % 3]
            _, key, value = event(kind, i, matching)
            futures.append(await producer.send(topic_of(settings, kind), key=key, value=value))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    topics = [settings.topic_achievements, settings.topic_streaks, settings.topic_leaderboards]
    ends = await end_offsets(settings.kafka_bootstrap_servers or "", topics)
    if sum(ends.values()) != count:
        raise BenchError(f"produced {count} records, topics hold {sum(ends.values())}")
    return Inputs(topics[0], topics[1], topics[2], ends=ends)


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads the metadata of every topic
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
        return ends
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
    finally:
        await admin.close()


async def check_committed(bootstrap: str, group: str, ends: dict[TopicPartition, int]) -> None:
    """The group's committed offsets reach the end of every partition: nothing skipped."""
    committed = await committed_offsets(bootstrap, group)
    behind = {
        f"{tp.topic}:{tp.partition}": (committed.get(tp), end)
        for tp, end in ends.items()
        if end and committed.get(tp) != end
    }
    if behind:
        raise BenchError(f"group {group} did not commit the end of {behind}")


async def create_definitions(container: Container) -> int:
    """One reward and one auto-generate definition per trigger, through the services (as the
    API would), then the definition cache loaded: the worker matches from memory at once."""
    reward = await container.rewards.create(
        TENANT,
        RewardItemCreate(name="100 Bonus Points", reward_type="points", payload={"amount": 100}),
    )
    triggers = [
        ("achievement_completed", TriggerConfig(achievement_id=ACHIEVEMENT)),
        (
            "streak_milestone",
            TriggerConfig(streak_id=STREAK, milestone_threshold=STREAK_THRESHOLD),
        ),
        (
            "leaderboard_rank",
            TriggerConfig(leaderboard_id=LEADERBOARD, rank_threshold=RANK_THRESHOLD),
        ),
    ]
    for trigger, trigger_config in triggers:
        await container.definitions.create(
            TENANT,
            DefinitionCreate(
                name=f"bench {trigger}",
                config=CouponConfig(
                    reward_item_id=reward.item_id,
                    code_format="random",
                    code_prefix="B",
                    code_length=10,
                    usage_limit=UsageLimit(limit_type="per_user", max_uses=1),
                    auto_generate=AutoGenerate(
                        enabled=True, trigger=trigger, trigger_config=trigger_config
                    ),
                ),
            ),
        )
    await container.definition_cache.reload()
    size = container.definition_cache.index().size
    if size != len(triggers):
        raise BenchError(f"definition cache holds {size} definitions, expected {len(triggers)}")
    return size


def now() -> float:
    return time.perf_counter()
