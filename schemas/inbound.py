"""Inbound Kafka events from upstream services. JSON, UTF-8, one event per record,
key = user_id. Unknown extra fields are ignored so producers can add fields first."""

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Id = Annotated[str, Field(min_length=1, max_length=255)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id = Field(description="Unique per event; redeliveries keep it.")
    tenant_id: Id
    user_id: Id
    occurred_at: AwareDatetime


class AchievementData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    achievement_id: Id


class StreakData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    streak_id: Id
    streak_length: int = Field(ge=0)
    streak_started_at: AwareDatetime | None = Field(
        default=None, description="Tells streaks of the same id apart (one coupon per streak)."
    )


class LeaderboardData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    leaderboard_id: Id
    rank: int = Field(ge=1, description="1 = best.")
    period_id: Id | None = Field(
        default=None, description="Tells periods apart (one coupon per period)."
    )


class AchievementCompleted(_Event):
    event_type: Literal["achievement_completed"]
    data: AchievementData


class StreakMilestone(_Event):
    event_type: Literal["streak_milestone"]
    data: StreakData


class LeaderboardRank(_Event):
    event_type: Literal["leaderboard_rank"]
    data: LeaderboardData


InboundEvent = Annotated[
    AchievementCompleted | StreakMilestone | LeaderboardRank, Field(discriminator="event_type")
]
EVENT_TYPES = ("achievement_completed", "streak_milestone", "leaderboard_rank")
