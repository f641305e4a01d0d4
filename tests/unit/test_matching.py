"""Which auto-generate definitions an inbound event triggers, and its occurrence key
(docs/design.md, "The rules of matching"). Pure: definitions built directly, `now` given."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.inbound import AchievementCompleted, LeaderboardRank, StreakMilestone
from phoenix_coupons.domain.matching import DefinitionIndex, Event, matches, occurrence
from schemas.coupons import CouponDefinition

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
TENANT = "tenant-1"
STARTED = datetime(2030, 5, 25, tzinfo=UTC)

TRIGGER_CONFIGS: dict[str, dict[str, Any]] = {
    "achievement_completed": {"achievement_id": "ach-1"},
    "streak_milestone": {"streak_id": "streak-1", "milestone_threshold": 7},
    "leaderboard_rank": {"leaderboard_id": "lb-1", "rank_threshold": 3},
}


def definition(
    trigger: str = "achievement_completed",
    trigger_config: dict[str, Any] | None = None,
    *,
    id: str = "def-1",
    tenant_id: str = TENANT,
    status: str = "active",
    enabled: bool = True,
    expires_at: datetime | None = None,
) -> CouponDefinition:
    config: dict[str, Any] = {
        "reward_item_id": "reward-1",
        "code_format": "random",
        "code_prefix": "WIN",
        "code_length": 8,
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        "expires_at": expires_at,
        "auto_generate": {
            "enabled": enabled,
            "trigger": trigger,
            "trigger_config": trigger_config or TRIGGER_CONFIGS[trigger],
        },
    }
    return CouponDefinition.model_validate(
        {
            "id": id,
            "tenant_id": tenant_id,
            "name": "auto",
            "description": None,
            "config": config,
            "status": status,
            "created_at": NOW - timedelta(days=1),
            "updated_at": NOW - timedelta(days=1),
        }
    )


def _base(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "event_id": "evt-1",
        "tenant_id": TENANT,
        "user_id": "user-1",
        "occurred_at": NOW,
    }
    values.update(overrides)
    return values


def achievement(achievement_id: str = "ach-1", **overrides: Any) -> AchievementCompleted:
    return msgspec.convert(
        {
            **_base(**overrides),
            "event_type": "achievement_completed",
            "data": {"achievement_id": achievement_id},
        },
        AchievementCompleted,
    )


def streak(
    length: int = 7,
    streak_id: str = "streak-1",
    started_at: datetime | None = STARTED,
    **overrides: Any,
) -> StreakMilestone:
    data: dict[str, Any] = {"streak_id": streak_id, "streak_length": length}
    if started_at is not None:
        data["streak_started_at"] = started_at
    return msgspec.convert(
        {**_base(**overrides), "event_type": "streak_milestone", "data": data}, StreakMilestone
    )


def leaderboard(
    rank: int = 3,
    leaderboard_id: str = "lb-1",
    period_id: str | None = "2030-W22",
    **overrides: Any,
) -> LeaderboardRank:
    data: dict[str, Any] = {"leaderboard_id": leaderboard_id, "rank": rank}
    if period_id is not None:
        data["period_id"] = period_id
    return msgspec.convert(
        {**_base(**overrides), "event_type": "leaderboard_rank", "data": data}, LeaderboardRank
    )


SAMPLES: dict[str, Event] = {
    "achievement_completed": achievement(),
    "streak_milestone": streak(),
    "leaderboard_rank": leaderboard(),
}


# --- every trigger --------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", list(TRIGGER_CONFIGS))
def test_each_trigger_matches_its_own_event_type(trigger: str) -> None:
    defn = definition(trigger)
    assert matches(defn, SAMPLES[trigger], NOW) is True
    index = DefinitionIndex([defn])
    found = index.match(SAMPLES[trigger], NOW)
    assert [(m.definition.id, m.occurrence) for m in found] == [
        ("def-1", occurrence(SAMPLES[trigger]))
    ]


@pytest.mark.parametrize(
    ("trigger", "event_type"),
    [(t, e) for t in TRIGGER_CONFIGS for e in TRIGGER_CONFIGS if t != e],
)
def test_a_trigger_ignores_the_other_event_types(trigger: str, event_type: str) -> None:
    defn = definition(trigger)
    assert matches(defn, SAMPLES[event_type], NOW) is False
    assert DefinitionIndex([defn]).match(SAMPLES[event_type], NOW) == []


# --- thresholds -----------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "expected"), [(6, False), (7, True), (8, True), (0, False)])
def test_streak_length_must_reach_the_milestone_threshold(length: int, expected: bool) -> None:
    assert matches(definition("streak_milestone"), streak(length), NOW) is expected


@pytest.mark.parametrize(("rank", "expected"), [(1, True), (2, True), (3, True), (4, False)])
def test_rank_must_be_at_or_better_than_the_rank_threshold(rank: int, expected: bool) -> None:
    assert matches(definition("leaderboard_rank"), leaderboard(rank), NOW) is expected


def test_a_threshold_of_one() -> None:
    streak_1 = definition("streak_milestone", {"streak_id": "streak-1", "milestone_threshold": 1})
    top_1 = definition("leaderboard_rank", {"leaderboard_id": "lb-1", "rank_threshold": 1})
    assert matches(streak_1, streak(1), NOW) is True
    assert matches(streak_1, streak(0), NOW) is False
    assert matches(top_1, leaderboard(1), NOW) is True
    assert matches(top_1, leaderboard(2), NOW) is False


# --- wrong ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        achievement("ach-2"),
        achievement("ACH-1"),
        streak(30, streak_id="streak-2"),
        leaderboard(1, leaderboard_id="lb-2"),
    ],
    ids=["achievement", "achievement-case", "streak", "leaderboard"],
)
def test_another_subject_id_does_not_match(event: Event) -> None:
    defn = definition(event.event_type)
    assert matches(defn, event, NOW) is False
    assert DefinitionIndex([defn]).match(event, NOW) == []


# --- occurrence keys ------------------------------------------------------------------------


def test_occurrence_of_an_achievement_is_its_id() -> None:
    assert occurrence(achievement("ach-9")) == "ach-9"


def test_occurrence_of_a_streak_is_its_id_and_start() -> None:
    assert occurrence(streak(7)) == f"streak-1@{STARTED.isoformat()}"
    # Another streak of the same id (started later) is another occurrence; a longer length
    # of the same streak is not.
    later = STARTED + timedelta(days=30)
    assert occurrence(streak(7, started_at=later)) != occurrence(streak(7))
    assert occurrence(streak(14)) == occurrence(streak(7))


def test_occurrence_of_a_streak_without_start_is_its_id() -> None:
    assert occurrence(streak(7, started_at=None)) == "streak-1"


def test_occurrence_of_a_leaderboard_rank_is_its_id_and_period() -> None:
    assert occurrence(leaderboard(1)) == "lb-1@2030-W22"
    assert occurrence(leaderboard(1, period_id="2030-W23")) == "lb-1@2030-W23"
    assert occurrence(leaderboard(2)) == occurrence(leaderboard(1))


def test_occurrence_of_a_leaderboard_rank_without_period_is_its_id() -> None:
    assert occurrence(leaderboard(1, period_id=None)) == "lb-1"


def test_the_event_id_and_user_are_not_part_of_the_occurrence() -> None:
    assert occurrence(achievement(event_id="evt-2", user_id="user-2")) == "ach-1"
    index = DefinitionIndex([definition()])
    first = index.match(achievement(event_id="evt-1"), NOW)
    again = index.match(achievement(event_id="evt-2"), NOW)
    assert [m.occurrence for m in first] == [m.occurrence for m in again] == ["ach-1"]


# --- status, enabled, expiry, tenant --------------------------------------------------------


@pytest.mark.parametrize("status", ["paused", "archived"])
@pytest.mark.parametrize("trigger", list(TRIGGER_CONFIGS))
def test_only_active_definitions_match(status: str, trigger: str) -> None:
    defn = definition(trigger, status=status)
    assert matches(defn, SAMPLES[trigger], NOW) is False
    assert DefinitionIndex([defn]).match(SAMPLES[trigger], NOW) == []


@pytest.mark.parametrize("trigger", list(TRIGGER_CONFIGS))
def test_auto_generate_disabled_does_not_match(trigger: str) -> None:
    defn = definition(trigger, enabled=False)
    assert matches(defn, SAMPLES[trigger], NOW) is False
    assert DefinitionIndex([defn]).match(SAMPLES[trigger], NOW) == []
    assert DefinitionIndex([defn]).size == 0


def test_a_definition_without_auto_generate_does_not_match() -> None:
    defn = definition()
    config = defn.config.model_copy(update={"auto_generate": None})
    bare = defn.model_copy(update={"config": config})
    assert matches(bare, achievement(), NOW) is False
    assert DefinitionIndex([bare]).size == 0


@pytest.mark.parametrize("trigger", list(TRIGGER_CONFIGS))
def test_expiry_is_exclusive(trigger: str) -> None:
    event = SAMPLES[trigger]
    at_now = definition(trigger, expires_at=NOW)
    assert matches(at_now, event, NOW) is False
    assert DefinitionIndex([at_now]).match(event, NOW) == []
    just_after = definition(trigger, expires_at=NOW + timedelta(microseconds=1))
    assert matches(just_after, event, NOW) is True
    assert len(DefinitionIndex([just_after]).match(event, NOW)) == 1
    past = definition(trigger, expires_at=NOW - timedelta(days=1))
    assert matches(past, event, NOW) is False


def test_expiry_is_judged_at_now_not_at_occurred_at() -> None:
    defn = definition(expires_at=NOW)
    earlier_event = achievement(occurred_at=NOW - timedelta(hours=1))
    assert matches(defn, earlier_event, NOW - timedelta(seconds=1)) is True
    assert matches(defn, earlier_event, NOW) is False


@pytest.mark.parametrize("trigger", list(TRIGGER_CONFIGS))
def test_another_tenant_does_not_match(trigger: str) -> None:
    defn = definition(trigger, tenant_id="tenant-2")
    assert matches(defn, SAMPLES[trigger], NOW) is False
    assert DefinitionIndex([defn]).match(SAMPLES[trigger], NOW) == []


# --- the index ------------------------------------------------------------------------------


def test_the_index_returns_every_matching_definition_of_the_tenant() -> None:
    defs = [
        definition("streak_milestone", {"streak_id": "streak-1", "milestone_threshold": 3}, id="a"),
        definition("streak_milestone", {"streak_id": "streak-1", "milestone_threshold": 7}, id="b"),
        # Threshold not reached, other streak, other tenant, paused, expired: left out.
        definition("streak_milestone", {"streak_id": "streak-1", "milestone_threshold": 8}, id="c"),
        definition("streak_milestone", {"streak_id": "streak-2", "milestone_threshold": 1}, id="d"),
        definition("streak_milestone", id="e", tenant_id="tenant-2"),
        definition("streak_milestone", id="f", status="paused"),
        definition("streak_milestone", id="g", expires_at=NOW),
        definition("achievement_completed", {"achievement_id": "streak-1"}, id="h"),
        definition("streak_milestone", id="i"),
    ]
    index = DefinitionIndex(defs)
    found = index.match(streak(7), NOW)
    assert sorted(m.definition.id for m in found) == ["a", "b", "i"]
    assert {m.occurrence for m in found} == {f"streak-1@{STARTED.isoformat()}"}
    other_tenant = index.match(streak(7, tenant_id="tenant-2"), NOW)
    assert [m.definition.id for m in other_tenant] == ["e"]


def test_an_empty_index_matches_nothing() -> None:
    index = DefinitionIndex(())
    assert index.size == 0
    assert all(index.match(event, NOW) == [] for event in SAMPLES.values())


# --- issue keys -----------------------------------------------------------------------------


def test_the_event_issue_key_is_stable() -> None:
    key = issue_keys.event("def-1", "user-1", "ach-1")
    assert key == issue_keys.event("def-1", "user-1", "ach-1")
    assert key.startswith("evt:") and len(key) == 44


@pytest.mark.parametrize(
    "parts",
    [
        ("def-2", "user-1", "ach-1"),
        ("def-1", "user-2", "ach-1"),
        ("def-1", "user-1", "ach-2"),
        ("def-1", "user-1", "ach-1@2030-W22"),
    ],
)
def test_the_event_issue_key_differs_when_any_part_differs(parts: tuple[str, str, str]) -> None:
    assert issue_keys.event(*parts) != issue_keys.event("def-1", "user-1", "ach-1")


def test_issue_keys_of_two_streaks_of_the_same_id_differ() -> None:
    first = occurrence(streak(7))
    second = occurrence(streak(7, started_at=STARTED + timedelta(days=10)))
    assert issue_keys.event("def-1", "user-1", first) != issue_keys.event("def-1", "user-1", second)


# --- a batch at once ------------------------------------------------------------------------


def test_match_all_answers_what_match_answers_event_by_event() -> None:
    index = DefinitionIndex(
        [
            definition(id="d-ach"),
            definition("streak_milestone", id="d-streak"),
            definition("leaderboard_rank", id="d-lb"),
            definition(id="d-ach-2"),  # two definitions on one achievement: two matches
            definition("streak_milestone", id="d-other-tenant", tenant_id="tenant-2"),
            definition("leaderboard_rank", id="d-paused", status="paused"),
        ]
    )
    events: list[Event] = [
        achievement(),
        achievement("ach-unknown"),
        streak(length=3),  # below the milestone: the subject is known, no match
        streak(),
        streak(tenant_id="tenant-2"),
        leaderboard(rank=50),
        leaderboard(),
        achievement(tenant_id="tenant-3"),
        # A subject known under another trigger: the event type must match too.
        achievement("streak-1"),
    ]
    expected = {i: m for i, e in enumerate(events) if (m := index.match(e, NOW))}
    assert index.match_all(events, NOW) == expected
    assert sorted(expected) == [0, 3, 4, 6]
    assert len(expected[0]) == 2


def test_match_all_of_a_batch_that_matches_nothing() -> None:
    index = DefinitionIndex([definition()])
    assert index.match_all([achievement("other"), streak(), leaderboard()], NOW) == {}
    assert index.match_all([], NOW) == {}
    assert DefinitionIndex([]).match_all([achievement()], NOW) == {}


def test_a_coupon_id_is_a_uuid_derived_from_its_issue_key() -> None:
    key = issue_keys.event("def-1", "user-1", "ach-1")
    assert issue_keys.coupon_id(key) == issue_keys.coupon_id(key)
    assert uuid.UUID(issue_keys.coupon_id(key)).version == 5
    assert issue_keys.coupon_id(key) != issue_keys.coupon_id(issue_keys.shared("def-1"))
    assert issue_keys.coupon_id(issue_keys.bulk("d", None, 0, "n1")) != issue_keys.coupon_id(
        issue_keys.bulk("d", None, 0, "n2")
    )
