"""Issue keys make issuing a coupon idempotent: a coupon's id is derived from its key, so the
unique `_id` index refuses a second coupon for the same key (no index of its own to keep up
on every insert)."""

import hashlib
import json
import uuid

from phoenix_coupons.domain.name_ids import name_id

COUPON_NAMESPACE = uuid.UUID("0b8c7f0e-5a4e-4d7b-9a61-3f2d8c1e6b52")


def coupon_id(issue_key: str) -> str:
    """The id of the coupon issued under `issue_key` (UUID v5): the same key, the same id."""
    return name_id(COUPON_NAMESPACE, issue_key)


def shared(definition_id: str) -> str:
    """The one shared custom code of a definition."""
    return f"shared:{definition_id}"


def bulk(definition_id: str, idempotency_key: str | None, position: int, nonce: str) -> str:
    """A keyed bulk call issues the same positions again on a retry after a crash; an unkeyed
    call issues new coupons every time (`nonce`: a fresh random id per coupon)."""
    if idempotency_key is None:
        return f"bulk:{nonce}"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"bulk:{definition_id}:{digest}:{position}"


def event(definition_id: str, user_id: str, occurrence: str) -> str:
    """At most one coupon per (definition, user, occurrence), however often the event comes.
    Hashed: ids may contain any character, and the key stays short."""
    raw = json.dumps([definition_id, user_id, occurrence])  # unambiguous whatever the ids hold
    return "evt:" + hashlib.sha256(raw.encode()).hexdigest()[:40]
