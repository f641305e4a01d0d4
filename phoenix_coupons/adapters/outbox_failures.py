"""Which send failures of an outbox record are final (the row is set aside, dead) and which are
transient (the row stays pending and the relay retries with backoff).

A record is dead only for a reason of its own: too large, not renderable, its topic confirmed
missing, or another non-retriable verdict of the broker on the produce request. Everything
about the connection, the producer's own state or the cluster's configuration (timeouts,
no brokers, sequence gaps, fencing, authorization) is transient: a new producer, the broker's
return or an operator's fix lets the record through, and marking every record dead for it
would drop a whole stream of events.
"""

from aiokafka.errors import (
    AuthenticationFailedError,
    BrokerResponseError,
    ClusterAuthorizationFailedError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTxnState,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RecordTooLargeError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownProducerId,
)

from phoenix_coupons.domain.errors import PhoenixError

TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
# Broker answers about the producer or the cluster's configuration, not about the record.
NOT_THE_RECORD = (
    OutOfOrderSequenceNumber,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTxnState,
    UnknownProducerId,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    SaslAuthenticationFailed,
    AuthenticationFailedError,
)


class Unsendable(PhoenixError):
    """A row whose record can never be sent; `code` is the dead record's stable reason
    (metrics, logs, `outbox_dead`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


def dead_reason(exc: BaseException) -> str | None:
    """The reason a record failing with `exc` can never be sent, or None: transient."""
    if isinstance(exc, Unsendable):
        return exc.code
    if isinstance(exc, TOO_LARGE):
        return "too_large"
    if isinstance(exc, NOT_THE_RECORD):
        return None
    if isinstance(exc, BrokerResponseError) and not exc.retriable:
        return "rejected"
    return None
