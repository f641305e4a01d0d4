"""Which send failures set an outbox record aside (dead) and which keep it pending: the
decision the relay takes on real Kafka's errors, most of which the embedded one never sends."""

import asyncio

import pytest
from aiokafka import errors

from phoenix_coupons.adapters.outbox_failures import Unsendable, dead_reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        # The record itself: too large for the producer or the broker, or refused by it.
        (errors.MessageSizeTooLargeError("client side: over max_request_size"), "too_large"),
        (errors.MessageSizeTooLargeError(), "too_large"),  # the broker's MESSAGE_TOO_LARGE
        (errors.RecordListTooLargeError(), "too_large"),
        (errors.RecordTooLargeError(), "too_large"),
        (errors.CorruptRecordException(), "rejected"),
        (errors.InvalidTimestampError(), "rejected"),
        (errors.InvalidTopicError(), "rejected"),
        (errors.UnsupportedForMessageFormatError(), "rejected"),
        (Unsendable("unrenderable", "KeyError: 'code'"), "unrenderable"),
        (Unsendable("unknown_topic", "topic 't' does not exist"), "unknown_topic"),
        (Unsendable("redeem_dead", "its redeem is dead"), "redeem_dead"),
    ],
)
def test_a_record_that_can_never_be_sent_is_dead(error: BaseException, reason: str) -> None:
    assert dead_reason(error) == reason


@pytest.mark.parametrize(
    "error",
    [
        # Kafka unreachable, slow or electing leaders: retried.
        errors.KafkaConnectionError(),
        errors.KafkaTimeoutError(),  # not marked retriable by aiokafka, yet it passes
        errors.NoBrokersAvailable(),
        errors.RequestTimedOutError(),
        errors.NotLeaderForPartitionError(),
        errors.LeaderNotAvailableError(),
        errors.NotEnoughReplicasError(),
        errors.NotEnoughReplicasAfterAppendError(),
        errors.KafkaStorageError(),
        # Before its metadata wait confirms a missing topic, an unknown topic may be an outage.
        errors.UnknownTopicOrPartitionError(),
        # The producer's own state: a new producer fixes it.
        errors.OutOfOrderSequenceNumber(),
        errors.InvalidProducerEpoch(),
        errors.UnknownProducerId(),
        errors.InvalidProducerIdMapping(),
        errors.ProducerClosed(),
        errors.ProducerFenced(),
        # The cluster's configuration: an operator's fix lets every record through.
        errors.TopicAuthorizationFailedError(),
        errors.ClusterAuthorizationFailedError(),
        errors.SaslAuthenticationFailed(),
        # Not Kafka's at all.
        ConnectionResetError(),
        TimeoutError(),
        asyncio.CancelledError(),
    ],
)
def test_a_passing_failure_keeps_the_record_pending(error: BaseException) -> None:
    assert dead_reason(error) is None
