"""Outbound Kafka events. JSON, UTF-8, key = user_id (an unassigned code's `coupon.issued`:
coupon_id; a whole definition's events: definition_id), deduplicable by `event_id`."""

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
    user_id: str | None = Field(
        description="The coupon's owner; null for an unassigned code (kind `unassigned`)."
    )
    kind: Literal["issued", "unassigned"] = Field(
        default="issued",
        description="`issued`: the user's coupon; `unassigned`: a code owned by no user (a "
        "generation job's `count`), redeemed by whoever presents it first; its record is keyed "
        "by coupon_id.",
    )
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


class GenerationJobCompleted(BaseModel):
    """Published on `phoenix.coupons.issued` once when a generation job ends (succeeded,
    failed or cancelled), after the `coupon.issued` events of its coupons were handed to
    the outbox. Keyed by definition_id."""

    event_id: str = Field(description="Stable: derived from the job id and its status.")
    event_type: Literal["coupon.generation_job.completed"] = "coupon.generation_job.completed"
    occurred_at: datetime = Field(description="When the job ended.")
    tenant_id: str
    definition_id: str
    job_id: str
    status: Literal["succeeded", "failed", "cancelled"]
    total: int = Field(description="Rows requested.")
    generated: int = Field(description="Coupons the job stored (they stay whatever the status).")
    failed: int = Field(description="Rows refused (row errors).")
    reason: str | None = Field(
        default=None, description="Why the job failed or was cancelled (None on success)."
    )


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
    metadata: dict[str, Any] | None = Field(
        default=None, description="The redeem's (or its reservation's) `metadata`."
    )


class CouponRedeemed(_RedemptionEvent):
    """Published on `phoenix.coupons.redeemed` when a use is consumed: grant the reward."""

    event_type: Literal["coupon.redeemed"] = "coupon.redeemed"


class RedemptionRolledBack(_RedemptionEvent):
    """Published on `phoenix.coupons.redeemed` when a redemption is rolled back: the use is
    given back; a reward service reverses the grant."""

    event_type: Literal["coupon.redemption_rolled_back"] = "coupon.redemption_rolled_back"
    reason: str | None = Field(default=None, description="The rollback's `reason`, if given.")
    use_kept: bool = Field(
        default=False,
        description="The use stays taken (the definition's config.rollback_restores_use is "
        "false): nothing is given back to the user's limit.",
    )


ReleaseReason = Literal["released", "expired", "confirmed"]


class _ReservationEvent(BaseModel):
    event_id: str = Field(description="Stable: derived from the reservation id.")
    occurred_at: datetime
    tenant_id: str
    user_id: str
    reservation_id: str
    coupon_id: str
    code: str
    definition_id: str
    expires_at: datetime = Field(description="When the hold ends (or ended) unless confirmed.")


class CouponReserved(_ReservationEvent):
    """Published on `phoenix.coupons.redeemed` when a use is held for a while (a checkout):
    it counts against the limits until confirmed or released."""

    event_type: Literal["coupon.reserved"] = "coupon.reserved"
    metadata: dict[str, Any] | None = Field(default=None, description="The reserve's `metadata`.")


class ReservationReleased(_ReservationEvent):
    """Published on `phoenix.coupons.redeemed` once per reservation when its hold ends:
    `released` by the caller (the use is free again), `expired` unconfirmed (free again), or
    `confirmed` into the redemption `redemption_id` (announced by its `coupon.redeemed`)."""

    event_type: Literal["coupon.reservation_released"] = "coupon.reservation_released"
    reason: ReleaseReason
    redemption_id: str | None = Field(default=None, description="Reason `confirmed` only.")


class _ExpiryEvent(BaseModel):
    event_id: str = Field(
        description="Stable: derived from the coupon id (and a reminder's lead time)."
    )
    occurred_at: datetime = Field(
        description="When the scheduler handled the step: within "
        "PHOENIX_EXPIRY_SWEEP_SECONDS of its time (expires_at, or expires_at - remind_before)."
    )
    tenant_id: str
    user_id: str
    coupon_id: str
    code: str
    definition_id: str
    reward_item_id: str
    expires_at: datetime = Field(
        description="When the coupon stops being redeemable: the earlier of its own validity "
        "and its definition's expires_at."
    )


class CouponExpiring(_ExpiryEvent):
    """Published on `phoenix.coupons.expiry` once per lead time of the definition's
    `remind_before`, ahead of the expiry of a user's coupon that is still unredeemed."""

    event_type: Literal["coupon.expiring"] = "coupon.expiring"
    remind_before: str = Field(
        description="The lead time of this reminder, as configured (ISO 8601, e.g. P3D)."
    )


class CouponExpired(_ExpiryEvent):
    """Published on `phoenix.coupons.expiry` once, when a user's coupon expires with uses
    left."""

    event_type: Literal["coupon.expired"] = "coupon.expired"
