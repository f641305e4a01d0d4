"""Records that cannot be processed: they go to the dead-letter topic, never block."""

from phoenix_coupons.domain.errors import PhoenixError


class PoisonRecord(PhoenixError):
    """`code` is machine-readable: not_json, unknown_event_type, schema_violation, ..."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)
