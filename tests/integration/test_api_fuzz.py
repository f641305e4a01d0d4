"""Property-based fuzzing of every documented operation with schemathesis, against the real
servers: no 5xx, every status code documented, every body conforming to its documented schema,
every 4xx body the one error body `{error, message, details}`.

The app's async clients (MongoDB, Kafka) live on the session event loop, so requests go through
the session's httpx ASGI client on that loop; hypothesis drives generation from a worker thread.
"""

import asyncio
from collections.abc import Callable
from typing import Any, cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from tests.conftest import KeyFactory

BASE_URL = "http://api.test"
MAX_EXAMPLES = 25
ERROR_KEYS = {"error", "message", "details"}

# The operations of the service's own document (built without a container: no I/O).
_DOC = create_app(cast(Container, None), manage_lifecycle=False).openapi()
OPERATIONS = [
    (method.upper(), path)
    for path, methods in _DOC["paths"].items()
    for method in methods
    if method in {"get", "put", "post", "delete", "patch"}
]
GLOBAL_PATHS = {p for _, p in OPERATIONS if "{tenant_id}" not in p}


@schemathesis.check
def error_body_shape(ctx: CheckContext, response: schemathesis.Response, case: Case) -> None:
    """Every 4xx answers `{error, message, details[, conflicts]}` with non-empty strings."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict), f"{response.status_code}: body is no object: {body!r}"
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"conflicts"}, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["details"], list), body
    for detail in body["details"]:
        assert isinstance(detail, dict) and set(detail) == {"field", "reason"}, body
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    error_body_shape,
]

HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture(scope="module")
async def schema(client: httpx.AsyncClient) -> Any:
    """The document the running service serves, as schemathesis reads it."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    return schemathesis.openapi.from_dict(response.json())


async def seed(client: httpx.AsyncClient, tenant: str, headers: dict[str, str]) -> dict[str, str]:
    """A reward item and a definition granting it, so fixed ids reach the handlers."""
    response = await client.post(
        f"/v1/tenants/{tenant}/rewards",
        headers=headers,
        json={"name": "Fuzz points", "reward_type": "points", "payload": {"amount": 5}},
    )
    assert response.status_code == 201, response.text
    item_id = response.json()["item_id"]
    response = await client.post(
        f"/v1/tenants/{tenant}/coupons",
        headers=headers,
        json={
            "name": "Fuzz definition",
            "config": {
                "reward_item_id": item_id,
                "code_format": "random",
                "code_prefix": "FUZZ",
                "code_length": 8,
                "usage_limit": {"limit_type": "per_user", "max_uses": 1},
            },
        },
    )
    assert response.status_code == 201, response.text
    return {"item_id": item_id, "definition_id": response.json()["id"]}


def send(
    loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
) -> Callable[[Case], httpx.Response]:
    """Send a case through the session's ASGI client, on the session loop (from a thread)."""

    def call(case: Case) -> httpx.Response:
        kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        request: dict[str, Any] = {
            # Negative cases may hold non-ASCII header values, which httpx refuses as str:
            # send them as UTF-8 bytes, as a raw client would put them on the wire.
            "headers": {
                name: value if value.isascii() else value.encode()
                for name, value in (kwargs.get("headers") or {}).items()
            },
            "params": kwargs.get("params") or None,
            "cookies": kwargs.get("cookies") or None,
        }
        if "json" in kwargs:
            request["json"] = kwargs["json"]
        elif kwargs.get("data") is not None:
            request["content"] = kwargs["data"]
        future = asyncio.run_coroutine_threadsafe(
            client.request(kwargs["method"], kwargs["url"], **request), loop
        )
        return future.result(timeout=30)

    return call


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_operation_conforms_to_its_documentation(
    method: str,
    path: str,
    schema: Any,
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    tenant: str,
) -> None:
    # Cross-tenant paths need a key bound to no tenant; every other path the fresh tenant's key.
    bound = path not in GLOBAL_PATHS
    key = await make_key(tenant=tenant if bound else None, name="fuzz")
    headers = {"X-API-Key": key["key"]}
    ids = await seed(client, tenant, headers) if bound else {}
    operation = schema[path][method]
    declared = {p.name for p in operation.path_parameters}
    fixed = {"tenant_id": tenant} if bound else {}
    real = {name: value for name, value in ids.items() if name in declared}
    call = send(asyncio.get_running_loop(), client)

    strategies = [
        # Valid inputs, ids generated (mostly unknown: 404) and the seeded ids (reach the store).
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed, headers=headers),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed, headers=headers),
    ]
    if real:
        strategies.append(
            operation.as_strategy(
                GenerationMode.POSITIVE, path_parameters={**fixed, **real}, headers=headers
            )
        )

    @HYPOTHESIS
    @given(case=st.one_of(strategies))
    def fuzz(case: Case) -> None:
        response = call(case)
        case.validate_response(response, checks=CHECKS, headers=headers)

    await asyncio.to_thread(fuzz)
    if "definition_id" in real:
        await cancel_jobs(client, tenant, real["definition_id"], headers)


async def cancel_jobs(
    client: httpx.AsyncClient, tenant: str, definition_id: str, headers: dict[str, str]
) -> None:
    """End the generation jobs the fuzzing queued (a `count` may ask for a million codes),
    so that no later test's runner makes them."""
    url = f"/v1/tenants/{tenant}/coupons/{definition_id}/generation-jobs"
    after: str | None = None
    while True:
        params = {"limit": "100", **({"after": after} if after else {})}
        page = await client.get(url, params=params, headers=headers)
        assert page.status_code == 200, page.text
        for job in page.json()["jobs"]:
            if job["status"] in ("queued", "running"):
                done = await client.post(f"{url}/{job['id']}/cancel", headers=headers)
                assert done.status_code == 200, done.text
        after = page.headers.get("X-Next-After")
        if not after:
            return
