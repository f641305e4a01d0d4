"""Records that cannot be processed: they go to the dead-letter topic, never block."""


class PoisonRecord(Exception):
    """`kind` is machine-readable: not_json, unknown_event_type, schema_violation, ..."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
