"""Codes, prefixes and tenant ids are validated by full-string matches, and codes are ASCII:
a trailing newline or a non-ASCII look-alike (`\u017f` upper-cases to `S`)
answers 422 naming the field before any look-up, and never reaches an existing code."""

from typing import Any

import httpx
import pytest

from phoenix_coupons.bootstrap import Container
from tests.integration.test_input_bounds import custom_definition
from tests.integration.test_openapi import assert_error

Json = dict[str, Any]
SHARED = "ACMESHARED"
# Non-ASCII look-alikes of SHARED: `\u017f` (long s) upper-cases to `S`; a full-width `\uff21`.
LOOK_ALIKES = ["ACME\u017fHARED", "acme\u017fhared", "\uff21CMESHARED"]


@pytest.fixture
async def shared(client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str) -> str:
    """The id of a definition of the shared custom code ACMESHARED."""
    return await custom_definition(client, tenant, admin, reward, SHARED)


def config(reward: Json, **fields: Any) -> Json:
    base: Json = {"reward_item_id": reward["item_id"], "usage_limit": {"limit_type": "unlimited"}}
    return {**base, **fields}


# ---------------------------------------------------------------- trailing newline (item 3)


@pytest.mark.parametrize("code", [SHARED + "\n", "OTHER\n", "\nOTHER", "OT\nHER"])
async def test_custom_code_with_a_newline_is_refused(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str, shared: str, code: str
) -> None:
    response = await client.post(
        f"/v1/tenants/{tenant}/coupons",
        json={"name": "NL", "config": config(reward, code_format="custom", custom_code=code)},
        headers=admin["headers"],
    )
    assert_error(response, 422, "validation_error", ["config.custom_code"])
    # Through an update (a merge patch of the stored config) too.
    response = await client.put(
        f"/v1/tenants/{tenant}/coupons/{shared}",
        json={"config": {"custom_code": code}},
        headers=admin["headers"],
    )
    assert_error(response, 422, "validation_error", ["config.custom_code"])


@pytest.mark.parametrize("prefix", ["ACME\n", "AC\nME"])
async def test_code_prefix_with_a_newline_is_refused(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str, prefix: str
) -> None:
    response = await client.post(
        f"/v1/tenants/{tenant}/coupons",
        json={"name": "NL", "config": config(reward, code_format="random", code_prefix=prefix)},
        headers=admin["headers"],
    )
    assert_error(response, 422, "validation_error", ["config.code_prefix"])


async def test_generated_custom_codes_with_a_newline_are_refused(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    definition_id = await custom_definition(client, tenant, admin, reward, "BULKNL")
    response = await client.post(
        f"/v1/tenants/{tenant}/coupons/{definition_id}/generate",
        json={"user_ids": ["u1", "u2"], "custom_codes": ["FINE1", "BULKNL\n"]},
        headers=admin["headers"],
    )
    assert_error(response, 422, "validation_error", ["custom_codes.1"])


async def test_reward_type_with_a_newline_is_refused(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    response = await client.post(
        f"/v1/tenants/{tenant}/rewards",
        json={"name": "n", "reward_type": "points\n", "payload": {}},
        headers=admin["headers"],
    )
    assert_error(response, 422, "validation_error", ["reward_type"])


@pytest.mark.parametrize("suffix", ["%0A", "%0D", "%0D%0A", "%00", "%20"])
async def test_tenant_id_with_a_trailing_control_character_is_refused(
    client: httpx.AsyncClient, container: Container, tenant: str, suffix: str
) -> None:
    """An unbound key passes authorization, so the path's own validation answers."""
    _, plaintext = await container.api_keys.create("unbound", "rewards:read,coupons:read", None)
    headers = {"X-API-Key": plaintext}
    response = await client.get(f"/v1/tenants/{tenant}{suffix}/rewards", headers=headers)
    assert_error(response, 422, "validation_error", ["tenant_id"])
    response = await client.get(f"/v1/coupons?tenant_id={tenant}{suffix}", headers=headers)
    assert_error(response, 422, "validation_error", ["tenant_id"])


# ---------------------------------------------------------------- ASCII codes (item 4)


@pytest.mark.parametrize("code", LOOK_ALIKES)
async def test_look_alike_codes_are_refused_before_any_look_up(
    client: httpx.AsyncClient, admin: Json, tenant: str, shared: str, code: str
) -> None:
    base = f"/v1/tenants/{tenant}"
    body = {"code": code, "user_id": "alice"}
    for url in (f"{base}/coupons/validate", f"{base}/coupons/redeem"):
        response = await client.post(url, json=body, headers=admin["headers"])
        assert_error(response, 422, "validation_error", ["code"])
    for method, url in (("GET", f"{base}/codes/{code}"), ("POST", f"{base}/codes/{code}/revoke")):
        response = await client.request(method, url, headers=admin["headers"])
        assert_error(response, 422, "validation_error", ["code"])
    # The real code is untouched: valid, not revoked, never redeemed.
    response = await client.post(
        f"{base}/coupons/validate",
        json={"code": SHARED, "user_id": "alice"},
        headers=admin["headers"],
    )
    assert response.status_code == 200 and response.json()["valid"] is True, response.text
    state = await client.get(f"{base}/codes/{SHARED}", headers=admin["headers"])
    assert state.json()["redemptions"] == [] and state.json()["coupon"]["status"] == "active"


@pytest.mark.parametrize("code", ["ACME\u017fHARED", "CAFÉ", "\uff381"])
async def test_non_ascii_custom_codes_and_prefixes_are_refused(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str, code: str
) -> None:
    url = f"/v1/tenants/{tenant}/coupons"
    for cfg, field in (
        (config(reward, code_format="custom", custom_code=code), "config.custom_code"),
        (config(reward, code_format="random", code_prefix=code), "config.code_prefix"),
    ):
        response = await client.post(
            url, json={"name": "x", "config": cfg}, headers=admin["headers"]
        )
        assert_error(response, 422, "validation_error", [field])
    definition_id = await custom_definition(client, tenant, admin, reward, "BULKASCII")
    response = await client.post(
        f"{url}/{definition_id}/generate",
        json={"user_ids": ["u1"], "custom_codes": [code]},
        headers=admin["headers"],
    )
    assert_error(response, 422, "validation_error", ["custom_codes.0"])
