"""A code's timeline: what happened to it, when and by whom. Entries are written beside the
writes they tell of (through the outbox: an entry's history is stored when the entry is
readied, by its writer or by the sweep), so a code's story has no step its documents lack.
Issuance and revocation are read from the coupon itself. Ids are deterministic: a retried
write records the same entry once."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

HistoryKind = Literal[
    "issued",
    "reserved",
    "released",
    "redeemed",
    "rolled_back",
    "revoked",
    "expiring",
    "expired",
]
ActorKind = Literal["api_key", "event", "scheduler"]


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
        return f"{self.tenant_id}:{self.code_norm}"

    @property
    def id(self) -> str:
        """Sorts by code, then time: a code's timeline is one `_id` range."""
        ms = int(self.at.timestamp() * 1000)
        return f"{self.code_key}|{ms:015d}|{self.kind}|{self.ref}"
