"""Which auto-generate definitions an inbound event triggers, and the occurrence that makes
issuance idempotent (DESIGN.md, "Rules that define correctness"). Pure."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from schemas.coupons import CouponDefinition
from schemas.inbound import AchievementCompleted, LeaderboardRank, StreakMilestone

Event = AchievementCompleted | StreakMilestone | LeaderboardRank


@dataclass(frozen=True)
class Match:
    definition: CouponDefinition
    occurrence: str


def subject_id(event: Event) -> str:
    """The id a definition's trigger_config names for this event."""
    if isinstance(event, AchievementCompleted):
        return event.data.achievement_id
    if isinstance(event, StreakMilestone):
        return event.data.streak_id
    return event.data.leaderboard_id


def occurrence(event: Event) -> str:
    """At most one coupon per (definition, user, occurrence)."""
    if isinstance(event, AchievementCompleted):
        return event.data.achievement_id
    if isinstance(event, StreakMilestone):
        started = event.data.streak_started_at
        return f"{event.data.streak_id}@{started.isoformat()}" if started else event.data.streak_id
    period = event.data.period_id
    return f"{event.data.leaderboard_id}@{period}" if period else event.data.leaderboard_id


def _definition_subject(defn: CouponDefinition) -> str | None:
    auto = defn.config.auto_generate
    cfg = auto.trigger_config if auto else None
    if auto is None or cfg is None:
        return None
    return {
        "achievement_completed": cfg.achievement_id,
        "streak_milestone": cfg.streak_id,
        "leaderboard_rank": cfg.leaderboard_id,
    }.get(auto.trigger or "")


def matches(defn: CouponDefinition, event: Event, now: datetime) -> bool:
    auto = defn.config.auto_generate
    if (
        defn.tenant_id != event.tenant_id
        or defn.status != "active"
        or auto is None
        or not auto.enabled
        or auto.trigger != event.event_type
        or auto.trigger_config is None
        or _definition_subject(defn) != subject_id(event)
    ):
        return False
    expires = defn.config.expires_at
    if expires is not None and now >= expires:
        return False
    cfg = auto.trigger_config
    if isinstance(event, StreakMilestone):
        return cfg.milestone_threshold is not None and (
            event.data.streak_length >= cfg.milestone_threshold
        )
    if isinstance(event, LeaderboardRank):
        return cfg.rank_threshold is not None and event.data.rank <= cfg.rank_threshold
    return True


class DefinitionIndex:
    """Active auto-generate definitions keyed by (tenant, trigger, subject id): a match is a
    dictionary look-up, whatever the number of definitions."""

    def __init__(self, definitions: Iterable[CouponDefinition]) -> None:
        self._by_key: dict[tuple[str, str, str], list[CouponDefinition]] = defaultdict(list)
        self.size = 0
        for defn in definitions:
            auto = defn.config.auto_generate
            subject = _definition_subject(defn)
            if auto and auto.enabled and auto.trigger and subject is not None:
                self._by_key[(defn.tenant_id, auto.trigger, subject)].append(defn)
                self.size += 1

    def match(self, event: Event, now: datetime) -> list[Match]:
        candidates = self._by_key.get((event.tenant_id, event.event_type, subject_id(event)), ())
        return [Match(d, occurrence(event)) for d in candidates if matches(d, event, now)]
