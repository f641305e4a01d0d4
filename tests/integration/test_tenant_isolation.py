"""Tenant isolation: with a key bound to tenant B, nothing of tenant A is readable or
writable, whether addressed by A's path (403) or by A's ids under B's own path (404)."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from phoenix_coupons.bootstrap import Container
from tests.conftest import KeyFactory


@dataclass(frozen=True)
class Op:
    name: str
    method: str
    path: str  # formatted with tenant, item_id, definition_id
    body: dict[str, Any] | None = None
    not_found: str | None = None  # the reason when A's id is used under B's path
    own: int = 200  # the status with B's own ids (B's item is granted by B's definition)


REWARDS = "/v1/tenants/{tenant}/rewards"
COUPONS = "/v1/tenants/{tenant}/coupons"
DEFINITION = COUPONS + "/{definition_id}"
REWARD_BODY = {"name": "Free Spin", "reward_type": "spin", "payload": {"count": 1}}

BY_ID = [
    Op("get reward", "GET", REWARDS + "/{item_id}", None, "reward_item_not_found"),
    Op(
        "update reward",
        "PUT",
        REWARDS + "/{item_id}",
        {"name": "Hijacked", "payload": {"amount": 1}},
        "reward_item_not_found",
    ),
    Op("delete reward", "DELETE", REWARDS + "/{item_id}", None, "reward_item_not_found", 409),
    Op("get definition", "GET", DEFINITION, None, "definition_not_found"),
    Op(
        "update definition",
        "PUT",
        DEFINITION,
        {"name": "Hijacked", "config": {"code_prefix": "EVIL"}},
        "definition_not_found",
    ),
    Op(
        "pause definition",
        "PUT",
        DEFINITION + "/status",
        {"status": "paused"},
        "definition_not_found",
    ),
    Op("archive definition", "DELETE", DEFINITION, None, "definition_not_found", 204),
    Op(
        "generate",
        "POST",
        DEFINITION + "/generate",
        {"user_ids": ["user_1", "user_2"]},
        "definition_not_found",
        201,
    ),
]
COLLECTIONS = [
    Op("list rewards", "GET", REWARDS),
    Op("create reward", "POST", REWARDS, REWARD_BODY),
    Op("list definitions", "GET", COUPONS),
    Op("list archived definitions", "GET", COUPONS + "?include_archived=true"),
]
ALL_OPS = BY_ID + COLLECTIONS


def bearer(key: dict[str, Any]) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub_type": "admin", "sub_id": key["id"], "iat": now, "exp": now + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, key['key'], algorithm='HS256')}"}


def definition_body(reward_item_id: str, prefix: str) -> dict[str, Any]:
    return {
        "name": f"{prefix} Bonus",
        "config": {
            "reward_item_id": reward_item_id,
            "code_format": "random",
            "code_prefix": prefix,
            "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        },
    }


async def seed(client: httpx.AsyncClient, tenant: str, headers: dict[str, str]) -> dict[str, Any]:
    """A reward item, a definition granting it, and one generated coupon."""
    reward = await client.post(
        REWARDS.format(tenant=tenant),
        headers=headers,
        json={"name": f"{tenant} points", "reward_type": "points", "payload": {"amount": 10}},
    )
    assert reward.status_code == 201, reward.text
    item_id = reward.json()["item_id"]
    prefix = "A" if tenant.startswith("a-") else "B"
    created = await client.post(
        COUPONS.format(tenant=tenant), headers=headers, json=definition_body(item_id, prefix)
    )
    assert created.status_code == 201, created.text
    definition_id = created.json()["id"]
    generated = await client.post(
        DEFINITION.format(tenant=tenant, definition_id=definition_id) + "/generate",
        headers=headers,
        json={"user_ids": ["user_0"]},
    )
    assert generated.status_code == 201, generated.text
    return {"tenant": tenant, "item_id": item_id, "definition_id": definition_id}


async def state(
    client: httpx.AsyncClient, container: Container, side: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """All of a tenant's data as its own key reads it, plus its stored coupons."""
    tenant = side["tenant"]
    out: dict[str, Any] = {}
    for name, path in (
        ("rewards", REWARDS.format(tenant=tenant)),
        ("definitions", COUPONS.format(tenant=tenant) + "?include_archived=true"),
    ):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        out[name] = response.json()
    cursor = container.mongo.coupons.find({"tenant_id": tenant}, {"_id": 0, "code": 1})
    out["coupons"] = sorted([doc["code"] async for doc in cursor])
    return out


@pytest.fixture
async def world(
    client: httpx.AsyncClient, make_key: KeyFactory, container: Container
) -> dict[str, Any]:
    """Tenants A and B, each with data and its own bound key; a snapshot of A's data."""
    run = uuid.uuid4().hex[:10]
    key_a = await make_key(tenant=f"a-{run}")
    key_b = await make_key(tenant=f"b-{run}")
    a = await seed(client, f"a-{run}", key_a["headers"])
    b = await seed(client, f"b-{run}", key_b["headers"])
    return {
        "a": a,
        "b": b,
        "key_a": key_a,
        "key_b": key_b,
        "a_before": await state(client, container, a, key_a["headers"]),
    }


def url(op: Op, tenant: str, ids: dict[str, Any]) -> str:
    return op.path.format(tenant=tenant, item_id=ids["item_id"], definition_id=ids["definition_id"])


@pytest.mark.parametrize("via", ["api_key", "jwt"])
@pytest.mark.parametrize("op", ALL_OPS, ids=[op.name for op in ALL_OPS])
async def test_key_of_b_on_a_path_is_forbidden(
    client: httpx.AsyncClient, container: Container, world: dict[str, Any], op: Op, via: str
) -> None:
    key_b = world["key_b"]
    headers = key_b["headers"] if via == "api_key" else bearer(key_b)
    a = world["a"]
    response = await client.request(
        op.method, url(op, a["tenant"], a), json=op.body, headers=headers
    )
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "tenant_forbidden"
    assert a["item_id"] not in response.text and a["definition_id"] not in response.text
    assert await state(client, container, a, world["key_a"]["headers"]) == world["a_before"]


@pytest.mark.parametrize("op", BY_ID, ids=[op.name for op in BY_ID])
async def test_ids_of_a_under_b_path_are_not_found(
    client: httpx.AsyncClient, container: Container, world: dict[str, Any], op: Op
) -> None:
    a, b = world["a"], world["b"]
    b_before = await state(client, container, b, world["key_b"]["headers"])
    response = await client.request(
        op.method, url(op, b["tenant"], a), json=op.body, headers=world["key_b"]["headers"]
    )
    assert response.status_code == 404, response.text
    assert response.json()["error"] == op.not_found
    assert await state(client, container, a, world["key_a"]["headers"]) == world["a_before"]
    assert await state(client, container, b, world["key_b"]["headers"]) == b_before
    # The same call with B's own ids and B's own key does reach B's data.
    own = await client.request(
        op.method, url(op, b["tenant"], b), json=op.body, headers=world["key_b"]["headers"]
    )
    assert own.status_code == op.own, own.text


async def test_unbound_key_also_gets_404_for_ids_of_another_tenant(
    client: httpx.AsyncClient, make_key: KeyFactory, world: dict[str, Any]
) -> None:
    """The id check does not rely on the key binding: the path's tenant is the scope."""
    key = await make_key()
    a, b = world["a"], world["b"]
    for op in BY_ID:
        if op.method != "GET":
            continue
        response = await client.get(url(op, b["tenant"], a), headers=key["headers"])
        assert response.status_code == 404, response.text
        assert response.json()["error"] == op.not_found


async def test_lists_of_b_never_contain_a(
    client: httpx.AsyncClient, make_key: KeyFactory, world: dict[str, Any]
) -> None:
    a, b = world["a"], world["b"]
    headers = world["key_b"]["headers"]
    rewards = await client.get(REWARDS.format(tenant=b["tenant"]) + "?limit=500", headers=headers)
    assert rewards.status_code == 200, rewards.text
    assert [r["item_id"] for r in rewards.json()["rewards"]] == [b["item_id"]]
    assert rewards.json()["total"] == 1
    for query in ("", "?include_archived=true", "?status=active", "?limit=500"):
        listed = await client.get(COUPONS.format(tenant=b["tenant"]) + query, headers=headers)
        assert listed.status_code == 200, listed.text
        assert [d["id"] for d in listed.json()["definitions"]] == [b["definition_id"]]
        assert all(d["tenant_id"] == b["tenant"] for d in listed.json()["definitions"])
        assert a["definition_id"] not in listed.text
    # The cross-tenant list, filtered to B, holds only B's definition too.
    unbound = await make_key(scopes="coupons:read")
    across = await client.get(f"/v1/coupons?tenant_id={b['tenant']}", headers=unbound["headers"])
    assert across.status_code == 200, across.text
    assert [d["id"] for d in across.json()["definitions"]] == [b["definition_id"]]


async def test_b_cannot_grant_a_reward_item_of_a(
    client: httpx.AsyncClient, container: Container, world: dict[str, Any]
) -> None:
    a, b = world["a"], world["b"]
    headers = world["key_b"]["headers"]
    created = await client.post(
        COUPONS.format(tenant=b["tenant"]),
        headers=headers,
        json=definition_body(a["item_id"], "B"),
    )
    assert created.status_code == 422, created.text
    body = created.json()
    assert body["error"] == "validation_error"
    assert [d["field"] for d in body["details"]] == ["config.reward_item_id"]
    # Nor by switching an existing definition of B over to A's item.
    updated = await client.put(
        DEFINITION.format(tenant=b["tenant"], definition_id=b["definition_id"]),
        headers=headers,
        json={"config": {"reward_item_id": a["item_id"]}},
    )
    assert updated.status_code == 422, updated.text
    assert [d["field"] for d in updated.json()["details"]] == ["config.reward_item_id"]
    assert await state(client, container, a, world["key_a"]["headers"]) == world["a_before"]


async def test_a_reward_granted_in_a_cannot_be_deleted_through_b(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    """A's item stays referenced by A's definition: A itself gets 409, B gets 403 or 404."""
    a, b = world["a"], world["b"]
    own = await client.delete(
        REWARDS.format(tenant=a["tenant"]) + f"/{a['item_id']}", headers=world["key_a"]["headers"]
    )
    assert own.status_code == 409, own.text
    via_b_path = await client.delete(
        REWARDS.format(tenant=b["tenant"]) + f"/{a['item_id']}", headers=world["key_b"]["headers"]
    )
    assert via_b_path.status_code == 404, via_b_path.text
    assert via_b_path.json()["error"] == "reward_item_not_found"
    still = await client.get(
        REWARDS.format(tenant=a["tenant"]) + f"/{a['item_id']}", headers=world["key_a"]["headers"]
    )
    assert still.status_code == 200, still.text
