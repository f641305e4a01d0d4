"""Reward item bodies of `/v1/tenants/{tenant_id}/rewards`."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME = Field(min_length=1, max_length=200)
REWARD_TYPE = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")


class RewardItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NAME
    description: str | None = Field(default=None, max_length=2000)
    reward_type: str = REWARD_TYPE
    payload: dict[str, Any] = Field(default_factory=dict)


class RewardItemUpdate(BaseModel):
    """Partial update: only the fields present change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    reward_type: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$"
    )
    payload: dict[str, Any] | None = None


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
