"""What the keyed requests (bulk generation, redeem) share: an `Idempotency-Key` replays the
first answer only for the same body, judged by the body's hash."""

import hashlib

from pydantic import BaseModel

from phoenix_coupons.domain.errors import FieldError, ValidationFailed

# Optional fields added to keyed bodies after keys were stored: left out of the hash while
# absent, so a retry of a request made before they existed still hashes as it did then.
ADDED_LATER = ("metadata", "count")


def request_hash(body: BaseModel) -> str:
    """The fingerprint of a request body: equal for equal bodies, whatever their JSON's key
    order or spacing was (the parsed model is hashed)."""
    absent = {f for f in ADDED_LATER if f in type(body).model_fields and getattr(body, f) is None}
    return hashlib.sha256(body.model_dump_json(exclude=absent).encode()).hexdigest()


def key_reused(message: str) -> ValidationFailed:
    """422 naming the header: the key came before with another body."""
    return ValidationFailed(
        message=message,
        code="idempotency_key_reused",
        details=[FieldError("Idempotency-Key", "already used with another body")],
    )
