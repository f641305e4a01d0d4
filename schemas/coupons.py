"""Coupon definition bodies of `/v1/tenants/{tenant_id}/coupons` (the user's spec).

These models check types and shapes only; the cross-field rules of the spec's validation
table live in `phoenix_coupons.domain.config_rules`, so that create and the merged config of
an update are judged by the same code.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

CodeFormat = Literal["random", "custom"]
LimitType = Literal["per_user", "global", "unlimited"]
Trigger = Literal["achievement_completed", "streak_milestone", "leaderboard_rank"]
SettableStatus = Literal["active", "paused"]
Status = Literal["active", "paused", "archived"]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
# Any offset is accepted; stored and answered in UTC (`Z`), as the spec's timestamps are.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda d: d.astimezone(UTC))]


class _Compact(BaseModel):
    """Serializes without unset optional fields, as the spec's responses show."""

    model_config = ConfigDict(extra="forbid")

    # No return annotation on purpose: pydantic then keeps the model's own JSON schema.
    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        return {k: v for k, v in handler(self).items() if v is not None}


class TriggerConfig(_Compact):
    achievement_id: str | None = Field(default=None, min_length=1, max_length=255)
    streak_id: str | None = Field(default=None, min_length=1, max_length=255)
    milestone_threshold: int | None = None
    leaderboard_id: str | None = Field(default=None, min_length=1, max_length=255)
    rank_threshold: int | None = None


class AutoGenerate(_Compact):
    enabled: bool
    trigger: Trigger | None = None
    trigger_config: TriggerConfig | None = None


class UsageLimit(_Compact):
    limit_type: LimitType
    max_uses: int | None = None


class CouponConfig(_Compact):
    reward_item_id: str
    code_format: CodeFormat
    code_prefix: str | None = None
    code_length: int | None = None
    custom_code: str | None = None
    case_sensitive: bool = False
    starts_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None
    usage_limit: UsageLimit
    auto_generate: AutoGenerate | None = None


class DefinitionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    config: CouponConfig


class DefinitionUpdate(BaseModel):
    """Only name, description and config change. `config` is a JSON merge patch (RFC 7396)
    applied to the stored config: present keys replace, `null` resets a key to its default,
    nested objects merge. The merged config is then validated whole."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    config: dict[str, Any] | None = None


class StatusUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: SettableStatus


class CouponDefinition(BaseModel):
    id: str
    tenant_id: str
    name: str
    description: str | None
    config: CouponConfig
    status: Status
    created_at: datetime
    updated_at: datetime


class DefinitionList(BaseModel):
    definitions: list[CouponDefinition]
    total: int


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[UserId] = Field(min_length=1, max_length=10_000)
    custom_codes: list[str] | None = Field(
        default=None, description="Custom format only: one code per user id, in order."
    )


class GeneratedCoupon(BaseModel):
    user_id: str
    code: str


class GenerateResponse(BaseModel):
    generated: int
    coupons: list[GeneratedCoupon]
