"""Kafka plumbing shared by the relay and the worker."""

import asyncio
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from phoenix_coupons.domain.events import coupon_issued
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OutboundRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def issued_record(coupon: Coupon, topic: str) -> OutboundRecord:
    """The `coupon.issued` record of a coupon: same bytes however often it is built."""
    event = coupon_issued(coupon)
    return OutboundRecord(
        topic=topic,
        key=event.user_id.encode(),
        value=event.model_dump_json().encode(),
        headers=[
            ("event_type", b"coupon.issued"),
            ("tenant_id", coupon.tenant_id.encode()),
            ("event_id", event.event_id.encode()),
            ("content-type", b"application/json"),
        ],
    )


async def send(producer: AIOKafkaProducer, record: OutboundRecord) -> "asyncio.Future[object]":
    """Queue a record without waiting for its acknowledgement; await the future for that."""
    fut: asyncio.Future[object] = await producer.send(
        record.topic, key=record.key, value=record.value, headers=record.headers
    )
    return fut


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
