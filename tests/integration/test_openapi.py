"""The OpenAPI document and the docs page cover every endpoint of the spec with one error body.

`assert_error` lives here (next to the ErrorBody checks) and every integration file of the
reward item and definition endpoints uses it on each error the API answers.
"""

import re
from typing import Any, get_args

import httpx
import pytest

from schemas.errors import ErrorBody
from schemas.redemptions import RefusalReason

ERROR_KEYS = {"error", "message", "details"}
ERROR_REF = "#/components/schemas/ErrorBody"

T = "/v1/tenants/{tenant_id}"
# Every path and method of the spec, plus the reward items of the issue.
SPEC_OPERATIONS: dict[str, set[str]] = {
    f"{T}/rewards": {"get", "post"},
    f"{T}/rewards/{{item_id}}": {"get", "put", "delete"},
    f"{T}/coupons": {"get", "post"},
    f"{T}/coupons/{{definition_id}}": {"get", "put", "delete"},
    f"{T}/coupons/{{definition_id}}/status": {"put"},
    f"{T}/coupons/{{definition_id}}/generate": {"post"},
    "/v1/coupons": {"get"},
}
SUCCESS: dict[tuple[str, str], str] = {
    (f"{T}/rewards", "post"): "201",
    (f"{T}/rewards/{{item_id}}", "delete"): "204",
    (f"{T}/coupons", "post"): "201",
    (f"{T}/coupons/{{definition_id}}", "delete"): "204",
    (f"{T}/coupons/{{definition_id}}/generate", "post"): "201",
}


def assert_error(
    response: httpx.Response,
    status: int,
    error: str | None = None,
    fields: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """`response` is the API's one error body `{error, message, details[, conflicts]}` with
    `status`; `error` is its code when given; each of `fields` is named in `details` with a
    reason. Returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"conflicts"}, body
    ErrorBody.model_validate(body)
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["details"], list), body
    for detail in body["details"]:
        assert set(detail) == {"field", "reason"}, detail
        assert isinstance(detail["field"], str) and detail["field"], detail
        assert isinstance(detail["reason"], str) and detail["reason"], detail
    if "conflicts" in body:
        assert isinstance(body["conflicts"], list) and body["conflicts"], body
    if error is not None:
        assert body["error"] == error, body
    named = {d["field"] for d in body["details"]}
    for field in fields:
        assert field in named, f"{field!r} not named in {body['details']}"
    return body


@pytest.fixture(scope="module")
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = response.json()
    return doc


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, doc["paths"][path][method])
        for path, methods in SPEC_OPERATIONS.items()
        for method in sorted(methods)
    ]


async def test_every_spec_path_and_method_is_documented(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.")
    assert openapi["info"]["title"]
    for path, methods in SPEC_OPERATIONS.items():
        assert path in openapi["paths"], f"{path} missing from the OpenAPI document"
        documented = set(openapi["paths"][path]) - {"parameters"}
        assert methods <= documented, f"{path}: {methods - documented} not documented"
    for (path, method), code in SUCCESS.items():
        assert code in openapi["paths"][path][method]["responses"], (path, method)


async def test_error_responses_reference_the_error_body(openapi: dict[str, Any]) -> None:
    for path, method, op in operations(openapi):
        responses = op["responses"]
        for code in ("401", "403", "422"):
            assert code in responses, f"{method.upper()} {path}: {code} not documented"
        for code, response in responses.items():
            if code.startswith("2"):
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, f"{method.upper()} {path} {code}: {schema}"
    by_id = {(p, m): op for p, m, op in operations(openapi)}
    assert "404" in by_id[(f"{T}/coupons/{{definition_id}}", "get")]["responses"]
    assert "409" in by_id[(f"{T}/rewards/{{item_id}}", "delete")]["responses"]
    assert "409" in by_id[(f"{T}/coupons/{{definition_id}}/status", "put")]["responses"]


async def test_error_body_schema(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    body = schemas["ErrorBody"]
    assert {"error", "message", "details", "conflicts"} == set(body["properties"])
    assert {"error", "message"} <= set(body["required"])
    assert body["properties"]["details"]["items"] == {"$ref": "#/components/schemas/FieldIssue"}
    assert set(schemas["FieldIssue"]["required"]) == {"field", "reason"}


async def test_security_schemes_for_api_key_and_bearer_jwt(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    api_keys = [s for s in schemes.values() if s["type"] == "apiKey"]
    assert [(s["in"], s["name"]) for s in api_keys] == [("header", "X-API-Key")]
    bearers = [s for s in schemes.values() if s["type"] == "http"]
    assert [(s["scheme"].lower(), s.get("bearerFormat")) for s in bearers] == [("bearer", "JWT")]
    names = set(schemes)
    for path, method, op in operations(openapi):
        used = {name for requirement in op.get("security", []) for name in requirement}
        assert used == names, f"{method.upper()} {path} accepts {used}, not both schemes"


async def test_request_bodies_use_the_wire_models(openapi: dict[str, Any]) -> None:
    def body_ref(path: str, method: str) -> str:
        content = openapi["paths"][path][method]["requestBody"]["content"]
        ref: str = content["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[-1]

    assert body_ref(f"{T}/rewards", "post") == "RewardItemCreate"
    assert body_ref(f"{T}/coupons", "post") == "DefinitionCreate"
    assert body_ref(f"{T}/coupons/{{definition_id}}", "put") == "DefinitionUpdate"
    assert body_ref(f"{T}/coupons/{{definition_id}}/status", "put") == "StatusUpdate"
    assert body_ref(f"{T}/coupons/{{definition_id}}/generate", "post") == "GenerateRequest"
    schemas = openapi["components"]["schemas"]
    assert schemas["StatusUpdate"]["properties"]["status"]["enum"] == ["active", "paused"]
    config = schemas["CouponConfig"]
    assert {"reward_item_id", "code_format", "usage_limit"} <= set(config["required"])
    assert config.get("additionalProperties") is False


async def test_docs_page_is_html(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text
    assert "swagger" in response.text.lower()


async def test_unknown_route_and_method_answer_the_error_body(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str
) -> None:
    assert_error(await client.get("/v1/nowhere", headers=admin["headers"]), 404, "not_found")
    response = await client.patch(f"/v1/tenants/{tenant}/coupons", headers=admin["headers"])
    assert_error(response, 405, "method_not_allowed")


async def test_redeem_documents_each_refusal_under_its_status(openapi: dict[str, Any]) -> None:
    """The refusal reasons of schemas.redemptions are the list the redeem page shows: an
    unknown code under 404, each other reason under 409 (one list, no copy to drift)."""
    responses = openapi["paths"][f"{T}/coupons/redeem"]["post"]["responses"]
    listed = {
        status: set(re.findall(r"`([a-z_]+)`", responses[status]["description"])) - {"error"}
        for status in ("404", "409")
    }
    reasons = set(get_args(RefusalReason))
    assert listed["404"] == {"code_not_found", "redemption_not_found"}
    assert listed["409"] == reasons - {"code_not_found"} | {"already_rolled_back"}
