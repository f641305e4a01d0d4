"""Kafka plumbing shared by the relay and the worker."""

from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from phoenix_coupons.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OutboundRecord:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def make_producer(bootstrap: str, **overrides: object) -> AIOKafkaProducer:
    """Idempotent producer, acks from all in-sync replicas: no loss, no broker-side dupes."""
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "request_timeout_ms": 15_000,
        **overrides,
    }
    return AIOKafkaProducer(**options)


def all_topics(settings: Settings) -> list[str]:
    return [
        settings.topic_achievements,
        settings.topic_streaks,
        settings.topic_leaderboards,
        settings.topic_coupons_issued,
        settings.topic_coupons_redeemed,
        settings.topic_dlq,
    ]


async def ensure_topics(settings: Settings) -> None:
    """Create the service's topics that are missing (idempotent)."""
    assert settings.kafka_bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in all_topics(settings) if t not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(t, settings.topic_partitions, settings.topic_replication_factor)
                    for t in missing
                ]
            )
            log.info("kafka_topics_created", topics=missing)
    finally:
        await admin.close()
