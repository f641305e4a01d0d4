"""Kafka plumbing shared by the relay and the worker, and the one place that lays out our
records: the events' (key user_id, JSON value, headers event_type, tenant_id, event_id,
content-type) and the dead letters' (the original key and bytes, the error in headers)."""

import asyncio
import time
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.structs import ConsumerRecord

from phoenix_coupons.domain.errors import PhoenixError
from phoenix_coupons.domain.events import OutboundEvent, coupon_issued
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.settings import ServiceSettings, Settings
from schemas.events import CouponIssued, DefinitionExhausted, GenerationJobCompleted

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OutboundRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


MAX_DEAD_LETTER_ERROR_CHARS = 2000


def event_record(event: OutboundEvent, topic: str) -> OutboundRecord:
    """An outbound event's record: same bytes however often it is built. Keyed by user, so
    a user's events keep their order on one partition; an event of a whole definition by
    the definition; an unassigned code's `coupon.issued` (no user) by its coupon id: a
    job's million codes spread over the partitions as its users' would."""
    if isinstance(event, DefinitionExhausted | GenerationJobCompleted):
        key = event.definition_id
    elif isinstance(event, CouponIssued):
        key = event.user_id if event.user_id is not None else event.coupon_id
    else:
        key = event.user_id
    return OutboundRecord(
        topic=topic,
        key=key.encode(),
        value=event.model_dump_json().encode(),
        headers=_headers(
            {
                "event_type": event.event_type,
                "tenant_id": event.tenant_id,
                "event_id": event.event_id,
                "content-type": "application/json",
            }
        ),
    )


def stored_parts(record: OutboundRecord) -> tuple[str | None, str, list[list[str]]]:
    """A record's key, value and headers as text, to store (an outbox entry): our records are
    UTF-8 JSON and ids, and text replaces where bytes would not (nx-27017 0.8.1 refuses a
    replacement holding bytes)."""
    key = None if record.key is None else record.key.decode()
    return key, record.value.decode(), [[k, v.decode()] for k, v in record.headers]


def stored_record(topic: str, key: object, value: object, headers: object) -> OutboundRecord:
    """A record stored by `stored_parts`, on `topic`. TypeError when what was stored is not
    a record's parts."""
    if not isinstance(value, str) or not (key is None or isinstance(key, str)):
        raise TypeError(f"key and value must be text, not {type(key)}, {type(value)}")
    if not isinstance(headers, list):
        raise TypeError(f"headers must be a list, not {type(headers)}")
    return OutboundRecord(
        topic,
        None if key is None else key.encode(),
        value.encode(),
        [(str(k), str(v).encode()) for k, v in headers],
    )


def issued_record(coupon: Coupon, topic: str) -> OutboundRecord:
    """The `coupon.issued` record of a coupon."""
    return event_record(coupon_issued(coupon), topic)


def dead_letter(
    record: ConsumerRecord[bytes, bytes], topic: str, code: str, message: str, failed_at: str
) -> OutboundRecord:
    """The original key and bytes, its headers (but an earlier dead-lettering's), and why."""
    kept = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
    return OutboundRecord(
        topic=topic,
        key=record.key,
        value=record.value or b"",
        headers=kept
        + _headers(
            {
                "dlq_error_kind": code,
                "dlq_error": message[:MAX_DEAD_LETTER_ERROR_CHARS],
                "dlq_source_topic": record.topic,
                "dlq_source_partition": str(record.partition),
                "dlq_source_offset": str(record.offset),
                "dlq_failed_at": failed_at,
            }
        ),
    )


def _headers(values: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in values.items()]


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


# The relay's record batches (aiokafka's default 16 KiB holds ~20 events): a job's 1,000
# events of a chunk in a few requests, half the relay's CPU a record (measured: 30,000
# events 1.5 -> 0.8 s of CPU), well under the broker's 1 MiB message limit.
RELAY_BATCH_BYTES = 256 * 1024


def relay_producer(bootstrap: str) -> AIOKafkaProducer:
    """The outbox relay's producer: `make_producer`'s, with batches of RELAY_BATCH_BYTES."""
    return make_producer(bootstrap, max_batch_size=RELAY_BATCH_BYTES)


def all_topics(settings: Settings) -> list[str]:
    return [
        settings.topic_achievements,
        settings.topic_streaks,
        settings.topic_leaderboards,
        settings.topic_coupons_issued,
        settings.topic_coupons_redeemed,
        settings.topic_coupons_expiry,
        settings.topic_dlq,
    ]


class TopicsUnavailable(PhoenixError):
    """The service's topics could not be created or verified before the deadline."""

    code = "topics_unavailable"


# Per-topic answers of CreateTopics that mean "done": none, or another process was first.
_CREATED = (0, TopicAlreadyExistsError.errno)


async def ensure_topics(settings: ServiceSettings) -> None:
    """Create the service's missing topics with `topic_partitions` partitions, retried until
    they all exist or `kafka_topics_deadline_seconds` passed (then `TopicsUnavailable`, naming
    the topics and the last cause). Kafka's metadata requests may auto-create a topic that is
    missing, with the broker's default partition count (1 on apache/kafka): a topic must
    exist before anything produces to or consumes from it. An existing topic with fewer
    partitions than the setting is reported (partitions are never removed, and adding some
    moves keys to other partitions: an operator's decision)."""
    deadline = settings.kafka_topics_deadline_seconds
    end = time.monotonic() + deadline
    attempt = 0
    while True:
        attempt += 1
        try:
            # No attempt outlives the deadline (a silent address can hold one for 40 s).
            async with asyncio.timeout(max(0.1, end - time.monotonic())):
                await _ensure_once(settings)
            return
        except (KafkaError, OSError, TimeoutError, _NotYet) as exc:
            cause = exc
        left = end - time.monotonic()
        if left <= 0:
            topics = ", ".join(all_topics(settings))
            reason = "no answer" if isinstance(cause, TimeoutError) else repr(cause)
            raise TopicsUnavailable(
                f"Kafka topics {topics} could not be created or verified on "
                f"{settings.kafka_bootstrap_servers} within {deadline:g} s "
                f"(PHOENIX_KAFKA_TOPICS_DEADLINE_SECONDS): {reason}"
            ) from cause
        pause = min(left, 0.2 * 2**attempt, 5.0)
        log.warning("kafka_topics_retry", attempt=attempt, error=repr(cause), retry_in_s=pause)
        await asyncio.sleep(pause)


class _NotYet(Exception):
    """Created, but not listed yet: look again."""


async def _ensure_once(settings: ServiceSettings) -> None:
    wanted = all_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        await admin.start()
        missing = [t for t in wanted if t not in set(await admin.list_topics())]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(t, settings.topic_partitions, settings.topic_replication_factor)
                    for t in missing
                ]
            )
            failed = [(e[0], e[1]) for e in response.topic_errors if e[1] not in _CREATED]
            if failed:
                first = for_code(failed[0][1])
                raise first(f"CreateTopics refused {failed}")
            log.info(
                "kafka_topics_created",
                topics=missing,
                partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
            unlisted = [t for t in missing if t not in set(await admin.list_topics())]
            if unlisted:
                raise _NotYet(f"created but not listed yet: {unlisted}")
        # Only topics known to exist are described: describing a missing one may create it.
        for topic in await admin.describe_topics(wanted):
            count = len(topic["partitions"])
            if count < settings.topic_partitions:
                log.warning(
                    "kafka_topic_partitions_below_setting",
                    topic=topic["topic"],
                    partitions=count,
                    expected=settings.topic_partitions,
                    hint="at most that many workers consume it; add partitions with "
                    "kafka-topics.sh --alter, or lower PHOENIX_TOPIC_PARTITIONS",
                )
    finally:
        await admin.close()
