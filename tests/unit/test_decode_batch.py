"""`decode_batch` must answer exactly what `decode` answers record by record, whatever the
batch holds: its one-call fast path may never shift, merge or drop a record."""

import json
from typing import Any

import pytest

from consumers.decode import decode, decode_batch
from consumers.poison import PoisonRecord


def event(i: int, **overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "event_id": f"e-{i}",
        "event_type": "streak_milestone",
        "tenant_id": "t1",
        "user_id": f"u-{i}",
        "occurred_at": "2025-01-15T10:00:00Z",
        "data": {"streak_id": "s1", "streak_length": 7},
    }
    body.update(overrides)
    return json.dumps(body).encode()


def one_by_one(values: list[bytes | None]) -> list[object]:
    out: list[object] = []
    for value in values:
        try:
            out.append(decode(value))
        except PoisonRecord as exc:
            out.append((exc.code, exc.message))
    return out


def batched(values: list[bytes | None]) -> list[object]:
    return [(d.code, d.message) if isinstance(d, PoisonRecord) else d for d in decode_batch(values)]


GOOD = [event(i) for i in range(5)]
# Values that would change the shape of a spliced JSON array if they were trusted.
SPLICERS = [
    event(90) + b"," + event(91),  # two events in one record
    event(92) + b"]",
    b"[" + event(93),
    b"{}],[{}",
    b" ",
    b"1",
]


@pytest.mark.parametrize("bad", [*SPLICERS, None, b"", b"not json", event(7, event_type="x")])
@pytest.mark.parametrize("where", [0, 2, 5])
def test_a_bad_record_anywhere_gets_its_own_answer_and_moves_nothing(
    bad: bytes | None, where: int
) -> None:
    values: list[bytes | None] = [*GOOD]
    values.insert(where, bad)
    assert batched(values) == one_by_one(values)
    assert isinstance(decode_batch(values)[where], PoisonRecord)


def test_an_all_good_batch_decodes_every_record_in_order() -> None:
    decoded = decode_batch(GOOD)
    assert [e.event_id for e in decoded if not isinstance(e, PoisonRecord)] == [
        f"e-{i}" for i in range(5)
    ]
    assert batched(GOOD) == one_by_one(GOOD)


def test_every_family_and_an_empty_batch() -> None:
    mixed = [
        event(1),
        event(2, event_type="achievement_completed", data={"achievement_id": "a"}),
        event(3, event_type="leaderboard_rank", data={"leaderboard_id": "l", "rank": 2}),
    ]
    assert batched(mixed) == one_by_one(mixed)
    assert decode_batch([]) == []


def test_two_records_that_are_not_json_alone_never_decode_as_two_events() -> None:
    """Spliced into one array, record 1 (an event, then the start of a
    second one whose last field opens a string) and record 2 (the string's end and the
    brace) make two valid elements; neither record is an event."""
    first = event(1)
    second = event(2)[:-1] + b', "pad": "'
    split = [first + b", " + second, b'"}']
    assert [(d.code) for d in decode_batch(split) if isinstance(d, PoisonRecord)] == [
        "not_json",
        "not_json",
    ]
    assert batched(split) == one_by_one(split)
    # Among good records too, in any position.
    for where in (0, 2, 5):
        values: list[bytes | None] = [*GOOD]
        values[where:where] = split
        assert batched(values) == one_by_one(values)
