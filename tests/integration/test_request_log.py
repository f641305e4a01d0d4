"""Each request's `http_request` log line says who called: the API key id
and the tenant, whichever credential was used and whatever the answer."""

import time
from typing import Any

import httpx
import jwt
import structlog
from structlog.testing import capture_logs

from tests.conftest import KeyFactory

Json = dict[str, Any]


async def request_line(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Json:
    """Send one request and return its `http_request` log entry, as the service renders it
    (context variables merged, as `configure_logging` does)."""
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.request(method, url, **kwargs)
    lines = [e for e in logs if e["event"] == "http_request"]
    assert len(lines) == 1, logs
    line = lines[0]
    assert line["status"] == response.status_code
    assert line["request_id"] == response.headers["X-Request-Id"]
    return line


def bearer(key: Json) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub_type": "admin", "sub_id": key["id"], "iat": now, "exp": now + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, key['key'], algorithm='HS256')}"}


async def test_api_key_and_tenant_of_a_successful_request(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    for headers in (admin["headers"], bearer(admin)):
        line = await request_line(client, "GET", f"/v1/tenants/{tenant}/rewards", headers=headers)
        assert line["api_key_id"] == admin["id"]
        assert line["tenant_id"] == tenant
        assert line["status"] == 200
        assert line["method"] == "GET" and line["path"] == f"/v1/tenants/{tenant}/rewards"


async def test_refused_requests_still_say_who_called(
    client: httpx.AsyncClient, make_key: KeyFactory, tenant: str
) -> None:
    reader = await make_key(scopes="rewards:read", tenant=tenant)
    line = await request_line(
        client,
        "POST",
        f"/v1/tenants/{tenant}/rewards",
        json={"name": "n", "reward_type": "points"},
        headers=reader["headers"],
    )
    assert (line["status"], line["api_key_id"], line["tenant_id"]) == (403, reader["id"], tenant)
    invalid = await request_line(
        client, "POST", f"/v1/tenants/{tenant}/coupons/validate", json={}, headers=reader["headers"]
    )
    assert invalid["api_key_id"] == reader["id"] and invalid["tenant_id"] == tenant


async def test_anonymous_request_names_the_tenant_and_no_key(
    client: httpx.AsyncClient, tenant: str
) -> None:
    line = await request_line(client, "GET", f"/v1/tenants/{tenant}/rewards")
    assert line["status"] == 401
    assert line["api_key_id"] is None
    assert line["tenant_id"] == tenant


async def test_cross_tenant_route_logs_the_keys_binding(
    client: httpx.AsyncClient, make_key: KeyFactory, tenant: str
) -> None:
    """No tenant in the path: the queried tenant, else the key's own (none for an admin key)."""
    unbound = await make_key(scopes="coupons:read")
    line = await request_line(client, "GET", "/v1/coupons", headers=unbound["headers"])
    assert (line["api_key_id"], line["tenant_id"]) == (unbound["id"], None)
    line = await request_line(
        client, "GET", "/v1/coupons", params={"tenant_id": tenant}, headers=unbound["headers"]
    )
    assert (line["api_key_id"], line["tenant_id"]) == (unbound["id"], tenant)
    bound = await make_key(scopes="coupons:read", tenant=tenant)
    line = await request_line(client, "GET", "/v1/coupons", headers=bound["headers"])
    assert (line["status"], line["api_key_id"], line["tenant_id"]) == (403, bound["id"], tenant)


async def test_oversized_body_is_logged_as_413(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    line = await request_line(
        client,
        "POST",
        f"/v1/tenants/{tenant}/rewards",
        content=b" " * (1024 * 1024 + 1),
        headers={**admin["headers"], "Content-Type": "application/json"},
    )
    # Refused before routing and authentication: no key, and the path says the tenant.
    assert (line["status"], line["api_key_id"]) == (413, None)
    assert line["path"] == f"/v1/tenants/{tenant}/rewards"


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    """The pure ASGI middleware still labels requests by route template, not by path."""
    await client.get(f"/v1/tenants/{tenant}/rewards", headers=admin["headers"])
    text = (await client.get("/metrics")).text
    assert (
        'phoenix_http_requests_total{method="GET",route="/v1/tenants/{tenant_id}/rewards",'
        'status="200"}' in text
    )
    assert tenant not in text
