"""A request body is JSON in UTF-8. Whatever the bytes, a body the service cannot read answers
422 `validation_error` naming `body` and why (never 400 without a field, never a 500): bytes
that are not UTF-8, bytes that decode but are not JSON, JSON nested too deeply to parse."""

import json
from typing import Any

import httpx
import pytest

from tests.integration.test_openapi import assert_error

Json = dict[str, Any]


async def post_raw(client: httpx.AsyncClient, tenant: str, admin: Json, raw: bytes) -> Json:
    response = await client.post(
        f"/v1/tenants/{tenant}/rewards",
        content=raw,
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    body = assert_error(response, 422, "validation_error", ["body"])
    return body


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff", "is not valid UTF-8: byte 0xff at position 0"),
        (b"\xc3\x28", "is not valid UTF-8: byte 0xc3 at position 0"),
        (b'{"name": "caf\xe9"}', "is not valid UTF-8: byte 0xe9 at position 13"),
        (b"\x80abc", "is not valid UTF-8: byte 0x80 at position 0"),
        # A byte order mark of UTF-16 makes Python's JSON reader decode UTF-16: not JSON then.
        (b"\xff\xfe", "malformed JSON at character 0"),
        (b"\xfe\xff", "malformed JSON at character 0"),
        (b"not json", "malformed JSON at character 0"),
    ],
    ids=[
        "ff",
        "c3-28",
        "latin-1-in-string",
        "continuation",
        "utf16-le-bom",
        "utf16-be-bom",
        "text",
    ],
)
async def test_an_unreadable_body_names_the_body(
    client: httpx.AsyncClient, admin: Json, tenant: str, raw: bytes, reason: str
) -> None:
    body = await post_raw(client, tenant, admin, raw)
    assert body["details"][0]["reason"].startswith(reason), body


async def test_json_nested_too_deeply_to_parse_names_the_body(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    raw = b'{"name": "n", "reward_type": "points", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    body = await post_raw(client, tenant, admin, raw)
    assert "nested too deeply" in body["details"][0]["reason"], body


async def test_utf8_with_or_without_a_byte_order_mark_is_read(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    text = json.dumps({"name": "café", "reward_type": "points", "payload": {}})
    for raw in (text.encode(), b"\xef\xbb\xbf" + text.encode()):
        response = await client.post(
            f"/v1/tenants/{tenant}/rewards",
            content=raw,
            headers={**admin["headers"], "Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "café"
