"""Every value a client sends has a bound: the request body size (413,
also for chunked bodies), the reward payload (size, depth, values MongoDB can store), string
lengths and integer ranges (422 naming the field and the limit), never a 500."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from phoenix_coupons.bootstrap import Container
from tests.integration.test_openapi import assert_error

Json = dict[str, Any]
MIB = 1024 * 1024
PAYLOAD_MAX = 16 * 1024
INT_MAX = 2**31 - 1


def rewards_url(tenant: str, *rest: str) -> str:
    return "/".join([f"/v1/tenants/{tenant}/rewards", *rest])


def coupons_url(tenant: str, *rest: str) -> str:
    return "/".join([f"/v1/tenants/{tenant}/coupons", *rest])


def compact_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def padded(size: int, char: str = "x") -> Json:
    """A payload whose compact JSON serialization is exactly `size` bytes."""
    overhead = compact_size({"pad": ""})
    unit = len(char.encode())
    assert (size - overhead) % unit == 0
    payload = {"pad": char * ((size - overhead) // unit)}
    assert compact_size(payload) == size
    return payload


def nested(depth: int) -> Json:
    """An object nested `depth` levels deep (`{}` is one level)."""
    value: Json = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def reward_body(**changes: Any) -> Json:
    return {"name": "Points", "reward_type": "points", "payload": {"amount": 1}, **changes}


async def create_reward(
    client: httpx.AsyncClient, tenant: str, admin: Json, **changes: Any
) -> Json:
    response = await client.post(
        rewards_url(tenant), json=reward_body(**changes), headers=admin["headers"]
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def random_config(item_id: str, **changes: Any) -> Json:
    return {
        "reward_item_id": item_id,
        "code_format": "random",
        "code_prefix": "BOUND",
        "code_length": 8,
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        **changes,
    }


def reasons(body: Json, field: str) -> list[str]:
    return [d["reason"] for d in body["details"] if d["field"] == field]


async def custom_definition(
    client: httpx.AsyncClient, tenant: str, admin: Json, reward: Json, code: str
) -> str:
    """A custom-format definition of the shared `code`; returns its id."""
    config = {
        "reward_item_id": reward["item_id"],
        "code_format": "custom",
        "custom_code": code,
        "usage_limit": {"limit_type": "unlimited"},
    }
    created = await client.post(
        coupons_url(tenant), json={"name": code, "config": config}, headers=admin["headers"]
    )
    assert created.status_code == 201, created.text
    definition_id: str = created.json()["id"]
    return definition_id


# ---------------------------------------------------------------- request body size


async def test_body_over_the_limit_with_content_length_is_413(
    client: httpx.AsyncClient, container: Container, admin: Json, tenant: str
) -> None:
    limit = container.settings.api_max_body_bytes
    assert limit == MIB
    body = b"{" + b" " * (limit - 1) + b"}"  # valid JSON, one byte over
    for method, url in (
        ("POST", rewards_url(tenant)),
        ("PUT", rewards_url(tenant, "some-id")),
        ("POST", coupons_url(tenant, "validate")),
        ("GET", rewards_url(tenant)),
        ("POST", "/v1/nowhere"),
    ):
        response = await client.request(
            method,
            url,
            content=body,
            headers={**admin["headers"], "Content-Type": "application/json"},
        )
        answer = assert_error(response, 413, "payload_too_large", ["body"])
        assert str(limit) in answer["message"], answer
        assert str(limit) in reasons(answer, "body")[0], answer


async def test_body_at_the_limit_is_read(
    client: httpx.AsyncClient, container: Container, admin: Json, tenant: str
) -> None:
    limit = container.settings.api_max_body_bytes
    text = json.dumps(reward_body())
    body = text[:-1] + " " * (limit - len(text)) + "}"
    assert len(body.encode()) == limit
    response = await client.post(
        rewards_url(tenant),
        content=body.encode(),
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


async def test_chunked_body_over_the_limit_is_413_before_it_is_all_read(
    client: httpx.AsyncClient, container: Container, admin: Json, tenant: str
) -> None:
    """No Content-Length: the streamed bytes are counted, and reading stops at the limit."""
    limit = container.settings.api_max_body_bytes
    chunk = 64 * 1024
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"{"
        for _ in range(10_000):  # 640 MiB if it were all read
            sent += chunk
            yield b" " * chunk

    response = await client.post(
        rewards_url(tenant),
        content=endless(),
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    answer = assert_error(response, 413, "payload_too_large", ["body"])
    assert str(limit) in answer["message"]
    assert sent <= limit + 2 * chunk, sent


async def test_chunked_body_under_the_limit_is_accepted(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    text = json.dumps(reward_body(name="Chunked")).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(text), 7):
            yield text[i : i + 7]

    response = await client.post(
        rewards_url(tenant),
        content=pieces(),
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Chunked"


async def test_generate_takes_ten_thousand_longest_user_ids_and_codes(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    """Bulk generation keeps its own, larger cap: a full request of 255-character user ids
    and custom codes (about 5 MB) is read and validated (409: the definition is paused)."""
    definition_id = await custom_definition(client, tenant, admin, reward, "SHAREDBULK")
    paused = await client.put(
        coupons_url(tenant, definition_id, "status"),
        json={"status": "paused"},
        headers=admin["headers"],
    )
    assert paused.status_code == 200, paused.text
    count = container.settings.bulk_max_users
    body = {
        "user_ids": [f"u{i:05d}".ljust(255, "x") for i in range(count)],
        "custom_codes": [f"C{i:05d}".ljust(255, "Z") for i in range(count)],
    }
    content = json.dumps(body).encode()
    assert len(content) > 4 * container.settings.api_max_body_bytes
    assert len(content) < container.settings.generate_max_body_bytes
    response = await client.post(
        coupons_url(tenant, definition_id, "generate"),
        content=content,
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    assert_error(response, 409, "definition_paused")


async def test_generate_body_over_its_own_cap_is_413(
    client: httpx.AsyncClient, container: Container, admin: Json, tenant: str
) -> None:
    settings = container.settings
    cap = settings.generate_max_body_bytes
    assert cap == settings.api_max_body_bytes + settings.bulk_max_users * 2048
    response = await client.post(
        coupons_url(tenant, "some-definition", "generate"),
        content=b" " * (cap + 1),
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    answer = assert_error(response, 413, "payload_too_large", ["body"])
    assert str(cap) in answer["message"]


# ---------------------------------------------------------------- reward payload


async def test_payload_of_the_limit_is_accepted_and_one_byte_more_refused(
    client: httpx.AsyncClient, container: Container, admin: Json, tenant: str
) -> None:
    assert container.settings.reward_payload_max_bytes == PAYLOAD_MAX
    for char in ("x", "é"):  # bytes of UTF-8 count, not characters
        item = await create_reward(client, tenant, admin, payload=padded(PAYLOAD_MAX, char))
        assert compact_size(item["payload"]) == PAYLOAD_MAX
    too_big = padded(PAYLOAD_MAX + 1)
    response = await client.post(
        rewards_url(tenant), json=reward_body(payload=too_big), headers=admin["headers"]
    )
    answer = assert_error(response, 422, "validation_error", ["payload"])
    assert str(PAYLOAD_MAX) in reasons(answer, "payload")[0]
    # An update is held to the same limit, and leaves the item as it was.
    item = await create_reward(client, tenant, admin)
    url = rewards_url(tenant, item["item_id"])
    response = await client.put(url, json={"payload": too_big}, headers=admin["headers"])
    answer = assert_error(response, 422, "validation_error", ["payload"])
    assert str(PAYLOAD_MAX) in reasons(answer, "payload")[0]
    stored = await client.get(url, headers=admin["headers"])
    assert stored.json()["payload"] == {"amount": 1}


async def test_payload_depth_is_bounded(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    item = await create_reward(client, tenant, admin, payload=nested(16))
    assert item["payload"] == nested(16)
    for payload in (nested(17), {"list": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}, nested(500)):
        response = await client.post(
            rewards_url(tenant), json=reward_body(payload=payload), headers=admin["headers"]
        )
        answer = assert_error(response, 422, "validation_error", ["payload"])
        assert "16" in reasons(answer, "payload")[0]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"amount": 1180591620717411303424}', "integer"),  # 2**70
        ('{"amount": -9223372036854775809}', "integer"),  # below int64
        ('{"amount": NaN}', "finite"),
        ('{"amount": Infinity}', "finite"),
        ('{"amount": [1, -Infinity]}', "finite"),
        ('{"$set": 1}', "$"),
        ('{"a": {"$where": 1}}', "$"),
        ('{"a\\u0000b": 1}', "NUL"),
        ('{"text": "\\ud800"}', "UTF-8"),
        ('{"\\udfff": 1}', "UTF-8"),
    ],
    ids=[
        "int-2**70",
        "int-below-int64",
        "nan",
        "infinity",
        "negative-infinity-in-list",
        "dollar-key",
        "nested-dollar-key",
        "nul-in-key",
        "lone-surrogate-value",
        "lone-surrogate-key",
    ],
)
async def test_payload_values_mongodb_cannot_store_are_refused(
    client: httpx.AsyncClient, admin: Json, tenant: str, raw: str, words: str
) -> None:
    body = '{"name": "n", "reward_type": "points", "payload": ' + raw + "}"
    response = await client.post(
        rewards_url(tenant),
        content=body.encode(),
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    answer = assert_error(response, 422, "validation_error", ["payload"])
    assert words in reasons(answer, "payload")[0], answer


async def test_payload_of_int64_bounds_is_stored(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    payload = {"max": 2**63 - 1, "min": -(2**63), "a.b": 1.5, "ok$": "\u017f"}
    item = await create_reward(client, tenant, admin, payload=payload)
    assert item["payload"] == payload


# ---------------------------------------------------------------- integers


INT_FIELDS = [
    ("config.code_length", {"code_length": 2**70}),
    ("config.usage_limit.max_uses", {"usage_limit": {"limit_type": "global", "max_uses": 2**70}}),
    (
        "config.auto_generate.trigger_config.milestone_threshold",
        {
            "auto_generate": {
                "enabled": True,
                "trigger": "streak_milestone",
                "trigger_config": {"streak_id": "s1", "milestone_threshold": 2**70},
            }
        },
    ),
    (
        "config.auto_generate.trigger_config.rank_threshold",
        {
            "auto_generate": {
                "enabled": True,
                "trigger": "leaderboard_rank",
                "trigger_config": {"leaderboard_id": "l1", "rank_threshold": 2**70},
            }
        },
    ),
]


@pytest.mark.parametrize(("field", "change"), INT_FIELDS, ids=[f for f, _ in INT_FIELDS])
@pytest.mark.parametrize("value", [2**70, INT_MAX + 1, -(2**70)])
async def test_large_integers_are_refused_on_create_and_update(
    client: httpx.AsyncClient,
    admin: Json,
    reward: Json,
    tenant: str,
    field: str,
    change: Json,
    value: int,
) -> None:
    text = json.dumps(change).replace(str(2**70), str(value))
    config = random_config(reward["item_id"], **json.loads(text))
    response = await client.post(
        coupons_url(tenant), json={"name": "Big", "config": config}, headers=admin["headers"]
    )
    answer = assert_error(response, 422, "validation_error", [field])
    if value > 0:
        assert str(INT_MAX) in reasons(answer, field)[0], answer

    created = await client.post(
        coupons_url(tenant),
        json={"name": "Small", "config": random_config(reward["item_id"])},
        headers=admin["headers"],
    )
    assert created.status_code == 201, created.text
    response = await client.put(
        coupons_url(tenant, created.json()["id"]),
        json={"config": json.loads(text)},
        headers=admin["headers"],
    )
    assert_error(response, 422, "validation_error", [field])


async def test_largest_integers_are_stored(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    config = random_config(
        reward["item_id"],
        usage_limit={"limit_type": "global", "max_uses": INT_MAX},
        auto_generate={
            "enabled": True,
            "trigger": "streak_milestone",
            "trigger_config": {"streak_id": "s1", "milestone_threshold": INT_MAX},
        },
    )
    response = await client.post(
        coupons_url(tenant), json={"name": "Max", "config": config}, headers=admin["headers"]
    )
    assert response.status_code == 201, response.text
    assert response.json()["config"]["usage_limit"]["max_uses"] == INT_MAX


# ---------------------------------------------------------------- strings


def long(n: int) -> str:
    return "A" * n


BODY_STRINGS = [
    # (case id, url builder, method, body builder, field, limit)
    ("reward-name", "rewards", "POST", lambda i: reward_body(name=long(201)), "name", 200),
    (
        "reward-description",
        "rewards",
        "POST",
        lambda i: reward_body(description=long(2001)),
        "description",
        2000,
    ),
    (
        "reward-type",
        "rewards",
        "POST",
        lambda i: reward_body(reward_type="a" * 65),
        "reward_type",
        64,
    ),
    (
        "definition-name",
        "coupons",
        "POST",
        lambda i: {"name": long(201), "config": random_config(i)},
        "name",
        200,
    ),
    (
        "definition-description",
        "coupons",
        "POST",
        lambda i: {"name": "n", "description": long(2001), "config": random_config(i)},
        "description",
        2000,
    ),
    (
        "reward-item-id",
        "coupons",
        "POST",
        lambda i: {"name": "n", "config": random_config(i + "0" * 64)},
        "config.reward_item_id",
        64,
    ),
    (
        "code-prefix",
        "coupons",
        "POST",
        lambda i: {"name": "n", "config": random_config(i, code_prefix=long(256))},
        "config.code_prefix",
        255,
    ),
    (
        "code-pattern",
        "coupons",
        "POST",
        lambda i: {
            "name": "n",
            "config": random_config(i, code_pattern=long(256), code_prefix=None, code_length=None),
        },
        "config.code_pattern",
        255,
    ),
    (
        "custom-code",
        "coupons",
        "POST",
        lambda i: {
            "name": "n",
            "config": {
                **random_config(i, code_format="custom", custom_code=long(256)),
                "code_prefix": None,
                "code_length": None,
            },
        },
        "config.custom_code",
        255,
    ),
    (
        "achievement-id",
        "coupons",
        "POST",
        lambda i: {
            "name": "n",
            "config": random_config(
                i,
                auto_generate={
                    "enabled": True,
                    "trigger": "achievement_completed",
                    "trigger_config": {"achievement_id": long(256)},
                },
            ),
        },
        "config.auto_generate.trigger_config.achievement_id",
        255,
    ),
    (
        "redeem-code",
        "coupons/redeem",
        "POST",
        lambda i: {"code": long(256), "user_id": "u"},
        "code",
        255,
    ),
    (
        "validate-user",
        "coupons/validate",
        "POST",
        lambda i: {"code": "ABC", "user_id": long(256)},
        "user_id",
        255,
    ),
]


@pytest.mark.parametrize(
    ("path", "method", "body", "field", "limit"),
    [case[1:] for case in BODY_STRINGS],
    ids=[case[0] for case in BODY_STRINGS],
)
async def test_long_strings_in_bodies_are_refused_naming_the_limit(
    client: httpx.AsyncClient,
    admin: Json,
    reward: Json,
    tenant: str,
    path: str,
    method: str,
    body: Any,
    field: str,
    limit: int,
) -> None:
    response = await client.request(
        method,
        f"/v1/tenants/{tenant}/{path}",
        json=body(reward["item_id"]),
        headers=admin["headers"],
    )
    answer = assert_error(response, 422, "validation_error", [field])
    assert str(limit) in reasons(answer, field)[0], answer


async def test_long_strings_in_generate_are_refused_naming_the_limit(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    definition_id = await custom_definition(client, tenant, admin, reward, "LONGCHECK")
    url = coupons_url(tenant, definition_id, "generate")
    for body, field, limit in (
        ({"user_ids": [long(256)], "custom_codes": ["OK"]}, "user_ids.0", "255"),
        ({"user_ids": ["u1", "u2"], "custom_codes": ["OK", long(256)]}, "custom_codes.1", "255"),
        ({"user_ids": ["u1"], "custom_codes": ["C"] * 10_001}, "custom_codes", "10000"),
    ):
        response = await client.post(url, json=body, headers=admin["headers"])
        answer = assert_error(response, 422, "validation_error", [field])
        assert limit in reasons(answer, field)[0], answer


@pytest.mark.parametrize(
    ("url", "field", "limit"),
    [
        ("/rewards/{long64}", "item_id", 64),
        ("/coupons/{long64}", "definition_id", 64),
        ("/coupons/{long64}/codes", "definition_id", 64),
        ("/coupons/redemptions/{long64}/rollback", "redemption_id", 64),
        ("/users/{long255}/coupons", "user_id", 255),
        ("/codes/{long255}", "code", 255),
        ("/coupons/some-id/codes?user_id={long255}", "user_id", 255),
    ],
)
async def test_long_path_and_query_values_are_refused_naming_the_limit(
    client: httpx.AsyncClient, admin: Json, tenant: str, url: str, field: str, limit: int
) -> None:
    path = f"/v1/tenants/{tenant}" + url.format(long64=long(65), long255=long(256))
    method = "POST" if path.endswith("rollback") else "GET"
    response = await client.request(method, path, headers=admin["headers"])
    answer = assert_error(response, 422, "validation_error", [field])
    assert str(limit) in reasons(answer, field)[0], answer


async def test_long_tenant_ids_are_refused(client: httpx.AsyncClient, container: Container) -> None:
    _, plaintext = await container.api_keys.create("unbound", "coupons:read", None)
    headers = {"X-API-Key": plaintext}
    response = await client.get(f"/v1/tenants/{long(129)}/coupons", headers=headers)
    assert (
        "128"
        in reasons(assert_error(response, 422, "validation_error", ["tenant_id"]), "tenant_id")[0]
    )
    response = await client.get("/v1/coupons", params={"tenant_id": long(129)}, headers=headers)
    assert (
        "128"
        in reasons(assert_error(response, 422, "validation_error", ["tenant_id"]), "tenant_id")[0]
    )


async def test_long_credentials_are_refused(client: httpx.AsyncClient, tenant: str) -> None:
    url = rewards_url(tenant)
    response = await client.get(url, headers={"X-API-Key": "pk_" + "a" * 10_000})
    assert_error(response, 401, "unknown_api_key")
    response = await client.get(url, headers={"Authorization": "Bearer " + "a" * 10_000})
    answer = assert_error(response, 401, "malformed_token")
    assert "8192" in answer["message"]


async def test_long_request_id_is_replaced(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    own = "req-123"
    response = await client.get(
        rewards_url(tenant), headers={**admin["headers"], "X-Request-Id": own}
    )
    assert response.headers["X-Request-Id"] == own
    for bad in ("x" * 129, "bad id\twith controls"):
        response = await client.get(
            rewards_url(tenant), headers={**admin["headers"], "X-Request-Id": bad}
        )
        assert response.status_code == 200
        assert response.headers["X-Request-Id"] != bad
        assert len(response.headers["X-Request-Id"]) == 32


# ---------------------------------------------------------------- the documented bounds


# Free-form JSON, bounded in bytes by the service (documented in their descriptions).
FREE_FORM = {
    "RewardItemCreate.payload",
    "RewardItemUpdate.payload",
    "DefinitionUpdate.config",
    "RedeemRequest.metadata",
    "ReserveRequest.metadata",
    "GenerateRequest.metadata",
    # A generation job's JSON body, documented inline beside its CSV one.
    "post /v1/tenants/{tenant_id}/coupons/{definition_id}/generation-jobs body.metadata",
}


def unbounded(doc: Json, schema: Json, where: str, seen: set[str]) -> list[str]:
    """Places in `schema` where a client value has no documented bound."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return unbounded(doc, doc["components"]["schemas"][name], name, seen)
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            found += unbounded(doc, option, where, seen)
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and "const" not in schema:
        if schema.get("format") != "date-time" and "maxLength" not in schema:
            found.append(where)
    elif kind == "integer" and ("maximum" not in schema or "minimum" not in schema):
        found.append(where)
    elif kind == "array":
        if "maxItems" not in schema:
            found.append(where)
        found += unbounded(doc, schema.get("items", {}), f"{where}[]", seen)
    elif kind == "object":
        for name, prop in schema.get("properties", {}).items():
            found += unbounded(doc, prop, f"{where}.{name}", seen)
        extra = schema.get("additionalProperties")
        if (extra is True or isinstance(extra, dict)) and where not in FREE_FORM:
            found.append(f"{where}.*")
    return found


async def test_every_client_value_has_a_documented_bound(client: httpx.AsyncClient) -> None:
    doc: Json = (await client.get("/openapi.json")).json()
    found: list[str] = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for param in op.get("parameters", []):
                found += unbounded(doc, param["schema"], f"{method} {path} {param['name']}", set())
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                found += unbounded(doc, body["schema"], f"{method} {path} body", set())
    assert found == []


async def test_odd_content_length_is_no_500(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    """A Content-Length that is no ASCII number leaves the counting to the streamed bytes."""
    body = json.dumps(reward_body()).encode()
    response = await client.post(
        rewards_url(tenant),
        content=body,
        headers={
            **admin["headers"],
            "Content-Type": "application/json",
            "Content-Length": "²".encode("latin-1"),
        },
    )
    assert response.status_code < 500, response.text
