"""Free-form JSON objects clients send. A reward item's payload is held to what everything
that stores or forwards it can take: bounded nesting, integers MongoDB stores (64-bit),
finite numbers (JSON has no NaN or Infinity, though Python's parser accepts them), text that
is valid UTF-8 (no lone surrogates) and keys MongoDB accepts without special handling (no `$`
prefix, no NUL). Its size is bounded by `PHOENIX_REWARD_PAYLOAD_MAX_BYTES` (checked by the
service). A request's `metadata` is held to the same (metadata.py). A config merge patch
only has its nesting bounded here."""

import math
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

MAX_DEPTH = 16  # `{}` is one level, `{"a": {}}` two
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def json_issue(value: Any, max_depth: int = MAX_DEPTH, values: bool = True) -> str | None:
    """Why `value` (as parsed from JSON) is not accepted, or None. `values`: check the keys
    and values too, not only the nesting."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        at = f" (at {where[:100]})" if where else ""
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"must be nested at most {max_depth} levels deep{at}"
            if isinstance(item, list):
                stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(item))
                continue
            for key, child in item.items():
                stack.append((child, depth + 1, f"{where}.{key}" if where else key))
                if not values:
                    continue
                if not _utf8(key):
                    return f"keys must be valid UTF-8 text{at}"
                if key.startswith("$") or "\x00" in key:
                    shown = repr(key[:50])
                    return f"keys must not start with '$' or hold NUL characters{at}: {shown}"
        elif not values or isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return f"each integer must fit in 64 bits (-2**63 to 2**63-1){at}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"numbers must be finite (no NaN or Infinity){at}"
        elif isinstance(item, str) and not _utf8(item):
            return f"text must be valid UTF-8 (no lone surrogates){at}"
    return None


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _checked(value: dict[str, Any], values: bool = True) -> dict[str, Any]:
    reason = json_issue(value, values=values)
    if reason is not None:
        raise PydanticCustomError("json_value", "{reason}", {"reason": reason})
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_checked)]
# A merge patch of a typed document: its values are judged once merged, by the document's
# model (which names each field); only the nesting is bounded here.
JsonPatch = Annotated[dict[str, Any], AfterValidator(lambda v: _checked(v, values=False))]
