"""A code's timeline (`GET .../codes/{code}/history`): its steps in time order."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.pages import next_after

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


class HistoryActor(BaseModel):
    type: ActorKind
    id: str | None = Field(
        description="The API key's id, or the inbound event's `event_id`; null for the scheduler."
    )


class HistoryEvent(BaseModel):
    at: datetime
    type: HistoryKind
    actor: HistoryActor | None = Field(
        description="Who made it happen; null when the service does not know (a definition's "
        "shared code, or a step stored before actors were kept)."
    )
    details: dict[str, Any] = Field(
        description="What the step carries: the issuing source, the bulk request's id, a "
        "rollback's reason, metadata, a reminder's lead time."
    )


class CodeHistory(BaseModel):
    code: str
    coupon_id: str
    events: list[HistoryEvent] = Field(description="Oldest first.")
    next_after: str | None = next_after()
