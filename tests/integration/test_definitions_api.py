"""Coupon definitions under `/v1/tenants/{tenant_id}/coupons`: the spec's examples, get, list,
update, status and archive, against the real servers."""

import copy
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import KeyFactory
from tests.integration.test_openapi import assert_error

SPEC_ITEM_ID = "550e8400-e29b-41d4-a716-446655440000"
DEFINITION_KEYS = {
    "id",
    "tenant_id",
    "name",
    "description",
    "config",
    "status",
    "created_at",
    "updated_at",
}

# The spec's three request bodies, verbatim (the reward item id is replaced per test).
WELCOME = {
    "name": "Welcome Bonus",
    "description": "Welcome bonus for new users",
    "config": {
        "reward_item_id": SPEC_ITEM_ID,
        "code_format": "random",
        "code_prefix": "WELCOME",
        "code_length": 8,
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
    },
}
NEW_YEAR = {
    "name": "New Year 2025 Promo",
    "description": "Special New Year promotion",
    "config": {
        "reward_item_id": SPEC_ITEM_ID,
        "code_format": "custom",
        "custom_code": "NEWYEAR2025",
        "starts_at": "2025-01-01T00:00:00Z",
        "expires_at": "2025-01-31T23:59:59Z",
        "usage_limit": {"limit_type": "unlimited"},
    },
}
STREAK = {
    "name": "7-Day Streak Reward",
    "description": "Reward for maintaining a 7-day streak",
    "config": {
        "reward_item_id": SPEC_ITEM_ID,
        "code_format": "random",
        "code_prefix": "STREAK7",
        "code_length": 8,
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        "auto_generate": {
            "enabled": True,
            "trigger": "streak_milestone",
            "trigger_config": {
                "streak_id": "770e8400-e29b-41d4-a716-446655440002",
                "milestone_threshold": 7,
            },
        },
    },
}


def utc(stamp: str) -> datetime:
    """A response timestamp: ISO 8601 in UTC written with `Z`."""
    assert isinstance(stamp, str) and stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp)


def newest_first(items: list[dict[str, Any]]) -> list[str]:
    """The ids in the lists' documented order: newest first, ties by id."""
    by_id = sorted(items, key=lambda d: d["id"])
    return [d["id"] for d in sorted(by_id, key=lambda d: utc(d["created_at"]), reverse=True)]


def with_item(body: dict[str, Any], item_id: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["config"]["reward_item_id"] = item_id
    return out


def random_body(item_id: str, name: str = "Welcome Bonus", **config: Any) -> dict[str, Any]:
    return {
        "name": name,
        "config": {
            "reward_item_id": item_id,
            "code_format": "random",
            "code_prefix": "WELCOME",
            "usage_limit": {"limit_type": "per_user", "max_uses": 1},
            **config,
        },
    }


def bearer(key: dict[str, Any], lifetime_s: int = 600) -> dict[str, str]:
    """The spec's `Authorization: Bearer <admin_jwt>` for `key`."""
    now = int(time.time())
    claims = {"sub_type": "admin", "sub_id": key["id"], "iat": now, "exp": now + lifetime_s}
    return {"Authorization": f"Bearer {jwt.encode(claims, key['key'], algorithm='HS256')}"}


def coupons_url(tenant: str, *rest: str) -> str:
    return "/".join([f"/v1/tenants/{tenant}/coupons", *rest])


async def create(
    client: httpx.AsyncClient, tenant: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(coupons_url(tenant), json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_definition(
    got: dict[str, Any], tenant: str, body: dict[str, Any], config: dict[str, Any], status: str
) -> None:
    assert set(got) == DEFINITION_KEYS
    assert str(uuid.UUID(got["id"])) == got["id"]
    assert got["tenant_id"] == tenant
    assert got["name"] == body["name"]
    assert got["description"] == body.get("description")
    assert got["config"] == config
    assert got["status"] == status
    assert utc(got["created_at"]) <= utc(got["updated_at"])


@pytest.mark.parametrize(
    ("body", "defaults"),
    [
        (WELCOME, {"case_sensitive": False}),
        (NEW_YEAR, {"case_sensitive": False}),
        (STREAK, {"case_sensitive": False}),
    ],
    ids=["welcome-random", "new-year-custom", "streak-auto-generate"],
)
async def test_spec_examples_create_as_the_spec_answers(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    body: dict[str, Any],
    defaults: dict[str, Any],
) -> None:
    request = with_item(body, reward["item_id"])
    response = await client.post(coupons_url(tenant), json=request, headers=bearer(admin))
    assert response.status_code == 201, response.text
    created = response.json()
    expected_config = {**request["config"], **defaults}
    assert_definition(created, tenant, request, expected_config, "active")
    assert created["created_at"] == created["updated_at"]
    # The same JSON, key for key, as the spec's response: unset optionals are absent.
    assert list(created["config"]) == [k for k in SPEC_ORDER if k in expected_config]

    fetched = await client.get(coupons_url(tenant, created["id"]), headers=bearer(admin))
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == created


SPEC_ORDER = [
    "reward_item_id",
    "code_format",
    "code_prefix",
    "code_length",
    "custom_code",
    "case_sensitive",
    "starts_at",
    "expires_at",
    "usage_limit",
    "auto_generate",
]


async def test_defaults_are_filled(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    body: dict[str, Any] = {
        "name": "Minimal",
        "config": {
            "reward_item_id": reward["item_id"],
            "code_format": "random",
            "usage_limit": {"limit_type": "global", "max_uses": 100},
        },
    }
    created = await create(client, tenant, admin["headers"], body)
    assert_definition(
        created,
        tenant,
        body,
        {**body["config"], "code_length": 8, "case_sensitive": False},
        "active",
    )
    assert created["description"] is None

    custom = {
        "name": "Custom",
        "config": {
            "reward_item_id": reward["item_id"],
            "code_format": "custom",
            "custom_code": "Spring-Sale_1",
            "case_sensitive": True,
            "usage_limit": {"limit_type": "unlimited"},
        },
    }
    created = await create(client, tenant, admin["headers"], custom)
    assert created["config"] == custom["config"]  # no code_length for custom codes


async def test_get_unknown_or_other_tenants_definition_is_404(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    make_key: KeyFactory,
) -> None:
    missing = str(uuid.uuid4())
    body = assert_error(
        await client.get(coupons_url(tenant, missing), headers=admin["headers"]),
        404,
        "definition_not_found",
    )
    assert missing in body["message"]

    mine = await create(client, tenant, admin["headers"], random_body(reward["item_id"]))
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = await make_key(tenant=other_tenant)
    url = coupons_url(other_tenant, mine["id"])
    assert_error(await client.get(url, headers=other["headers"]), 404, "definition_not_found")
    assert_error(
        await client.put(url, json={"name": "x"}, headers=other["headers"]),
        404,
        "definition_not_found",
    )
    assert_error(
        await client.put(f"{url}/status", json={"status": "paused"}, headers=other["headers"]),
        404,
        "definition_not_found",
    )
    assert_error(await client.delete(url, headers=other["headers"]), 404, "definition_not_found")
    fetched = await client.get(coupons_url(tenant, mine["id"]), headers=admin["headers"])
    assert fetched.json() == mine


async def test_list_paginates_filters_and_leaves_archived_out(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    h = admin["headers"]
    made = [
        await create(client, tenant, h, random_body(reward["item_id"], f"def {i}"))
        for i in range(4)
    ]
    ids = [d["id"] for d in made]
    paused = await client.put(
        coupons_url(tenant, ids[1], "status"), json={"status": "paused"}, headers=h
    )
    assert paused.status_code == 200, paused.text
    assert (await client.delete(coupons_url(tenant, ids[2]), headers=h)).status_code == 204

    async def listing(**params: Any) -> tuple[list[str], int]:
        response = await client.get(coupons_url(tenant), params=params, headers=h)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"definitions", "total"}
        for d in body["definitions"]:
            assert set(d) == DEFINITION_KEYS and d["tenant_id"] == tenant
        return [d["id"] for d in body["definitions"]], body["total"]

    order = newest_first(made)
    live = [i for i in order if i != ids[2]]
    assert await listing() == (live, 3)
    assert await listing(status="active") == ([i for i in order if i in (ids[0], ids[3])], 2)
    assert await listing(status="paused") == ([ids[1]], 1)
    assert await listing(status="archived") == ([ids[2]], 1)
    assert await listing(include_archived="true") == (order, 4)
    assert await listing(include_archived="true", status="paused") == ([ids[1]], 1)

    pages = [await listing(limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [total for _, total in pages] == [3, 3, 3]
    assert [page for page, _ in pages] == [live[:2], live[2:], []]
    page, total = await listing(include_archived="true", limit=1, offset=2)
    assert (page, total) == ([order[2]], 4)

    listed = (await client.get(coupons_url(tenant), headers=h)).json()["definitions"]
    assert next(d for d in listed if d["id"] == ids[0]) == made[0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "deleted"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"include_archived": "maybe"}, "include_archived"),
    ],
)
async def test_list_refuses_bad_parameters(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    tenant: str,
    params: dict[str, Any],
    field: str,
) -> None:
    response = await client.get(coupons_url(tenant), params=params, headers=admin["headers"])
    assert_error(response, 422, "validation_error", [field])


async def test_list_across_tenants_with_an_unbound_api_key(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    make_key: KeyFactory,
) -> None:
    mine = await create(client, tenant, admin["headers"], random_body(reward["item_id"]))
    root = await make_key(scopes="coupons:read")
    response = await client.get(
        "/v1/coupons", params={"tenant_id": tenant}, headers=root["headers"]
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"definitions": [mine], "total": 1}
    everything = await client.get("/v1/coupons", params={"limit": 500}, headers=root["headers"])
    assert everything.status_code == 200, everything.text
    assert everything.json()["total"] >= 1
    assert_error(await client.get("/v1/coupons", headers=admin["headers"]), 403, "tenant_bound_key")


async def test_update_changes_name_and_description_only(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    created = await create(client, tenant, admin["headers"], with_item(WELCOME, reward["item_id"]))
    url = coupons_url(tenant, created["id"])
    response = await client.put(
        url,
        json={"name": "Updated Name", "description": "Updated description"},
        headers=bearer(admin),
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Updated Name"
    assert updated["description"] == "Updated description"
    same = ("id", "tenant_id", "config", "status", "created_at")
    assert {k: updated[k] for k in same} == {k: created[k] for k in same}
    assert utc(updated["updated_at"]) >= utc(created["updated_at"])
    assert (await client.get(url, headers=admin["headers"])).json() == updated

    cleared = await client.put(url, json={"description": None}, headers=admin["headers"])
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["description"] is None
    assert cleared.json()["name"] == "Updated Name"

    untouched = await client.put(url, json={}, headers=admin["headers"])
    assert untouched.status_code == 200, untouched.text
    assert {k: untouched.json()[k] for k in DEFINITION_KEYS - {"updated_at"}} == {
        k: cleared.json()[k] for k in DEFINITION_KEYS - {"updated_at"}
    }


async def test_update_config_is_a_merge_patch(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    created = await create(client, tenant, admin["headers"], with_item(STREAK, reward["item_id"]))
    url = coupons_url(tenant, created["id"])
    patch = {
        "code_length": 12,
        "usage_limit": {"max_uses": 3},
        "auto_generate": {"trigger_config": {"milestone_threshold": 30}},
    }
    response = await client.put(url, json={"config": patch}, headers=admin["headers"])
    assert response.status_code == 200, response.text
    config = response.json()["config"]
    expected = copy.deepcopy(created["config"])
    expected["code_length"] = 12
    expected["usage_limit"]["max_uses"] = 3
    expected["auto_generate"]["trigger_config"]["milestone_threshold"] = 30
    assert config == expected
    assert response.json()["name"] == created["name"]

    # null removes a key: back to its default, or absent when it has none
    response = await client.put(
        url,
        json={"config": {"code_length": None, "code_prefix": None, "auto_generate": None}},
        headers=admin["headers"],
    )
    assert response.status_code == 200, response.text
    config = response.json()["config"]
    assert config["code_length"] == 8
    assert "code_prefix" not in config and "auto_generate" not in config
    assert (await client.get(url, headers=admin["headers"])).json() == response.json()


async def test_update_can_switch_to_another_reward_item(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    created = await create(client, tenant, admin["headers"], random_body(reward["item_id"]))
    second = await client.post(
        f"/v1/tenants/{tenant}/rewards",
        json={"name": "Badge", "reward_type": "badge"},
        headers=admin["headers"],
    )
    assert second.status_code == 201, second.text
    item_id = second.json()["item_id"]
    response = await client.put(
        coupons_url(tenant, created["id"]),
        json={"config": {"reward_item_id": item_id}},
        headers=admin["headers"],
    )
    assert response.status_code == 200, response.text
    assert response.json()["config"]["reward_item_id"] == item_id
    # the first item is free again, the second is in use
    assert (
        await client.delete(
            f"/v1/tenants/{tenant}/rewards/{reward['item_id']}", headers=admin["headers"]
        )
    ).status_code == 204
    assert_error(
        await client.delete(f"/v1/tenants/{tenant}/rewards/{item_id}", headers=admin["headers"]),
        409,
        "reward_item_in_use",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"status": "paused"},
        {"id": str(uuid.uuid4())},
        {"tenant_id": "another-tenant"},
        {"created_at": "2025-01-15T10:00:00Z"},
        {"updated_at": "2025-01-15T10:00:00Z"},
        {"name": "fine", "code_format": "custom"},
    ],
    ids=lambda b: next(k for k in b if k != "name"),
)
async def test_update_refuses_any_other_field(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    body: dict[str, Any],
) -> None:
    created = await create(client, tenant, admin["headers"], random_body(reward["item_id"]))
    url = coupons_url(tenant, created["id"])
    field = next(k for k in body if k != "name")
    error = assert_error(
        await client.put(url, json=body, headers=admin["headers"]), 422, "validation_error", [field]
    )
    assert [d["field"] for d in error["details"]] == [field]
    assert (await client.get(url, headers=admin["headers"])).json() == created


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": None}, "name"), ({"name": ""}, "name"), ({"config": "random"}, "config")],
)
async def test_update_refuses_bad_values(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    body: dict[str, Any],
    field: str,
) -> None:
    created = await create(client, tenant, admin["headers"], random_body(reward["item_id"]))
    url = coupons_url(tenant, created["id"])
    assert_error(
        await client.put(url, json=body, headers=admin["headers"]), 422, "validation_error", [field]
    )
    assert (await client.get(url, headers=admin["headers"])).json() == created


async def test_update_unknown_definition_is_404(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    url = coupons_url(tenant, str(uuid.uuid4()))
    assert_error(
        await client.put(url, json={"name": "x"}, headers=admin["headers"]),
        404,
        "definition_not_found",
    )


async def test_status_moves_between_active_and_paused(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    created = await create(client, tenant, admin["headers"], with_item(WELCOME, reward["item_id"]))
    url = coupons_url(tenant, created["id"], "status")
    get_url = coupons_url(tenant, created["id"])
    previous = created
    for status in ("paused", "paused", "active", "active", "paused"):
        response = await client.put(url, json={"status": status}, headers=bearer(admin))
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["status"] == status
        same = ("id", "tenant_id", "name", "description", "config", "created_at")
        assert {k: got[k] for k in same} == {k: created[k] for k in same}
        assert utc(got["updated_at"]) >= utc(previous["updated_at"])
        assert (await client.get(get_url, headers=admin["headers"])).json() == got
        previous = got


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "archived"}, "status"),
        ({"status": "deleted"}, "status"),
        ({"status": "Active"}, "status"),
        ({}, "status"),
        ({"status": "paused", "name": "x"}, "name"),
    ],
)
async def test_status_refuses_other_values(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    body: dict[str, Any],
    field: str,
) -> None:
    created = await create(client, tenant, admin["headers"], random_body(reward["item_id"]))
    response = await client.put(
        coupons_url(tenant, created["id"], "status"), json=body, headers=admin["headers"]
    )
    assert_error(response, 422, "validation_error", [field])
    fetched = await client.get(coupons_url(tenant, created["id"]), headers=admin["headers"])
    assert fetched.json() == created


async def test_status_of_unknown_definition_is_404(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    response = await client.put(
        coupons_url(tenant, str(uuid.uuid4()), "status"),
        json={"status": "paused"},
        headers=admin["headers"],
    )
    assert_error(response, 404, "definition_not_found")


async def test_archive_is_final(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    created = await create(client, tenant, admin["headers"], with_item(NEW_YEAR, reward["item_id"]))
    url = coupons_url(tenant, created["id"])

    response = await client.delete(url, headers=bearer(admin))
    assert response.status_code == 204
    assert response.content == b""

    fetched = await client.get(url, headers=admin["headers"])
    assert fetched.status_code == 200, fetched.text
    archived = fetched.json()
    assert archived["status"] == "archived"
    same = ("id", "tenant_id", "name", "description", "config", "created_at")
    assert {k: archived[k] for k in same} == {k: created[k] for k in same}
    assert utc(archived["updated_at"]) >= utc(created["updated_at"])

    for status in ("active", "paused"):
        response = await client.put(
            f"{url}/status", json={"status": status}, headers=admin["headers"]
        )
        assert_error(response, 409, "definition_archived")
    for body in ({"name": "Back again"}, {"config": {"usage_limit": {"limit_type": "unlimited"}}}):
        response = await client.put(url, json=body, headers=admin["headers"])
        assert_error(response, 409, "definition_archived")

    again = await client.delete(url, headers=admin["headers"])
    assert again.status_code == 204
    assert again.content == b""
    assert (await client.get(url, headers=admin["headers"])).json() == archived


async def test_archive_unknown_definition_is_404(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    response = await client.delete(coupons_url(tenant, str(uuid.uuid4())), headers=admin["headers"])
    assert_error(response, 404, "definition_not_found")


async def test_archived_paused_definition_stays_archived(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    created = await create(client, tenant, admin["headers"], random_body(reward["item_id"]))
    url = coupons_url(tenant, created["id"])
    paused = await client.put(f"{url}/status", json={"status": "paused"}, headers=admin["headers"])
    assert paused.status_code == 200, paused.text
    assert (await client.delete(url, headers=admin["headers"])).status_code == 204
    assert (await client.get(url, headers=admin["headers"])).json()["status"] == "archived"
    response = await client.put(
        f"{url}/status", json={"status": "active"}, headers=admin["headers"]
    )
    assert_error(response, 409, "definition_archived")
