"""Outbound Kafka events. JSON, UTF-8, key = user_id, deduplicable by `event_id`."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

CouponSource = Literal["bulk", "event"]


class CouponIssued(BaseModel):
    """Published on `phoenix.coupons.issued` for every coupon issued, whatever its source."""

    event_id: str = Field(description="Stable across retries: derived from the coupon id.")
    event_type: Literal["coupon.issued"] = "coupon.issued"
    occurred_at: datetime = Field(description="When the coupon was issued (UTC).")
    tenant_id: str
    user_id: str
    coupon_id: str
    code: str
    definition_id: str
    reward_item_id: str
    source: CouponSource
    trigger_event_id: str | None = Field(
        default=None, description="The inbound event that caused the issue (source `event`)."
    )
    starts_at: datetime | None = None
    expires_at: datetime | None = None
