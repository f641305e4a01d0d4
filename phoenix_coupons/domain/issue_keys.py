"""Issue keys: the unique index that makes issuing a coupon idempotent."""

import hashlib
import json


def shared(definition_id: str) -> str:
    """The one shared custom code of a definition."""
    return f"shared:{definition_id}"


def bulk(definition_id: str, idempotency_key: str | None, position: int, coupon_id: str) -> str:
    """A keyed bulk call issues the same positions again on a retry after a crash; an unkeyed
    call issues new coupons every time."""
    if idempotency_key is None:
        return f"bulk:{coupon_id}"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"bulk:{definition_id}:{digest}:{position}"


def event(definition_id: str, user_id: str, occurrence: str) -> str:
    """At most one coupon per (definition, user, occurrence), however often the event comes.
    Hashed: ids may contain any character, and the key stays short."""
    raw = json.dumps([definition_id, user_id, occurrence])  # unambiguous whatever the ids hold
    return "evt:" + hashlib.sha256(raw.encode()).hexdigest()[:40]
