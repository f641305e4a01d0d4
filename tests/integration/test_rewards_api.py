"""Reward items under `/v1/tenants/{tenant_id}/rewards`, against the real servers."""

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import KeyFactory
from tests.integration.test_openapi import assert_error

SPEC_REWARD = {
    "name": "100 Bonus Points",
    "description": "Grants 100 bonus points to the user",
    "reward_type": "points",
    "payload": {"amount": 100},
}
REWARD_KEYS = {
    "item_id",
    "tenant_id",
    "name",
    "description",
    "reward_type",
    "payload",
    "created_at",
    "updated_at",
}


def utc(stamp: str) -> datetime:
    """A response timestamp: ISO 8601 in UTC written with `Z`."""
    assert isinstance(stamp, str) and stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp)


def rewards_url(tenant: str, item_id: str | None = None) -> str:
    base = f"/v1/tenants/{tenant}/rewards"
    return f"{base}/{item_id}" if item_id else base


async def create_reward(
    client: httpx.AsyncClient, tenant: str, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {**SPEC_REWARD, **fields}
    response = await client.post(rewards_url(tenant), json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def random_definition(reward_item_id: str, name: str = "Welcome Bonus") -> dict[str, Any]:
    return {
        "name": name,
        "config": {
            "reward_item_id": reward_item_id,
            "code_format": "random",
            "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        },
    }


async def test_create_answers_the_spec_shape(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    response = await client.post(rewards_url(tenant), json=SPEC_REWARD, headers=admin["headers"])
    assert response.status_code == 201, response.text
    item = response.json()
    assert set(item) == REWARD_KEYS
    assert str(uuid.UUID(item["item_id"])) == item["item_id"]
    assert item["tenant_id"] == tenant
    assert {k: item[k] for k in SPEC_REWARD} == SPEC_REWARD
    assert item["created_at"] == item["updated_at"]
    assert utc(item["created_at"]).tzinfo is not None

    fetched = await client.get(rewards_url(tenant, item["item_id"]), headers=admin["headers"])
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == item


async def test_create_with_only_the_required_fields(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    response = await client.post(
        rewards_url(tenant),
        json={"name": "Badge", "reward_type": "badge"},
        headers=admin["headers"],
    )
    assert response.status_code == 201, response.text
    item = response.json()
    assert item["description"] is None
    assert item["payload"] == {}
    assert item["reward_type"] == "badge"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"reward_type": "points"}, ["name"]),
        ({"name": "x"}, ["reward_type"]),
        ({"name": "", "reward_type": "points"}, ["name"]),
        ({"name": "x", "reward_type": "Not Valid!"}, ["reward_type"]),
        ({"name": "x", "reward_type": "points", "payload": [1, 2]}, ["payload"]),
        ({"name": "x", "reward_type": "points", "item_id": str(uuid.uuid4())}, ["item_id"]),
        ({"name": 5, "reward_type": 7}, ["name", "reward_type"]),
    ],
)
async def test_create_refuses_invalid_bodies(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    tenant: str,
    body: dict[str, Any],
    fields: list[str],
) -> None:
    response = await client.post(rewards_url(tenant), json=body, headers=admin["headers"])
    assert_error(response, 422, "validation_error", fields)
    listed = await client.get(rewards_url(tenant), headers=admin["headers"])
    assert listed.json() == {"rewards": [], "total": 0}


async def test_create_refuses_malformed_json(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    response = await client.post(
        rewards_url(tenant),
        content=b'{"name": "x", ',
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    assert_error(response, 422, "validation_error")


async def test_list_is_paginated_newest_first(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str, make_key: KeyFactory
) -> None:
    made = [
        await create_reward(client, tenant, admin["headers"], name=f"item {i}") for i in range(3)
    ]
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = await make_key(tenant=other_tenant)
    await create_reward(client, other_tenant, other["headers"], name="elsewhere")

    full = await client.get(rewards_url(tenant), headers=admin["headers"])
    assert full.status_code == 200, full.text
    assert full.json()["total"] == 3
    # newest first, ties (same millisecond) by id
    by_id = sorted(made, key=lambda r: r["item_id"])
    expected = sorted(by_id, key=lambda r: utc(r["created_at"]), reverse=True)
    assert full.json()["rewards"] == expected

    pages = []
    for offset in (0, 2, 3):
        page = await client.get(
            rewards_url(tenant), params={"limit": 2, "offset": offset}, headers=admin["headers"]
        )
        assert page.status_code == 200, page.text
        assert page.json()["total"] == 3
        pages.append([r["item_id"] for r in page.json()["rewards"]])
    assert [len(p) for p in pages] == [2, 1, 0]
    assert pages[0] + pages[1] == [r["item_id"] for r in full.json()["rewards"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"offset": -1}, "offset")],
)
async def test_list_refuses_bad_paging(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    tenant: str,
    params: dict[str, int],
    field: str,
) -> None:
    response = await client.get(rewards_url(tenant), params=params, headers=admin["headers"])
    assert_error(response, 422, "validation_error", [field])


async def test_get_unknown_or_other_tenants_item_is_404(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str, make_key: KeyFactory
) -> None:
    missing = str(uuid.uuid4())
    response = await client.get(rewards_url(tenant, missing), headers=admin["headers"])
    body = assert_error(response, 404, "reward_item_not_found")
    assert missing in body["message"]

    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = await make_key(tenant=other_tenant)
    theirs = await create_reward(client, other_tenant, other["headers"])
    response = await client.get(rewards_url(tenant, theirs["item_id"]), headers=admin["headers"])
    assert_error(response, 404, "reward_item_not_found")
    # and the unbound key sees it under its own tenant only
    root = await make_key()
    response = await client.get(rewards_url(tenant, theirs["item_id"]), headers=root["headers"])
    assert_error(response, 404, "reward_item_not_found")


async def test_update_is_partial(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    item = await create_reward(client, tenant, admin["headers"])
    url = rewards_url(tenant, item["item_id"])

    renamed = await client.put(url, json={"name": "200 Bonus Points"}, headers=admin["headers"])
    assert renamed.status_code == 200, renamed.text
    body = renamed.json()
    assert body["name"] == "200 Bonus Points"
    unchanged = ("item_id", "tenant_id", "description", "reward_type", "payload", "created_at")
    assert {k: body[k] for k in unchanged} == {k: item[k] for k in unchanged}
    assert utc(body["updated_at"]) >= utc(item["updated_at"])

    repaid = await client.put(
        url, json={"payload": {"amount": 200}, "description": None}, headers=admin["headers"]
    )
    assert repaid.status_code == 200, repaid.text
    assert repaid.json()["payload"] == {"amount": 200}
    assert repaid.json()["description"] is None
    assert repaid.json()["name"] == "200 Bonus Points"

    same = await client.put(url, json={}, headers=admin["headers"])
    assert same.status_code == 200, same.text
    assert same.json() == repaid.json()

    fetched = await client.get(url, headers=admin["headers"])
    assert fetched.json() == repaid.json()
    assert set(fetched.json()) == REWARD_KEYS
    utc(fetched.json()["updated_at"])


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": None}, ["name"]),
        ({"reward_type": None, "payload": None}, ["reward_type", "payload"]),
        ({"name": ""}, ["name"]),
        ({"reward_type": "BAD TYPE"}, ["reward_type"]),
        ({"item_id": str(uuid.uuid4())}, ["item_id"]),
        ({"tenant_id": "someone-else"}, ["tenant_id"]),
        ({"created_at": "2025-01-15T10:00:00Z"}, ["created_at"]),
    ],
)
async def test_update_refuses_nulls_and_unknown_fields(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    tenant: str,
    body: dict[str, Any],
    fields: list[str],
) -> None:
    item = await create_reward(client, tenant, admin["headers"])
    url = rewards_url(tenant, item["item_id"])
    response = await client.put(url, json=body, headers=admin["headers"])
    assert_error(response, 422, "validation_error", fields)
    fetched = await client.get(url, headers=admin["headers"])
    assert fetched.json() == item


async def test_update_unknown_item_is_404(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    url = rewards_url(tenant, str(uuid.uuid4()))
    response = await client.put(url, json={"name": "x"}, headers=admin["headers"])
    assert_error(response, 404, "reward_item_not_found")
    response = await client.put(url, json={}, headers=admin["headers"])
    assert_error(response, 404, "reward_item_not_found")


async def test_delete_then_gone(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    keep = await create_reward(client, tenant, admin["headers"], name="keep")
    item = await create_reward(client, tenant, admin["headers"])
    url = rewards_url(tenant, item["item_id"])

    deleted = await client.delete(url, headers=admin["headers"])
    assert deleted.status_code == 204
    assert deleted.content == b""

    assert_error(await client.get(url, headers=admin["headers"]), 404, "reward_item_not_found")
    assert_error(await client.delete(url, headers=admin["headers"]), 404, "reward_item_not_found")
    listed = await client.get(rewards_url(tenant), headers=admin["headers"])
    assert listed.json() == {"rewards": [keep], "total": 1}


async def test_delete_refused_while_a_live_definition_grants_it(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    item = await create_reward(client, tenant, admin["headers"])
    url = rewards_url(tenant, item["item_id"])
    coupons = f"/v1/tenants/{tenant}/coupons"
    ids = []
    for name in ("first", "second"):
        created = await client.post(
            coupons, json=random_definition(item["item_id"], name), headers=admin["headers"]
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])

    body = assert_error(await client.delete(url, headers=admin["headers"]), 409)
    assert body["error"] == "reward_item_in_use"
    assert sorted(c["definition_id"] for c in body["conflicts"]) == sorted(ids)

    # a paused definition still grants the item
    paused = await client.put(
        f"{coupons}/{ids[0]}/status", json={"status": "paused"}, headers=admin["headers"]
    )
    assert paused.status_code == 200, paused.text
    archived = await client.delete(f"{coupons}/{ids[1]}", headers=admin["headers"])
    assert archived.status_code == 204
    body = assert_error(await client.delete(url, headers=admin["headers"]), 409)
    assert body["error"] == "reward_item_in_use"
    assert body["conflicts"] == [{"definition_id": ids[0]}]
    assert (await client.get(url, headers=admin["headers"])).json() == item

    archived = await client.delete(f"{coupons}/{ids[0]}", headers=admin["headers"])
    assert archived.status_code == 204
    deleted = await client.delete(url, headers=admin["headers"])
    assert deleted.status_code == 204, deleted.text
    assert_error(await client.get(url, headers=admin["headers"]), 404, "reward_item_not_found")


async def test_item_of_another_tenant_cannot_be_changed(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str, make_key: KeyFactory
) -> None:
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = await make_key(tenant=other_tenant)
    theirs = await create_reward(client, other_tenant, other["headers"])
    mine = rewards_url(tenant, theirs["item_id"])
    assert_error(
        await client.put(mine, json={"name": "x"}, headers=admin["headers"]),
        404,
        "reward_item_not_found",
    )
    assert_error(await client.delete(mine, headers=admin["headers"]), 404, "reward_item_not_found")
    fetched = await client.get(
        rewards_url(other_tenant, theirs["item_id"]), headers=other["headers"]
    )
    assert fetched.json() == theirs
