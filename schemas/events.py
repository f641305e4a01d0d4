"""Outbound Kafka events. JSON, UTF-8, key = user_id, deduplicable by `event_id`."""

from datetime import datetime
from typing import Any, Literal

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
    metadata: dict[str, Any] | None = Field(
        default=None, description="The `metadata` of the bulk call that issued the coupon."
    )


class DefinitionExhausted(BaseModel):
    """Published on `phoenix.coupons.issued` once when a definition has issued as many
    coupons as its `config.issuance_limit.max_coupons` allows: matching events issue nothing
    more and bulk generation answers 409 until the limit is raised. Keyed by definition_id."""

    event_id: str = Field(description="Stable: derived from the definition id and the limit.")
    event_type: Literal["coupon.definition_exhausted"] = "coupon.definition_exhausted"
    occurred_at: datetime = Field(description="When the last coupon of the budget was taken.")
    tenant_id: str
    definition_id: str
    max_coupons: int = Field(description="The limit reached.")


class _RedemptionEvent(BaseModel):
    event_id: str = Field(description="Stable: derived from the redemption id.")
    occurred_at: datetime
    tenant_id: str
    user_id: str
    redemption_id: str
    coupon_id: str
    code: str
    definition_id: str
    reward: dict[str, Any] = Field(description="Snapshot of the reward item when redeemed.")


class CouponRedeemed(_RedemptionEvent):
    """Published on `phoenix.coupons.redeemed` when a use is consumed: grant the reward."""

    event_type: Literal["coupon.redeemed"] = "coupon.redeemed"


class RedemptionRolledBack(_RedemptionEvent):
    """Published on `phoenix.coupons.redeemed` when a redemption is rolled back: the use is
    given back; a reward service reverses the grant."""

    event_type: Literal["coupon.redemption_rolled_back"] = "coupon.redemption_rolled_back"
