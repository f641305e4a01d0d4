"""`metadata`: a client's free-form object stored with what a request makes (bulk coupons,
redemptions, holds) and carried by its events. Held to what everything that stores or
forwards it takes (free_json.py: keys, values, nesting) and to `METADATA_MAX_BYTES` as
compact UTF-8 JSON, so that no request can grow a document or an event without limit."""

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from schemas.bounds import METADATA_MAX_BYTES
from schemas.free_json import JsonObject


def serialized_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON (as stored and sent)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    size = serialized_size(value)
    if size > METADATA_MAX_BYTES:
        raise PydanticCustomError(
            "metadata_too_large",
            "must be at most {limit} bytes serialized as JSON, not {size}",
            {"limit": METADATA_MAX_BYTES, "size": size},
        )
    return value


Metadata = Annotated[
    JsonObject,
    AfterValidator(_bounded),
    Field(
        description=f"Free-form object with string keys, at most {METADATA_MAX_BYTES} bytes "
        "as JSON; stored and carried by the events.",
        json_schema_extra={"examples": [{"campaign": "spring", "batch": 3}]},
    ),
]
