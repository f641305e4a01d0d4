"""Every error the service raises on purpose, under one root. `code` is each error's stable,
machine-readable name (the API's `error`, a dead letter's `dlq_error_kind`, a dead outbox
record's `reason`, a metric's label); `message` says it for people. The API answers a
`DomainError` with the status of its class (api/errors.py); the others are for operators,
the worker loop and the services' own decisions.

PhoenixError                     code, message
├── DomainError                  a request the service refuses (4xx)
│   ├── ValidationFailed         422; details: the fields at fault
│   │   └── CodeSpaceExhausted
│   ├── NotFound                 404
│   │   └── CodeNotFound         the redemption refusal code_not_found
│   ├── Conflict                 409; conflicts: the clashing items
│   │   └── Refused              a redeem the rules refuse: code is the refusal reason
│   ├── Unauthenticated          401: credentials missing or not valid
│   ├── Forbidden                403: missing scope, another tenant
│   └── TooManyFailedLookups     429; retry_after
├── StorageRefusal               a write the database refused; the services decide what next
│   ├── SlotTaken
│   ├── DuplicateCodes
│   └── Contended                a write lost its race more often than it retries (503)
├── ConfigurationError           a setting missing or wrong at start-up
├── IndexConflict                adapters/mongo_schema.py
├── IndexesNotConverged          adapters/mongo.py
├── TopicsUnavailable            adapters/kafka.py
├── Unsendable                   adapters/outbox_failures.py: an outbox record never sendable
├── PoisonRecord                 consumers/poison.py: an inbound record that cannot be processed
├── WorkerFenced                 consumers/membership.py
├── MongoUnreachable             cli.py: a CLI command's MongoDB does not answer
└── ApiError                     cli_http.py: a `codes` command refused or unanswered (exit code)

Classes raised with a code of their own (PoisonRecord, Unsendable) take it first:
`PoisonRecord("not_json", message)`, and a refusal only its reason: `Refused("expired")`; the
others take the message first and may override their class's default code:
`NotFound(message, code="definition_not_found")`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from schemas.redemptions import REFUSALS, RefusalReason


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class PhoenixError(Exception):
    code: str = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class DomainError(PhoenixError):
    """The request breaks a rule of the service: the caller can act on `code`."""


class ValidationFailed(DomainError):
    """The input breaks a rule."""

    code = "validation_error"

    def __init__(
        self, message: str, code: str | None = None, details: Sequence[FieldError] = ()
    ) -> None:
        super().__init__(message, code)
        self.details = list(details)


class CodeSpaceExhausted(ValidationFailed):
    code = "code_space_exhausted"


class NotFound(DomainError):
    code = "not_found"


class CodeNotFound(NotFound):
    code: RefusalReason = "code_not_found"

    def __init__(self, message: str = REFUSALS["code_not_found"]) -> None:
        super().__init__(message)


class Conflict(DomainError):
    """The input is well formed but clashes with the stored state."""

    code = "conflict"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        conflicts: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(message, code)
        self.conflicts = list(conflicts)


class Refused(Conflict):
    """A redeem the rules refuse: `code` is the refusal reason, worded as schemas.redemptions
    words it."""

    code: RefusalReason

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__(REFUSALS[reason], reason)


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Forbidden(DomainError):
    code = "forbidden"


class TooManyFailedLookups(DomainError):
    """The caller's failed code look-ups reached the limit; every look-up of its key in the
    tenant is refused for `retry_after` more seconds."""

    code = "too_many_failed_lookups"

    def __init__(self, message: str, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class StorageRefusal(PhoenixError):
    """What a repository answers when the database refused a write for a rule it keeps."""


class SlotTaken(StorageRefusal):
    """Another redemption holds this slot (or this redemption id exists already)."""

    code = "slot_taken"


class DuplicateCodes(StorageRefusal):
    """An all-or-nothing insert hit a code (or issue key) that already exists."""

    code = "duplicate_codes"


class ConfigurationError(PhoenixError):
    code = "configuration_error"


class Contended(StorageRefusal):
    """Concurrent writers kept winning the same document's race (an upsert, a counter) past
    the retries: transient, so the API answers 503 with Retry-After, not a 500."""

    code = "contended"
