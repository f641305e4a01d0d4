"""What the keyed requests (bulk generation, redeem) share: an `Idempotency-Key` replays the
first answer only for the same body, judged by the body's hash."""

import hashlib

from pydantic import BaseModel

from phoenix_coupons.domain.errors import FieldError, ValidationFailed


def request_hash(body: BaseModel) -> str:
    """The fingerprint of a request body: equal for equal bodies, whatever their JSON's key
    order or spacing was (the parsed model is hashed)."""
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def key_reused(message: str) -> ValidationFailed:
    """422 naming the header: the key came before with another body."""
    return ValidationFailed(
        message=message,
        code="idempotency_key_reused",
        details=[FieldError("Idempotency-Key", "already used with another body")],
    )
