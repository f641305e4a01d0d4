"""Inbound events as the worker matches them: immutable msgspec structs, decoded from JSON in
one C call per batch and not tracked by the garbage collector (a batch of 1,000 pydantic
models cost about 4 us an event, most of it in collections of the young objects).

The contract is `schemas/inbound.py` (pydantic: JSON Schema, documentation). These mirror it;
`consumers/decode.py` falls back on the contract for any record they refuse, and tests hold
them to accepting nothing the contract refuses, with the same values."""

from datetime import datetime
from typing import Annotated, ClassVar

from msgspec import Meta, Struct

Id = Annotated[str, Meta(min_length=1, max_length=255)]
Aware = Annotated[datetime, Meta(tz=True)]


class _Frozen(Struct, frozen=True, gc=False):
    """No reference cycles possible (strings, datetimes, nested structs): gc=False is safe."""


class AchievementData(_Frozen, frozen=True):
    achievement_id: Id


class StreakData(_Frozen, frozen=True):
    streak_id: Id
    streak_length: Annotated[int, Meta(ge=0)]
    streak_started_at: Aware | None = None


class LeaderboardData(_Frozen, frozen=True):
    leaderboard_id: Id
    rank: Annotated[int, Meta(ge=1)]
    period_id: Id | None = None


class _Event(_Frozen, frozen=True, tag_field="event_type"):
    event_type: ClassVar[str]
    event_id: Id
    tenant_id: Id
    user_id: Id
    occurred_at: Aware


class AchievementCompleted(_Event, frozen=True, tag="achievement_completed"):
    event_type: ClassVar[str] = "achievement_completed"
    data: AchievementData

    @property
    def subject(self) -> str:
        """The id a definition's trigger_config names."""
        return self.data.achievement_id


class StreakMilestone(_Event, frozen=True, tag="streak_milestone"):
    event_type: ClassVar[str] = "streak_milestone"
    data: StreakData

    @property
    def subject(self) -> str:
        return self.data.streak_id


class LeaderboardRank(_Event, frozen=True, tag="leaderboard_rank"):
    event_type: ClassVar[str] = "leaderboard_rank"
    data: LeaderboardData

    @property
    def subject(self) -> str:
        return self.data.leaderboard_id


Event = AchievementCompleted | StreakMilestone | LeaderboardRank
