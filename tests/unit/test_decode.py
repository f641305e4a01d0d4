"""Record bytes -> inbound event (consumers.decode): valid records of each family decode to
their contract model; anything else is a PoisonRecord with a machine-readable kind."""

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from consumers.decode import decode
from consumers.poison import PoisonRecord
from phoenix_coupons.domain.inbound import AchievementCompleted, LeaderboardRank, StreakMilestone

BASE: dict[str, Any] = {
    "event_id": "e-123",
    "tenant_id": "t1",
    "user_id": "user_123",
    "occurred_at": "2025-01-15T10:00:00Z",
}
ACHIEVEMENT: dict[str, Any] = {
    **BASE,
    "event_type": "achievement_completed",
    "data": {"achievement_id": "first-win"},
}
STREAK: dict[str, Any] = {
    **BASE,
    "event_type": "streak_milestone",
    "data": {
        "streak_id": "770e8400",
        "streak_length": 7,
        "streak_started_at": "2025-01-09T00:00:00Z",
    },
}
LEADERBOARD: dict[str, Any] = {
    **BASE,
    "event_type": "leaderboard_rank",
    "data": {"leaderboard_id": "weekly", "rank": 1, "period_id": "2025-W03"},
}


def raw(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def poison(value: bytes | None) -> PoisonRecord:
    with pytest.raises(PoisonRecord) as caught:
        decode(value)
    assert caught.value.message, "a poison record explains itself"
    return caught.value


# --- valid records --------------------------------------------------------------------------


def test_achievement_completed() -> None:
    event = decode(raw(ACHIEVEMENT))
    assert isinstance(event, AchievementCompleted)
    assert (event.event_id, event.tenant_id, event.user_id) == ("e-123", "t1", "user_123")
    assert event.occurred_at == datetime(2025, 1, 15, 10, tzinfo=UTC)
    assert event.data.achievement_id == "first-win"


def test_streak_milestone() -> None:
    event = decode(raw(STREAK))
    assert isinstance(event, StreakMilestone)
    assert event.data.streak_id == "770e8400"
    assert event.data.streak_length == 7
    assert event.data.streak_started_at == datetime(2025, 1, 9, tzinfo=UTC)


def test_streak_milestone_without_start() -> None:
    data = {"streak_id": "770e8400", "streak_length": 0}
    event = decode(raw({**STREAK, "data": data}))
    assert isinstance(event, StreakMilestone)
    assert event.data.streak_started_at is None
    assert event.data.streak_length == 0


def test_leaderboard_rank() -> None:
    event = decode(raw(LEADERBOARD))
    assert isinstance(event, LeaderboardRank)
    assert (event.data.leaderboard_id, event.data.rank, event.data.period_id) == (
        "weekly",
        1,
        "2025-W03",
    )


def test_leaderboard_rank_without_period() -> None:
    event = decode(raw({**LEADERBOARD, "data": {"leaderboard_id": "weekly", "rank": 12}}))
    assert isinstance(event, LeaderboardRank)
    assert event.data.period_id is None


def test_any_timezone_offset_is_accepted() -> None:
    event = decode(raw({**ACHIEVEMENT, "occurred_at": "2025-01-15T12:00:00+02:00"}))
    assert event.occurred_at == datetime(2025, 1, 15, 10, tzinfo=UTC)


def test_extra_fields_are_ignored() -> None:
    payload = {
        **STREAK,
        "schema_version": 2,
        "source": {"service": "streaks"},
        "data": {**STREAK["data"], "best_length": 30, "badge": "gold"},
    }
    event = decode(raw(payload))
    assert event == decode(raw(STREAK))
    assert "schema_version" not in msgspec.structs.asdict(event)


def test_key_order_and_whitespace_do_not_matter() -> None:
    pretty = json.dumps(dict(reversed(list(LEADERBOARD.items()))), indent=2).encode()
    assert decode(pretty) == decode(raw(LEADERBOARD))


def test_event_type_inside_data_does_not_confuse_the_dispatch() -> None:
    payload = {**ACHIEVEMENT, "data": {"achievement_id": "a", "event_type": "streak_milestone"}}
    event = decode(raw(payload))
    assert isinstance(event, AchievementCompleted)
    assert event.data.achievement_id == "a"


def test_escaped_event_type_key_still_decodes() -> None:
    escaped = raw(ACHIEVEMENT).replace(b'"event_type"', b'"event\\u005ftype"')
    assert isinstance(decode(escaped), AchievementCompleted)


# --- poison ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"", None])
def test_empty_record(value: bytes | None) -> None:
    assert poison(value).code == "empty"


@pytest.mark.parametrize(
    "value",
    [
        b"hello",
        b"   ",
        b"{event_type: achievement_completed}",
        raw(ACHIEVEMENT)[:-5],  # truncated
        b'{"event_type": "achievement_completed", "data": }',
        b"\xff\xfe\x00garbage",  # invalid UTF-8, no event type in sight
        b'\xff{"event_type": "achievement_completed"}',  # invalid UTF-8 before valid JSON
        raw(ACHIEVEMENT).replace(b"first-win", b"first-\xffwin"),  # invalid UTF-8 in a value
        b"[" * 100_000,  # nested past the parser's recursion limit
        b'{"payload": ' + b"1" * 5000 + b"}",  # a number Python refuses to parse
    ],
    ids=[
        "text",
        "blank",
        "unquoted",
        "truncated",
        "missing-value",
        "bad-utf8",
        "bad-utf8-prefix",
        "bad-utf8-inside",
        "too-deep",
        "huge-number",
    ],
)
def test_not_json(value: bytes) -> None:
    assert poison(value).code == "not_json"


@pytest.mark.parametrize(
    "value",
    [b"[]", raw([ACHIEVEMENT]), b"42", b'"achievement_completed"', b"null", b"true"],
    ids=["empty-array", "array-of-event", "number", "string", "null", "bool"],
)
def test_json_that_is_not_an_object(value: bytes) -> None:
    assert poison(value).code == "schema_violation"


@pytest.mark.parametrize(
    "event_type", ["coupon.issued", "Achievement_Completed", "achievement", "level_up", ""]
)
def test_unknown_event_type(event_type: str) -> None:
    error = poison(raw({**ACHIEVEMENT, "event_type": event_type}))
    assert error.code == "unknown_event_type"
    assert repr(event_type) in error.message


def test_missing_event_type() -> None:
    payload = {k: v for k, v in ACHIEVEMENT.items() if k != "event_type"}
    error = poison(raw(payload))
    assert error.code == "schema_violation"
    assert "event_type" in error.message


@pytest.mark.parametrize("event_type", [None, 3, ["achievement_completed"]])
def test_event_type_that_is_not_a_string(event_type: Any) -> None:
    error = poison(raw({**ACHIEVEMENT, "event_type": event_type}))
    assert error.code == "schema_violation"
    assert "event_type" in error.message


def _without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


def _with_data(payload: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {**payload, "data": {**payload["data"], **data}}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_without(ACHIEVEMENT, "data"), "data"),
        (_without(STREAK, "data"), "data"),
        (_without(LEADERBOARD, "data"), "data"),
        (_without(ACHIEVEMENT, "event_id"), "event_id"),
        (_without(STREAK, "tenant_id"), "tenant_id"),
        (_without(LEADERBOARD, "user_id"), "user_id"),
        (_without(ACHIEVEMENT, "occurred_at"), "occurred_at"),
        ({**ACHIEVEMENT, "data": {}}, "data.achievement_id"),
        ({**STREAK, "data": {"streak_id": "s"}}, "data.streak_length"),
        ({**LEADERBOARD, "data": {"leaderboard_id": "weekly"}}, "data.rank"),
        (_with_data(LEADERBOARD, rank=0), "data.rank"),
        (_with_data(LEADERBOARD, rank=-1), "data.rank"),
        (_with_data(LEADERBOARD, rank="first"), "data.rank"),
        (_with_data(STREAK, streak_length=-1), "data.streak_length"),
        (_with_data(STREAK, streak_started_at="2025-01-09T00:00:00"), "data.streak_started_at"),
        ({**ACHIEVEMENT, "occurred_at": "2025-01-15T10:00:00"}, "occurred_at"),
        ({**ACHIEVEMENT, "occurred_at": "yesterday"}, "occurred_at"),
        ({**ACHIEVEMENT, "user_id": ""}, "user_id"),
        ({**ACHIEVEMENT, "tenant_id": "t" * 256}, "tenant_id"),
        ({**ACHIEVEMENT, "data": "first-win"}, "data"),
        (_with_data(ACHIEVEMENT, achievement_id=None), "data.achievement_id"),
    ],
    ids=[
        "achievement-no-data",
        "streak-no-data",
        "leaderboard-no-data",
        "no-event-id",
        "no-tenant",
        "no-user",
        "no-occurred-at",
        "no-achievement-id",
        "no-streak-length",
        "no-rank",
        "rank-0",
        "rank-negative",
        "rank-text",
        "streak-length-negative",
        "naive-streak-start",
        "naive-occurred-at",
        "occurred-at-text",
        "empty-user",
        "tenant-too-long",
        "data-not-object",
        "achievement-id-null",
    ],
)
def test_schema_violation(payload: dict[str, Any], field: str) -> None:
    error = poison(raw(payload))
    assert error.code == "schema_violation"
    assert error.message.startswith(f"{field}:") or f"; {field}:" in error.message, error.message
