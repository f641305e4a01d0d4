"""Writes the committed contract files from the models: a JSON Schema per Kafka event and
an AsyncAPI 3.0 document of every topic. `python -m schemas.export` (or `make schemas`);
tests/unit/test_contract_drift.py fails when the committed files differ from the models."""

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from schemas import topics
from schemas.events import (
    CouponExpired,
    CouponExpiring,
    CouponIssued,
    CouponRedeemed,
    CouponReserved,
    DefinitionExhausted,
    GenerationJobCompleted,
    RedemptionRolledBack,
    ReservationReleased,
)
from schemas.inbound import AchievementCompleted, LeaderboardRank, StreakMilestone

OUT = Path(__file__).parent / "generated"

EVENTS: dict[str, type[BaseModel]] = {
    "achievement_completed": AchievementCompleted,
    "streak_milestone": StreakMilestone,
    "leaderboard_rank": LeaderboardRank,
    "coupon.issued": CouponIssued,
    "coupon.definition_exhausted": DefinitionExhausted,
    "coupon.generation_job.completed": GenerationJobCompleted,
    "coupon.redeemed": CouponRedeemed,
    "coupon.redemption_rolled_back": RedemptionRolledBack,
    "coupon.reserved": CouponReserved,
    "coupon.reservation_released": ReservationReleased,
    "coupon.expiring": CouponExpiring,
    "coupon.expired": CouponExpired,
}

# At the default topic names (each is configurable).
CHANNELS: dict[str, dict[str, Any]] = {
    "achievements": {
        "address": topics.ACHIEVEMENTS,
        "messages": ["achievement_completed"],
        "in": True,
        "description": "Upstream achievement service: one record per completed achievement.",
    },
    "streaks": {
        "address": topics.STREAKS,
        "messages": ["streak_milestone"],
        "in": True,
        "description": "Upstream streak service: one record per streak milestone.",
    },
    "leaderboards": {
        "address": topics.LEADERBOARDS,
        "messages": ["leaderboard_rank"],
        "in": True,
        "description": "Upstream leaderboard service: one record per user rank at a period end.",
    },
    "couponsIssued": {
        "address": topics.COUPONS_ISSUED,
        "messages": [
            "coupon.issued",
            "coupon.definition_exhausted",
            "coupon.generation_job.completed",
        ],
        "in": False,
        "description": "Every issued coupon, whatever its source (event or bulk), and every "
        "unassigned code a generation job makes (user_id null, kind unassigned, key "
        "coupon_id). At least "
        "once (exactly once for read_committed consumers with PHOENIX_EXACTLY_ONCE=true for "
        "event-issued coupons); deduplicate by event_id. Also, once per definition and "
        "limit, coupon.definition_exhausted (key definition_id) when a definition's "
        "issuance limit is reached; once per generation job, "
        "coupon.generation_job.completed (key definition_id) when it ends.",
    },
    "couponsRedeemed": {
        "address": topics.COUPONS_REDEEMED,
        "messages": [
            "coupon.redeemed",
            "coupon.redemption_rolled_back",
            "coupon.reserved",
            "coupon.reservation_released",
        ],
        "in": False,
        "description": "Every redemption and every rollback of one, with the reward item's "
        "snapshot, for the reward service to grant or reverse; every hold (reservation) "
        "of a use and its end (released, expired or confirmed). At least once; deduplicate "
        "by event_id. A rollback follows its redemption on the same partition (key user_id).",
    },
    "couponsExpiry": {
        "address": topics.COUPONS_EXPIRY,
        "messages": ["coupon.expiring", "coupon.expired"],
        "in": False,
        "description": "Expiry reminders (one per lead time of remind_before, for a user's "
        "unredeemed coupon) and expiries (a user's coupon expired with uses left), published "
        "by the expiry scheduler. At least once on the wire, each published once by the "
        "service; deduplicate by event_id.",
    },
    "deadLetters": {
        "address": topics.DEAD_LETTERS,
        "messages": ["dead_letter"],
        "in": False,
        "description": "Inbound records that could not be processed: the original key and "
        "bytes, the error in headers dlq_error_kind, dlq_error, dlq_source_topic, "
        "dlq_source_partition, dlq_source_offset, dlq_failed_at.",
    },
}


def _file_name(event: str) -> str:
    return event.replace(".", "_") + ".schema.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, model in EVENTS.items():
        # Inbound: what producers may send; outbound: what consumers receive.
        mode: Literal["validation", "serialization"] = (
            "serialization" if name.startswith("coupon.") else "validation"
        )
        schema = model.model_json_schema(mode=mode)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = _file_name(name)
        out[_file_name(name)] = schema
    return out


# A record's key, where it is not the user's id.
KEYS = {
    "coupon.issued": "user_id; coupon_id for an unassigned code (user_id null)",
    "coupon.definition_exhausted": "definition_id",
    "coupon.generation_job.completed": "definition_id",
}


def _message(name: str) -> dict[str, Any]:
    if name == "dead_letter":
        return {
            "name": name,
            "title": "Dead letter",
            "summary": "The original record's bytes, unchanged.",
            "contentType": "application/octet-stream",
            "payload": {"type": "string", "format": "binary"},
        }
    model = EVENTS[name]
    return {
        "name": name,
        "title": model.__name__,
        "contentType": "application/json",
        "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else name,
        "payload": {"$ref": f"./{_file_name(name)}"},
        "bindings": {
            "kafka": {"key": {"type": "string", "description": KEYS.get(name, "user_id")}}
        },
    }


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel, spec in CHANNELS.items():
        channels[channel] = {
            "address": spec["address"],
            "description": spec["description"],
            "messages": {m.replace(".", "_"): _message(m) for m in spec["messages"]},
        }
        operations[("consume" if spec["in"] else "publish") + channel[0].upper() + channel[1:]] = {
            "action": "receive" if spec["in"] else "send",
            "channel": {"$ref": f"#/channels/{channel}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Phoenix Coupons events",
            "version": "1.0.0",
            "description": "Kafka contracts of the coupon service: JSON, UTF-8, one event per "
            "record, key = user_id. Inbound events ignore unknown fields.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
    }


def rendered() -> dict[str, str]:
    files = {name: schema for name, schema in json_schemas().items()}
    files["asyncapi.json"] = asyncapi()
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in files.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(rendered())} files to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
