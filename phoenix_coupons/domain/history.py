"""A code's timeline: what happened to it, when and by whom. Entries are written beside the
writes they tell of (through the outbox: an entry's history is stored when the entry is
readied, by its writer or by the sweep), so a code's story has no step its documents lack.
Issuance and revocation are read from the coupon itself. Ids are deterministic: a retried
write records the same entry once."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from phoenix_coupons.domain.models import Coupon
from schemas.history import ActorKind, HistoryKind

__all__ = [
    "CLOCK_SKEW",
    "Actor",
    "ActorKind",
    "HistoryEntry",
    "HistoryKind",
    "code_key",
    "coupon_steps",
    "range_end",
    "time_key",
]

# Steps are timed by the clocks of different processes (the worker issues, an API process
# redeems): a code's timeline starts this long before its coupon's issuance. What was stored
# under the code earlier still belongs to an earlier holder of the code (a definition's
# shared code changed, and the old code taken again): not this coupon's story.
CLOCK_SKEW = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made it happen: an API key (its id), an inbound event (its event id), or the
    expiry scheduler (no id)."""

    kind: ActorKind
    id: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """`ref`: the id of what the step made or changed (a redemption, a reservation, a
    coupon); `details`: what the step carries (a reason, metadata, a lead time)."""

    tenant_id: str
    code_norm: str
    at: datetime
    kind: HistoryKind
    ref: str
    actor: Actor | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def code_key(self) -> str:
        return code_key(self.tenant_id, self.code_norm)

    @property
    def id(self) -> str:
        """Sorts by code, then time: a code's timeline is one `_id` range."""
        return f"{time_key(self.code_key, self.at)}|{self.kind}|{self.ref}"


def code_key(tenant_id: str, code_norm: str) -> str:
    return f"{tenant_id}:{code_norm}"


def time_key(key: str, at: datetime) -> str:
    """The start of `at`'s millisecond in the timeline of the code `key`: every step's id
    at or after it sorts above it."""
    ms = max(0, int(at.timestamp() * 1000))
    return f"{key}|{ms:015d}"


def range_end(key: str) -> str:
    """Above every step id of the code `key`: `}` follows `|`, and no code holds either, so
    the range holds this code's steps only (not those of a longer code it starts)."""
    return key + "}"


def coupon_steps(coupon: Coupon) -> list[HistoryEntry]:
    """The steps read from the coupon itself, in time order: its issuance (by an inbound
    event, a bulk request or its definition) and its revocation."""
    details: dict[str, Any] = {
        "source": coupon.source,
        "kind": coupon.kind,
        "definition_id": coupon.definition_id,
    }
    if coupon.user_id is not None:
        details["user_id"] = coupon.user_id
    if coupon.request_id is not None:
        details["request_id"] = coupon.request_id
    by_event = coupon.source == "event"
    issuer_id = coupon.trigger_event_id if by_event else coupon.issued_by
    issuer = None if issuer_id is None else Actor("event" if by_event else "api_key", issuer_id)
    steps = [_step(coupon, coupon.issued_at, "issued", issuer, details)]
    if coupon.status == "revoked" and coupon.revoked_at is not None:
        revoker = None if coupon.revoked_by is None else Actor("api_key", coupon.revoked_by)
        steps.append(_step(coupon, coupon.revoked_at, "revoked", revoker, {}))
    return sorted(steps, key=lambda s: s.id)


def _step(
    coupon: Coupon,
    at: datetime,
    kind: HistoryKind,
    actor: Actor | None,
    details: Mapping[str, Any],
) -> HistoryEntry:
    return HistoryEntry(coupon.tenant_id, coupon.code_norm, at, kind, coupon.id, actor, details)
