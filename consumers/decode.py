"""Record bytes -> inbound event.

Fast path: msgspec decodes and validates a whole batch in one call, into the domain's structs
(`phoenix_coupons/domain/inbound.py`). What it refuses is decided record by record by the
contract (`schemas/inbound.py`, pydantic), dispatched on `event_type` to the family decoders:
the contract's coercions still hold and each bad record gets the contract's reason."""

import json
import re
from collections.abc import Callable, Sequence
from typing import cast

import msgspec

from consumers import achievements, leaderboards, streaks
from consumers.poison import PoisonRecord
from phoenix_coupons.domain.inbound import Event

DECODERS: dict[str, Callable[[bytes], Event]] = {
    achievements.EVENT_TYPE: achievements.decode,
    streaks.EVENT_TYPE: streaks.decode,
    leaderboards.EVENT_TYPE: leaderboards.decode,
}
# Finds the event type without a full parse; a full parse decides when this is ambiguous.
EVENT_TYPE = re.compile(rb'"event_type"\s*:\s*"([a-z_]+)"')


_FAST_ONE: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_FAST_BATCH: msgspec.json.Decoder[list[Event]] = msgspec.json.Decoder(list[Event])
# msgspec rounds fractional seconds past the sixth digit where the contract truncates them:
# such a record goes to the contract, so an occurrence key never depends on the path taken.
_SUB_MICROSECOND = re.compile(rb"\.\d{7}")
# What msgspec raises on a record it refuses (bad UTF-8 inside a string is a ValueError).
_REFUSED = (msgspec.DecodeError, ValueError, RecursionError)


def decode(value: bytes | None) -> Event:
    if not value:
        raise PoisonRecord("empty", "the record has no value")
    if not _SUB_MICROSECOND.search(value):
        try:
            return _FAST_ONE.decode(value)
        except _REFUSED:
            pass
    return _by_contract(value)


def _by_contract(value: bytes) -> Event:
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


def decode_batch(values: Sequence[bytes | None]) -> Sequence[Event | PoisonRecord]:
    """`decode` for a whole batch: one call for all records when they are all good (the
    values are spliced into one JSON array), else record by record, so that each bad record
    gets its own reason. Same results as `decode` either way."""
    if values and all(values):
        joined = b"[" + b",".join(cast("Sequence[bytes]", values)) + b"]"
        if not _SUB_MICROSECOND.search(joined):
            try:
                events = _FAST_BATCH.decode(joined)
            except _REFUSED:
                pass
            else:
                # Each value is at least one element; equal counts mean one each, in order.
                if len(events) == len(values):
                    return events
    out: list[Event | PoisonRecord] = []
    for value in values:
        try:
            out.append(decode(value))
        except PoisonRecord as exc:
            out.append(exc)
    return out
