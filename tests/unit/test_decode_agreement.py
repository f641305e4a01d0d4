"""The fast decoder (msgspec structs) may never disagree with the contract (pydantic models in
schemas/inbound.py): on every record `decode` answers what the contract alone answers, the
same poison reason or the same event, down to the text of its times (occurrence keys are built
from them)."""

import gc
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.decode import _FAST_ONE, _by_contract, decode
from consumers.poison import PoisonRecord
from phoenix_coupons.domain.matching import occurrence

TIMES = [
    "2025-01-15T10:00:00Z",
    "2025-01-15T10:00:00+02:00",
    "2025-01-15T10:00:00-00:00",
    "2025-01-15T10:00:00.5Z",
    "2025-01-15T10:00:00.123456Z",
    "2025-01-15T10:00:00.1234567Z",  # past microseconds: the contract truncates
    "2025-01-15T10:00:00.999999999Z",
    "2025-01-15T23:59:59.9999995+05:30",
    "2025-01-15 10:00:00Z",
    "2025-01-15t10:00:00z",
    "2025-01-15T10:00Z",
    "2025-01-15T10:00:00",  # naive: refused
    "2025-01-15T10:00:00+0200",
    "2025-01-15T10:00:00+02",
    "2025-01-15T24:00:00Z",
    "2025-01-15T10:00:60Z",
    "2025-02-30T10:00:00Z",
    "2025-01-15",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "",
]
STRINGS = ["", "a", "x" * 255, "x" * 256, "é" * 255, "😀" * 255, "😀" * 256, "a\u0000b", " "]
INTS: list[Any] = [-1, 0, 1, 7, 2**63, 2**64, 10**30, 7.0, 7.5, "7", True, None, [], {}]
VALUES: list[Any] = [None, 3, 1.5, True, [], {}, "s"]

FAMILIES: dict[str, dict[str, Any]] = {
    "achievement_completed": {"achievement_id": "ach-1"},
    "streak_milestone": {
        "streak_id": "s-1",
        "streak_length": 7,
        "streak_started_at": "2025-01-09T00:00:00Z",
    },
    "leaderboard_rank": {"leaderboard_id": "lb-1", "rank": 3, "period_id": "2025-W03"},
}


def _field_values(name: str) -> st.SearchStrategy[Any]:
    if name in ("occurred_at", "streak_started_at"):
        return st.sampled_from([*TIMES, *VALUES, 1736935200, 1736935200.5])
    if name in ("streak_length", "rank"):
        return st.sampled_from(INTS)
    if name == "event_type":
        return st.sampled_from([*FAMILIES, "level_up", "", None, 3])
    return st.one_of(st.sampled_from([*STRINGS, *VALUES]), st.text(max_size=8))


@st.composite
def records(draw: st.DrawFn) -> bytes:
    family = draw(st.sampled_from(sorted(FAMILIES)))
    body: dict[str, Any] = {
        "event_id": "e-1",
        "event_type": family,
        "tenant_id": "t1",
        "user_id": "u1",
        "occurred_at": "2025-01-15T10:00:00Z",
        "data": dict(FAMILIES[family]),
    }
    for _ in range(draw(st.integers(0, 3))):
        where = body if draw(st.booleans()) or not body["data"] else body["data"]
        name = draw(st.sampled_from(sorted(where)))
        action = draw(st.sampled_from(["set", "set", "drop", "extra"]))
        if action == "drop":
            where.pop(name)
        elif action == "extra":
            where[draw(st.sampled_from(["extra", "schema_version", "Event_Type"]))] = 1
        else:
            where[name] = draw(_field_values(name))
        if not isinstance(body.get("data"), dict):
            break
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


def _answer(fn: Any, value: bytes) -> Any:
    try:
        event = fn(value)
    except PoisonRecord as exc:
        return ("poison", exc.code, exc.message)
    # Times compared as text, offsets included: equal instants are not enough for keys.
    return ("event", msgspec.json.encode(event), occurrence(event))


@settings(max_examples=1500, deadline=None)
@given(records())
def test_decode_answers_what_the_contract_answers(value: bytes) -> None:
    assert _answer(decode, value) == _answer(_by_contract, value)


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("field", ["occurred_at", "streak_started_at"])
def test_every_time_format(time: str, field: str) -> None:
    body: dict[str, Any] = {
        "event_id": "e-1",
        "event_type": "streak_milestone",
        "tenant_id": "t1",
        "user_id": "u1",
        "occurred_at": "2025-01-15T10:00:00Z",
        "data": dict(FAMILIES["streak_milestone"]),
    }
    (body if field == "occurred_at" else body["data"])[field] = time
    value = json.dumps(body).encode()
    assert _answer(decode, value) == _answer(_by_contract, value)


def test_the_fast_path_takes_the_usual_record() -> None:
    """Not a tautology: the usual record must not fall back on the contract."""
    value = json.dumps({**_usual(), "data": FAMILIES["streak_milestone"]}).encode()
    assert isinstance(_FAST_ONE.decode(value), msgspec.Struct)


def _usual() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "event_type": "streak_milestone",
        "tenant_id": "t1",
        "user_id": "u1",
        "occurred_at": "2025-01-15T10:00:00.123456+00:00",
    }


def test_events_are_not_tracked_by_the_garbage_collector() -> None:
    """Why the structs exist: a batch of tracked objects made the worker's collections cost
    more than its decoding."""
    event = decode(json.dumps({**_usual(), "data": FAMILIES["streak_milestone"]}).encode())
    assert not gc.is_tracked(event)
    assert not gc.is_tracked(event.data)
