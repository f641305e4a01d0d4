"""The records a batch's outcome publishes: a `coupon.issued` record per coupon to announce
and a dead letter per record that cannot be processed. At least once they go out together;
exactly once, each with the input partition it comes from (its transaction)."""

from collections import defaultdict
from datetime import UTC, datetime

from aiokafka.structs import TopicPartition

from consumers.pipeline import Decoded, Outcome
from phoenix_coupons.adapters.kafka import OutboundRecord, dead_letter, issued_record

ByPartition = dict[TopicPartition, list[OutboundRecord]]


def outbound(outcome: Outcome, issued_topic: str, dlq_topic: str) -> list[OutboundRecord]:
    now = datetime.now(UTC).isoformat()
    return [issued_record(a.coupon, issued_topic) for a in outcome.announce] + [
        dead_letter(d.record, dlq_topic, d.code, d.message, now) for d in outcome.dead
    ]


def outbound_by_partition(
    work: Decoded, outcome: Outcome, issued_topic: str, dlq_topic: str
) -> ByPartition:
    """By the input partition of the record each comes from (`work`: what `outcome` is of)."""
    out: ByPartition = defaultdict(list)
    for announcement in outcome.announce:
        source = work.sources[announcement.pos]
        out[TopicPartition(source.topic, source.partition)].append(
            issued_record(announcement.coupon, issued_topic)
        )
    now = datetime.now(UTC).isoformat()
    for record, code, message in outcome.dead:
        out[TopicPartition(record.topic, record.partition)].append(
            dead_letter(record, dlq_topic, code, message, now)
        )
    return out
