"""The service's topics at start-up, on the embedded Kafka: created with
`PHOENIX_TOPIC_PARTITIONS` partitions, an existing topic with fewer partitions is reported,
and a Kafka that cannot be reached fails the worker's start-up within
`PHOENIX_KAFKA_TOPICS_DEADLINE_SECONDS`, naming the topics and the cause."""

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from structlog.testing import capture_logs

from phoenix_coupons.adapters.kafka import TopicsUnavailable, all_topics, ensure_topics
from phoenix_coupons.devservers import free_port
from phoenix_coupons.settings import Settings
from tests.conftest import TEST_SECRET


def own_topics(settings: Settings, **update: object) -> Settings:
    run = uuid.uuid4().hex[:8]
    names = {
        f"topic_{name}": f"test.topics-{run}.{name}"
        for name in (
            "coupons_issued",
            "coupons_redeemed",
            "coupons_expiry",
            "achievements",
            "streaks",
            "leaderboards",
            "dlq",
        )
    }
    return settings.model_copy(update={**names, **update})


async def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described}


async def test_missing_topics_are_created_with_the_configured_partitions(
    settings: Settings,
) -> None:
    assert settings.kafka_bootstrap_servers
    mine = own_topics(settings, topic_partitions=4)
    with capture_logs() as logs:
        await ensure_topics(mine)
    counts = await partition_counts(settings.kafka_bootstrap_servers, all_topics(mine))
    assert counts == dict.fromkeys(all_topics(mine), 4)
    assert not [e for e in logs if e["event"] == "kafka_topic_partitions_below_setting"]
    # Again, now that they exist: nothing to create, nothing to report.
    with capture_logs() as logs:
        await ensure_topics(mine)
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == []


async def test_an_existing_topic_with_fewer_partitions_is_reported(settings: Settings) -> None:
    """A topic created before (by a broker's auto-creation, with its default of 1 partition)
    keeps its partitions: the worker cannot use more consumers than it has. Reported."""
    assert settings.kafka_bootstrap_servers
    mine = own_topics(settings, topic_partitions=3)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(mine.topic_streaks, 1, 1)])
    finally:
        await admin.close()
    with capture_logs() as logs:
        await ensure_topics(mine)
    warnings = [e for e in logs if e["event"] == "kafka_topic_partitions_below_setting"]
    assert [(w["topic"], w["partitions"], w["expected"]) for w in warnings] == [
        (mine.topic_streaks, 1, 3)
    ]
    assert warnings[0]["log_level"] == "warning"
    assert "PHOENIX_TOPIC_PARTITIONS" in warnings[0]["hint"]
    counts = await partition_counts(settings.kafka_bootstrap_servers, all_topics(mine))
    assert counts[mine.topic_streaks] == 1
    assert {t: n for t, n in counts.items() if t != mine.topic_streaks} == dict.fromkeys(
        [t for t in all_topics(mine) if t != mine.topic_streaks], 3
    )


async def test_an_unreachable_kafka_fails_within_the_deadline_naming_topics_and_cause(
    settings: Settings,
) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    mine = own_topics(settings, kafka_bootstrap_servers=closed, kafka_topics_deadline_seconds=1.5)
    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(TopicsUnavailable) as failed:
        await ensure_topics(mine)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 6.0, elapsed
    message = str(failed.value)
    for topic in all_topics(mine):
        assert topic in message
    assert closed in message
    assert "1.5 s" in message
    assert "PHOENIX_KAFKA_TOPICS_DEADLINE_SECONDS" in message
    # The cause: what the last attempt met.
    assert "KafkaConnectionError" in message or "Unable to bootstrap" in message
    retries = [e for e in logs if e["event"] == "kafka_topics_retry"]
    assert len(retries) >= 2, logs


async def test_the_worker_process_exits_when_kafka_cannot_be_reached(
    settings: Settings, tmp_path: Path
) -> None:
    """`phoenix-coupons worker` fails start-up (non-zero exit, the error in its log) once the
    deadline has passed, instead of serving while its topics may be missing."""
    assert settings.mongodb_uri
    closed = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": closed,
        "MONGODB_URI": settings.mongodb_uri,
        "PHOENIX_MONGODB_DATABASE": settings.mongodb_database,
        "PHOENIX_SECRET_KEY": TEST_SECRET,
        "PHOENIX_DATA_DIR": str(tmp_path),
        "PHOENIX_WORKER_PORT": str(free_port()),
        "PHOENIX_KAFKA_TOPICS_DEADLINE_SECONDS": "1",
    }
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoenix_coupons",
        "worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode not in (0, None), out.decode()
    assert time.monotonic() - started < 20
    errors = [
        json.loads(line)
        for line in out.decode().splitlines()
        if line.startswith("{") and '"kafka_topics_unavailable"' in line
    ]
    assert errors, out.decode()
    assert errors[0]["level"] == "error"
    assert closed in errors[0]["error"] and "phoenix.streaks" in errors[0]["error"]
