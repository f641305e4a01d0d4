"""The spec's first steps, end to end through the API, against the real wire servers."""

from typing import Any

import httpx

from phoenix_coupons.settings import Settings
from tests.support import read_events


async def test_create_generate_and_announce(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    settings: Settings,
) -> None:
    body = {
        "name": "Welcome Bonus",
        "config": {
            "reward_item_id": reward["item_id"],
            "code_format": "random",
            "code_prefix": "WELCOME",
            "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        },
    }
    created = await client.post(
        f"/v1/tenants/{tenant}/coupons", json=body, headers=admin["headers"]
    )
    assert created.status_code == 201, created.text
    definition = created.json()
    assert definition["config"]["code_length"] == 8
    users = ["user_123", "user_456"]
    generated = await client.post(
        f"/v1/tenants/{tenant}/coupons/{definition['id']}/generate",
        json={"user_ids": users},
        headers=admin["headers"],
    )
    assert generated.status_code == 201, generated.text
    coupons = generated.json()["coupons"]
    assert [c["user_id"] for c in coupons] == users
    assert all(c["code"].startswith("WELCOME") and len(c["code"]) == 15 for c in coupons)
    assert settings.kafka_bootstrap_servers
    events = await read_events(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant,
        count=2,
    )
    assert sorted(e["code"] for e in events) == sorted(c["code"] for c in coupons)
    assert {e["_key"] for e in events} == set(users)
