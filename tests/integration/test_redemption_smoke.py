"""Redemption limits hold exactly under concurrency, through the HTTP API."""

import asyncio
from typing import Any

import httpx


async def _definition(
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    reward_id: str,
    limit: dict[str, Any],
    code: str,
) -> dict[str, Any]:
    body = {
        "name": f"Promo {code}",
        "config": {
            "reward_item_id": reward_id,
            "code_format": "custom",
            "custom_code": code,
            "usage_limit": limit,
        },
    }
    created = await client.post(f"/v1/tenants/{tenant}/coupons", json=body, headers=headers)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


async def test_global_limit_is_exact_under_200_concurrent_redeems(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    await _definition(
        client,
        tenant,
        admin["headers"],
        reward["item_id"],
        {"limit_type": "global", "max_uses": 10},
        "GLOBAL10",
    )
    url = f"/v1/tenants/{tenant}/coupons/redeem"
    answers = await asyncio.gather(
        *[
            client.post(
                url, json={"code": "global10", "user_id": f"u{i}"}, headers=admin["headers"]
            )
            for i in range(200)
        ]
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 10, statuses
    assert statuses.count(409) == 190
    assert {a.json()["error"] for a in answers if a.status_code == 409} == {"global_limit_reached"}
    first = next(a.json() for a in answers if a.status_code == 201)
    assert first["reward"]["item_id"] == reward["item_id"]
    back = await client.post(
        f"/v1/tenants/{tenant}/coupons/redemptions/{first['redemption_id']}/rollback",
        headers=admin["headers"],
    )
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "rolled_back"
    again = await client.post(
        f"/v1/tenants/{tenant}/coupons/redemptions/{first['redemption_id']}/rollback",
        headers=admin["headers"],
    )
    assert again.status_code == 409 and again.json()["error"] == "already_rolled_back"
    retry = await asyncio.gather(
        *[
            client.post(
                url, json={"code": "GLOBAL10", "user_id": f"v{i}"}, headers=admin["headers"]
            )
            for i in range(20)
        ]
    )
    assert [r.status_code for r in retry].count(201) == 1


async def test_per_user_limit_is_exact_under_50_concurrent_redeems(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    await _definition(
        client,
        tenant,
        admin["headers"],
        reward["item_id"],
        {"limit_type": "per_user", "max_uses": 2},
        "TWICE",
    )
    url = f"/v1/tenants/{tenant}/coupons/redeem"
    answers = await asyncio.gather(
        *[
            client.post(url, json={"code": "TWICE", "user_id": "alice"}, headers=admin["headers"])
            for _ in range(50)
        ]
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 2, statuses
    assert {a.json()["error"] for a in answers if a.status_code == 409} == {
        "per_user_limit_reached"
    }
    other = await client.post(
        url, json={"code": "TWICE", "user_id": "bob"}, headers=admin["headers"]
    )
    assert other.status_code == 201
