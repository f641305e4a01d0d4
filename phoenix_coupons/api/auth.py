"""Authentication (X-API-Key or Bearer JWT) and authorization (scope, tenant binding)."""

from collections.abc import Awaitable, Callable

import structlog
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter

from phoenix_coupons.api.deps import ApiKeys, LookupLimit
from phoenix_coupons.api.params import TenantId
from phoenix_coupons.domain.errors import Forbidden, Unauthenticated
from phoenix_coupons.domain.models import Requester
from phoenix_coupons.services.api_keys import Principal

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Plaintext API key (`pk_...`)."
)
bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="HS256 JWT signed with the API key's value; claims `sub_type: admin`, "
    "`sub_id: <key id>`, `exp`.",
)


async def authenticate(
    request: Request,
    service: ApiKeys,
    api_key: str | None = Depends(api_key_header),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Principal:
    if api_key:
        principal: Principal = await service.from_api_key(api_key)
    elif credentials is not None:
        principal = await service.from_jwt(credentials.credentials)
    elif request.headers.get("Authorization"):
        raise Unauthenticated(
            "Authorization must be 'Bearer <jwt>'", code="malformed_authorization"
        )
    else:
        raise Unauthenticated(
            "send an X-API-Key header or an Authorization: Bearer JWT", code="missing_credentials"
        )
    structlog.contextvars.bind_contextvars(api_key_id=principal.key_id)
    # For the request log line, written by a middleware outside this dependency's context.
    request.state.principal = principal
    return principal


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller has `scope` and, if its key is tenant-bound, the path's tenant."""

    async def check(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
        if scope not in principal.scopes:
            raise Forbidden(f"the API key lacks the scope {scope!r}", code="missing_scope")
        tenant = request.path_params.get("tenant_id")
        if principal.tenant_id is not None and tenant is not None and tenant != principal.tenant_id:
            raise Forbidden(
                "the API key is bound to another tenant than this path's", code="tenant_forbidden"
            )
        return principal

    return check


def looking_up(scope: str, refusals: Counter | None = None) -> Callable[..., Awaitable[Principal]]:
    """`require(scope)` for a call that looks a code up: refused with 429 while the key's
    failed look-ups in the path's tenant are over the limit (the block read with the key:
    no read of its own). `refusals`: the route's refusal counter, by reason."""

    async def check(
        tenant_id: TenantId, limiter: LookupLimit, principal: Principal = Depends(require(scope))
    ) -> Principal:
        refusal = limiter.refusal(principal.lookup_blocks, tenant_id)
        if refusal is not None:
            if refusals is not None:
                refusals.labels(refusal.code).inc()
            raise refusal
        return principal

    return check


def requester(scope: str) -> Callable[..., Awaitable[Requester]]:
    """`require(scope)`, answered as what the call's writes keep of their author: the key's
    id and the request's X-Request-Id (observe.py puts it in the request state)."""

    async def who(request: Request, principal: Principal = Depends(require(scope))) -> Requester:
        return Requester(principal.key_id, getattr(request.state, "request_id", None))

    return who


def require_global(scope: str) -> Callable[..., Awaitable[Principal]]:
    """Cross-tenant endpoints: only an `X-API-Key` of a key bound to no tenant."""

    async def check(principal: Principal = Depends(require(scope))) -> Principal:
        if principal.via != "api_key":
            raise Forbidden(
                "this endpoint accepts only the X-API-Key header", code="api_key_required"
            )
        if principal.tenant_id is not None:
            raise Forbidden("this endpoint needs a key bound to no tenant", code="tenant_bound_key")
        return principal

    return check
