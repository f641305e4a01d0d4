"""Which auto-generate definitions an inbound event triggers, and the occurrence that makes
issuance idempotent (docs/design.md, "The rules of matching"). Pure."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from phoenix_coupons.domain.inbound import (
    AchievementCompleted,
    Event,
    LeaderboardRank,
    StreakMilestone,
)
from schemas.coupons import CouponDefinition

_SUBJECT = attrgetter("subject")

__all__ = ["DefinitionIndex", "Event", "Match", "matches", "occurrence"]


@dataclass(frozen=True)
class Match:
    definition: CouponDefinition
    occurrence: str


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
        or _definition_subject(defn) != event.subject
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
        self._subjects: set[str] = set()
        self.size = 0
        for defn in definitions:
            auto = defn.config.auto_generate
            subject = _definition_subject(defn)
            if auto and auto.enabled and auto.trigger and subject is not None:
                self._by_key[(defn.tenant_id, auto.trigger, subject)].append(defn)
                self._subjects.add(subject)
                self.size += 1

    def match(self, event: Event, now: datetime) -> list[Match]:
        candidates = self._by_key.get((event.tenant_id, event.event_type, event.subject))
        if not candidates:  # most events: one look-up, nothing built
            return []
        return [Match(d, occurrence(event)) for d in candidates if matches(d, event, now)]

    def match_all(self, events: Sequence[Event], now: datetime) -> dict[int, list[Match]]:
        """`match` for a batch, by position; events that match nothing are left out. Most
        events of a batch match nothing: a first pass in C (set look-ups of their subject ids)
        leaves only the events that may match for `match`."""
        subjects = list(map(_SUBJECT, events))
        if self._subjects.isdisjoint(subjects):  # the usual batch: no step per event in Python
            return {}
        found: dict[int, list[Match]] = {}
        for pos in [i for i, subject in enumerate(subjects) if subject in self._subjects]:
            matched = self.match(events[pos], now)
            if matched:
                found[pos] = matched
        return found
