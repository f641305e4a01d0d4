"""Redemption and coupon query bodies (validate, redeem, reserve, roll back; codes and
wallets)."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.bounds import (
    CODE_MAX_LENGTH,
    CODE_PATTERN,
    HOLD_TTL_DEFAULT,
    HOLD_TTL_MAX,
    HOLD_TTL_MIN,
    REASON_MAX_LENGTH,
    ExternalId,
)
from schemas.metadata import Metadata
from schemas.pages import next_after
from schemas.rewards import RewardItem

# Why a redeem is refused: the one list. The domain returns these, the API answers them as
# `error` (404 for code_not_found, else 409) and `reason`, with the message beside each.
RefusalReason = Literal[
    "code_not_found",
    "not_yet_valid",
    "expired",
    "definition_paused",
    "definition_archived",
    "not_owner",
    "per_user_limit_reached",
    "global_limit_reached",
    "coupon_revoked",
    "code_limit_reached",
]
REFUSALS: dict[RefusalReason, str] = {
    "code_not_found": "no such code in this tenant",
    "not_yet_valid": "the coupon is not valid yet (starts_at is in the future)",
    "expired": "the coupon has expired",
    "definition_paused": "the coupon's definition is paused",
    "definition_archived": "the coupon's definition is archived",
    "not_owner": "this code was issued to another user",
    "per_user_limit_reached": "the user has used this coupon as often as allowed",
    "global_limit_reached": "the coupon has been used as often as allowed",
    "coupon_revoked": "the code has been revoked",
    "code_limit_reached": "this unassigned code has been used as often as it may be",
}


class RedeemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=1,
        max_length=CODE_MAX_LENGTH,
        pattern=CODE_PATTERN,
        description="The code (case ignored unless the definition is case-sensitive); codes "
        "are ASCII letters, digits, hyphens and underscores.",
    )
    user_id: ExternalId
    metadata: Metadata | None = None


class ReserveRequest(RedeemRequest):
    ttl_seconds: int = Field(
        default=HOLD_TTL_DEFAULT,
        ge=HOLD_TTL_MIN,
        le=HOLD_TTL_MAX,
        description="How long the hold lasts (it never outlasts the coupon's validity).",
    )


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=REASON_MAX_LENGTH,
        description="Why (e.g. the order was cancelled): stored and carried by the event.",
    )


class Coupon(BaseModel):
    """One code: issued to a user, a definition's shared custom code, or an unassigned code
    (owned by no user: whoever presents it first redeems it); `user_id` null but for issued."""

    id: str
    tenant_id: str
    definition_id: str
    reward_item_id: str
    code: str
    kind: Literal["issued", "shared", "unassigned"]
    source: Literal["bulk", "event", "definition"]
    user_id: str | None
    status: Literal["active", "revoked"]
    issued_at: datetime
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class WalletCoupon(Coupon):
    remaining_uses: int | None = Field(
        description="Uses this user has left on the coupon now; null when unlimited."
    )


class ValidateResponse(BaseModel):
    valid: bool
    reason: RefusalReason | None = Field(description="Why a redeem would be refused now.")
    coupon: Coupon | None
    reward: RewardItem | None


class Redemption(BaseModel):
    redemption_id: str
    status: Literal["redeemed", "rolled_back"]
    user_id: str
    redeemed_at: datetime
    rolled_back_at: datetime | None = None
    coupon: Coupon
    reward: RewardItem = Field(description="The reward item as it was when redeemed.")
    metadata: dict[str, Any] | None = Field(
        default=None, description="The redeem's (or its reservation's) `metadata`."
    )
    rollback_reason: str | None = None
    use_kept: bool = Field(
        default=False,
        description="Rolled back with the use kept taken (config.rollback_restores_use false).",
    )


ReservationStatus = Literal["held", "confirmed", "released", "expired"]


class Reservation(BaseModel):
    """A hold of one use of a coupon, until `expires_at`: confirmed into a redemption, or
    released (by the caller, or by itself when it expires)."""

    reservation_id: str
    status: ReservationStatus
    user_id: str
    reserved_at: datetime
    expires_at: datetime = Field(description="The hold ends then unless confirmed.")
    coupon: Coupon
    reward: RewardItem = Field(description="The reward item as it was when reserved.")
    metadata: dict[str, Any] | None = None
    redemption_id: str | None = Field(default=None, description="Once confirmed.")


class CouponList(BaseModel):
    coupons: list[Coupon]
    total: int
    next_after: str | None = next_after()


class Wallet(BaseModel):
    user_id: str
    coupons: list[WalletCoupon]
    total: int
    next_after: str | None = next_after()


class CodeState(BaseModel):
    coupon: Coupon
    redemptions: list[Redemption]
