"""Dead-letter records: the original bytes and key, the error in headers."""

from aiokafka.structs import ConsumerRecord

from phoenix_coupons.adapters.kafka import OutboundRecord

MAX_ERROR_CHARS = 2000


def dead_letter(
    record: ConsumerRecord[bytes, bytes], topic: str, kind: str, message: str, failed_at: str
) -> OutboundRecord:
    headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
    headers += [
        ("dlq_error_kind", kind.encode()),
        ("dlq_error", message[:MAX_ERROR_CHARS].encode()),
        ("dlq_source_topic", record.topic.encode()),
        ("dlq_source_partition", str(record.partition).encode()),
        ("dlq_source_offset", str(record.offset).encode()),
        ("dlq_failed_at", failed_at.encode()),
    ]
    return OutboundRecord(topic=topic, key=record.key, value=record.value or b"", headers=headers)
