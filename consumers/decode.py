"""Record bytes -> inbound event, dispatched on `event_type` to the family decoders."""

import json
import re
from collections.abc import Callable, Sequence

from pydantic import TypeAdapter, ValidationError

from consumers import achievements, leaderboards, streaks
from consumers.poison import PoisonRecord
from phoenix_coupons.domain.matching import Event
from schemas.inbound import InboundEvent

DECODERS: dict[str, Callable[[bytes], Event]] = {
    achievements.EVENT_TYPE: achievements.decode,
    streaks.EVENT_TYPE: streaks.decode,
    leaderboards.EVENT_TYPE: leaderboards.decode,
}
# Finds the event type without a full parse; a full parse decides when this is ambiguous.
EVENT_TYPE = re.compile(rb'"event_type"\s*:\s*"([a-z_]+)"')


def decode(value: bytes | None) -> Event:
    if not value:
        raise PoisonRecord("empty", "the record has no value")
    found = EVENT_TYPE.findall(value)
    event_type = found[0].decode() if len(found) == 1 else _event_type(value)
    decoder = DECODERS.get(event_type)
    if decoder is None:
        raise PoisonRecord(
            "unknown_event_type",
            f"event_type {event_type!r} is not one of {', '.join(sorted(DECODERS))}",
        )
    return decoder(value)


def _event_type(value: bytes) -> str:
    try:
        payload = json.loads(value)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too deep, huge numbers
        raise PoisonRecord("not_json", f"the record is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise PoisonRecord("schema_violation", "the record must be a JSON object")
    event_type = payload.get("event_type")
    if "event_type" not in payload:
        raise PoisonRecord("schema_violation", "event_type: Field required")
    if not isinstance(event_type, str):
        raise PoisonRecord("schema_violation", "event_type: Input should be a valid string")
    return event_type


# All the families at once, for the fast path of a batch whose records are all good.
_BATCH = TypeAdapter(list[InboundEvent])


def decode_batch(values: Sequence[bytes | None]) -> list[Event | PoisonRecord]:
    """`decode` for a whole batch: one validation call for all records when they are all good
    (a record's value is spliced into one JSON array), else record by record, so that each
    bad record gets its own reason. Same results as `decode` either way."""
    if values and all(values):
        joined = b"[" + b",".join(v for v in values if v) + b"]"
        try:
            events: list[Event] = _BATCH.validate_json(joined)
        except ValidationError:
            pass
        else:
            # Each value is at least one element; equal counts mean one each, in order.
            if len(events) == len(values):
                return list(events)
    out: list[Event | PoisonRecord] = []
    for value in values:
        try:
            out.append(decode(value))
        except PoisonRecord as exc:
            out.append(exc)
    return out
