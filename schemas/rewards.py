"""Reward item bodies of `/v1/tenants/{tenant_id}/rewards`."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.bounds import DESCRIPTION_MAX_LENGTH, NAME_MAX_LENGTH
from schemas.free_json import MAX_DEPTH, JsonObject
from schemas.pages import next_after

REWARD_TYPE_PATTERN = r"^[a-z][a-z0-9_]*$"
REWARD_TYPE_MAX_LENGTH = 64
PAYLOAD_DESCRIPTION = (
    "Free-form JSON object handed to the reward service with each redemption: at most "
    "`PHOENIX_REWARD_PAYLOAD_MAX_BYTES` (16 KiB by default) as compact UTF-8 JSON, nested at "
    f"most {MAX_DEPTH} levels, integers within 64 bits, finite numbers, keys not starting "
    "with `$`."
)


class RewardItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
    reward_type: str = Field(
        min_length=1, max_length=REWARD_TYPE_MAX_LENGTH, pattern=REWARD_TYPE_PATTERN
    )
    payload: JsonObject = Field(default_factory=dict, description=PAYLOAD_DESCRIPTION)


class RewardItemUpdate(BaseModel):
    """Partial update: only the fields present change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX_LENGTH)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
    reward_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=REWARD_TYPE_MAX_LENGTH,
        pattern=REWARD_TYPE_PATTERN,
    )
    payload: JsonObject | None = Field(default=None, description=PAYLOAD_DESCRIPTION)


class RewardItem(BaseModel):
    item_id: str
    tenant_id: str
    name: str
    description: str | None
    reward_type: str
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class RewardItemList(BaseModel):
    rewards: list[RewardItem]
    total: int
    next_after: str | None = next_after()
