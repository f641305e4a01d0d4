"""Validity relative to issuance (`config.valid_for`) over HTTP: the rules' 422s, each bulk
coupon's own window in the code queries and on `coupon.issued`, and validate/redeem reading
it as time passes (an API instance on a settable clock)."""

from datetime import timedelta
from typing import Any

import httpx

from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.settings import Settings
from tests.integration.test_lookup_limit import SettableClock, app_instance
from tests.support import read_events

Json = dict[str, Any]


def config(reward: Json, **extra: Any) -> Json:
    return {
        "reward_item_id": reward["item_id"],
        "code_format": "random",
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        **extra,
    }


async def create(client: httpx.AsyncClient, tenant: str, admin: Json, cfg: Json) -> httpx.Response:
    return await client.post(
        f"/v1/tenants/{tenant}/coupons",
        json={"name": "Streak reward", "config": cfg},
        headers=admin["headers"],
    )


def details(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {d["field"]: d["reason"] for d in response.json()["details"]}


async def test_bad_lifecycle_fields_are_named(
    client: httpx.AsyncClient, tenant: str, admin: Json, reward: Json
) -> None:
    custom = config(reward, code_format="custom", custom_code="WELCOME", valid_for="P7D")
    assert "no issuance" in details(await create(client, tenant, admin, custom))["config.valid_for"]
    month = details(await create(client, tenant, admin, config(reward, valid_for="P1M")))
    assert "days instead" in month["config.valid_for"]
    reminders = config(reward, valid_for="P7D", remind_before=["P1D", "P2D", "P3D", "P4D"])
    assert "config.remind_before" in details(await create(client, tenant, admin, reminders))
    unbounded = config(reward, issuance_limit={"max_coupons": 0})
    assert "config.issuance_limit.max_coupons" in details(
        await create(client, tenant, admin, unbounded)
    )


async def test_a_patch_cannot_give_a_custom_definition_valid_for(
    client: httpx.AsyncClient, tenant: str, admin: Json, reward: Json
) -> None:
    custom = config(reward, code_format="custom", custom_code="WELCOME")
    created = await create(client, tenant, admin, custom)
    assert created.status_code == 201, created.text
    patched = await client.put(
        f"/v1/tenants/{tenant}/coupons/{created.json()['id']}",
        json={"config": {"valid_for": "P7D"}},
        headers=admin["headers"],
    )
    assert "config.valid_for" in details(patched)


async def test_each_coupon_is_valid_for_its_duration_from_issuance(
    settings: Settings, tenant: str, admin: Json, reward: Json
) -> None:
    clock = SettableClock()
    async with app_instance(settings, clock) as api:
        created = await create(api, tenant, admin, config(reward, valid_for="PT36H"))
        assert created.status_code == 201, created.text
        defn = created.json()
        assert defn["config"]["valid_for"] == "PT36H"
        generated = await api.post(
            f"/v1/tenants/{tenant}/coupons/{defn['id']}/generate",
            json={"user_ids": ["u-1"]},
            headers=admin["headers"],
        )
        assert generated.status_code == 201, generated.text
        code = generated.json()["coupons"][0]["code"]
        state = await api.get(f"/v1/tenants/{tenant}/codes/{code}", headers=admin["headers"])
        coupon = state.json()["coupon"]
        issued_at = aware(coupon["issued_at"])
        assert aware(coupon["starts_at"]) == issued_at
        assert aware(coupon["expires_at"]) == issued_at + timedelta(hours=36)

        async def validate() -> Json:
            response = await api.post(
                f"/v1/tenants/{tenant}/coupons/validate",
                json={"code": code, "user_id": "u-1"},
                headers=admin["headers"],
            )
            assert response.status_code == 200, response.text
            body: Json = response.json()
            return body

        clock.now = issued_at + timedelta(hours=35, minutes=59)
        assert (await validate())["valid"] is True
        clock.now = issued_at + timedelta(hours=36)
        assert (await validate())["reason"] == "expired"
        redeem = await api.post(
            f"/v1/tenants/{tenant}/coupons/redeem",
            json={"code": code, "user_id": "u-1"},
            headers=admin["headers"],
        )
        assert redeem.status_code == 409 and redeem.json()["error"] == "expired"

    assert settings.kafka_bootstrap_servers
    [event] = await read_events(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_issued,
        lambda e: e.get("tenant_id") == tenant,
        1,
    )
    assert (event["starts_at"], event["expires_at"]) == (coupon["starts_at"], coupon["expires_at"])


async def test_the_definitions_expiry_caps_the_window(
    client: httpx.AsyncClient, tenant: str, admin: Json, reward: Json
) -> None:
    expires = (utc_now() + timedelta(days=1)).isoformat()
    created = await create(
        client, tenant, admin, config(reward, valid_for="P7D", expires_at=expires)
    )
    assert created.status_code == 201, created.text
    generated = await client.post(
        f"/v1/tenants/{tenant}/coupons/{created.json()['id']}/generate",
        json={"user_ids": ["u-1"]},
        headers=admin["headers"],
    )
    code = generated.json()["coupons"][0]["code"]
    state = await client.get(f"/v1/tenants/{tenant}/codes/{code}", headers=admin["headers"])
    assert aware(state.json()["coupon"]["expires_at"]) == aware(expires)
