"""The cursor of a list's next page as a response header: every list sends it, and the
definitions lists, whose body the spec fixes, send it only there."""

from typing import Any

from fastapi import Response

NEXT_AFTER = "X-Next-After"
CURSOR_HEADER: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            NEXT_AFTER: {
                "description": "Present when more items follow: pass it as `after` for the "
                "next page.",
                "schema": {"type": "string"},
            }
        }
    }
}


def send_cursor(response: Response, next_after: str | None) -> None:
    if next_after is not None:
        response.headers[NEXT_AFTER] = next_after
