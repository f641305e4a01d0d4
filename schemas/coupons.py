"""Coupon definition bodies of `/v1/tenants/{tenant_id}/coupons` (the user's spec).

These models check types and shapes only; the cross-field rules of the spec's validation
table live in `phoenix_coupons.domain.config_rules`, so that create and the merged config of
an update are judged by the same code.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from schemas.bounds import (
    CODE_LENGTH_MAX,
    CODE_LENGTH_MIN,
    CODE_MAX_LENGTH,
    CODE_PATTERN,
    CODE_PREFIX_PATTERN,
    CODE_TEMPLATE_PATTERN,
    DESCRIPTION_MAX_LENGTH,
    ID_MAX_LENGTH,
    INT_MAX,
    NAME_MAX_LENGTH,
    Count,
    ExternalId,
)
from schemas.free_json import JsonPatch
from schemas.metadata import Metadata

CodeFormat = Literal["random", "custom"]
Charset = Literal["unambiguous", "alphanumeric", "alphabetic", "numeric"]
LimitType = Literal["per_user", "global", "unlimited"]
Trigger = Literal["achievement_completed", "streak_milestone", "leaderboard_rank"]
SettableStatus = Literal["active", "paused"]
Status = Literal["active", "paused", "archived"]
UserId = ExternalId
BULK_MAX_ITEMS = 10_000
# Documented here, enforced by the spec's rules (config_rules) with the spec's wording.
CodeLength = Annotated[
    int,
    Field(le=INT_MAX, json_schema_extra={"minimum": CODE_LENGTH_MIN, "maximum": CODE_LENGTH_MAX}),
]
CustomCode = Annotated[
    str,
    Field(
        json_schema_extra={"minLength": 1, "maxLength": CODE_MAX_LENGTH, "pattern": CODE_PATTERN}
    ),
]
CodePrefix = Annotated[
    str,
    Field(
        json_schema_extra={
            "maxLength": CODE_MAX_LENGTH,
            "pattern": CODE_PREFIX_PATTERN,
        }
    ),
]
CodePattern = Annotated[
    str,
    Field(
        description="The code's shape: literal code characters plus the placeholders # (a "
        "digit), ? (a letter) and * (any character of the charset), 1 to 32 of them; e.g. "
        "SUMMER-####-????. Replaces code_prefix and code_length. Random format only.",
        json_schema_extra={
            "maxLength": CODE_MAX_LENGTH,
            "pattern": CODE_TEMPLATE_PATTERN,
            "examples": ["SUMMER-####-????"],
        },
    ),
]
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
    achievement_id: ExternalId | None = None
    streak_id: ExternalId | None = None
    milestone_threshold: Count | None = None
    leaderboard_id: ExternalId | None = None
    rank_threshold: Count | None = None


class AutoGenerate(_Compact):
    enabled: bool
    trigger: Trigger | None = None
    trigger_config: TriggerConfig | None = None


class UsageLimit(_Compact):
    limit_type: LimitType
    max_uses: Count | None = None


# ISO 8601 durations (days, weeks, hours, minutes, seconds); judged by the config rules.
Duration = Annotated[
    str,
    Field(
        max_length=40,
        json_schema_extra={"format": "duration", "examples": ["P7D", "PT36H"]},
    ),
]
REMINDERS_MAX = 3


class IssuanceLimit(_Compact):
    max_coupons: Count = Field(description="Coupons the definition issues at most, in total.")


class CouponConfig(_Compact):
    reward_item_id: str = Field(max_length=ID_MAX_LENGTH)
    code_format: CodeFormat
    code_prefix: CodePrefix | None = None
    code_length: CodeLength | None = None
    custom_code: CustomCode | None = None
    case_sensitive: bool = False
    # Code patterns (not in the spec; absent unless set, so spec bodies are unchanged).
    code_pattern: CodePattern | None = None
    charset: Charset | None = Field(
        default=None,
        description="What random characters are drawn from: unambiguous (the default: no "
        "0/O, 1/I/L), alphanumeric, alphabetic or numeric. Random format only.",
    )
    starts_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None
    usage_limit: UsageLimit
    auto_generate: AutoGenerate | None = None
    # Lifecycle extensions (not in the spec; absent unless set, so spec bodies are unchanged).
    valid_for: Duration | None = Field(
        default=None,
        description="Each issued coupon is valid this long from its issuance (capped by "
        "expires_at). Not on custom definitions.",
    )
    remind_before: list[Duration] | None = Field(
        default=None,
        max_length=REMINDERS_MAX,
        description="Lead times of the coupon.expiring reminders of an unredeemed coupon.",
    )
    rollback_restores_use: bool | None = Field(
        default=None,
        description="Whether a rollback gives the use back (default true).",
    )
    issuance_limit: IssuanceLimit | None = Field(
        default=None, description="At most this many coupons issued by the definition."
    )
    uses_per_code: Count | None = Field(
        default=None,
        description="How often each unassigned code (a generation job's `count`) may be "
        "redeemed, by anyone (default 1); usage_limit still holds on top. Random format only.",
    )


class DefinitionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
    config: CouponConfig


class DefinitionUpdate(BaseModel):
    """Only name, description and config change. `config` is a JSON merge patch (RFC 7396)
    applied to the stored config: present keys replace, `null` resets a key to its default,
    nested objects merge. The merged config is then validated whole."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX_LENGTH)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
    config: JsonPatch | None = None


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


class DefinitionView(CouponDefinition):
    """A definition as `GET` of one answers it: with `config.issuance_limit`, also how many
    coupons it has issued and how many it may still issue; without, exactly the spec's
    body."""

    issued: int | None = Field(
        default=None, description="Coupons issued (with an issuance_limit only)."
    )
    remaining: int | None = Field(
        default=None, description="Coupons it may still issue (with an issuance_limit only)."
    )

    @model_serializer(mode="wrap")
    def _drop_unlimited(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        out = handler(self)
        if self.issued is None:
            out.pop("issued", None)
            out.pop("remaining", None)
        return out


class DefinitionList(BaseModel):
    """Exactly the spec's body: the next page's cursor is the `X-Next-After` header."""

    definitions: list[CouponDefinition]
    total: int


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[UserId] = Field(min_length=1, max_length=BULK_MAX_ITEMS)
    # Each code is judged by the service, which names every bad one by its position.
    custom_codes: list[CustomCode] | None = Field(
        default=None,
        max_length=BULK_MAX_ITEMS,
        description="Custom format only: one code per user id, in order.",
    )
    metadata: Metadata | None = None


class GeneratedCoupon(BaseModel):
    user_id: str
    code: str


class GenerateResponse(BaseModel):
    generated: int
    coupons: list[GeneratedCoupon]
