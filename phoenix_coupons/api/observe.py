"""Each request's log line and HTTP metrics, a pure ASGI middleware: after the app returns it
reads the routed scope (route, path parameters) and the principal that authentication put in
the request state, so the line says who called (a BaseHTTPMiddleware runs the app in another
context, where what the endpoint's dependencies bind is not seen)."""

import re
import time
import uuid

import structlog
from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phoenix_coupons.services.api_keys import Principal

log = structlog.get_logger(__name__)

REQUESTS = Counter("phoenix_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("phoenix_http_request_seconds", "HTTP request latency", ["method", "route"])
# A caller's X-Request-Id is kept when it is a plain token; anything else is replaced.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        method, path = scope["method"], scope["path"]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method, path=path)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id  # what a bulk generation stores on its coupons
        status = 500  # unless the app answers
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(elapsed)
            principal: Principal | None = state.get("principal")
            log.info(
                "http_request",
                status=status,
                ms=round(elapsed * 1000, 1),
                api_key_id=principal.key_id if principal else None,
                tenant_id=tenant_of(scope, principal),
            )


def tenant_of(scope: Scope, principal: Principal | None) -> str | None:
    """The path's tenant, else the one a cross-tenant listing asked for, else the key's."""
    tenant: str | None = (scope.get("path_params") or {}).get("tenant_id")
    if tenant is None and scope.get("query_string"):
        tenant = QueryParams(scope["query_string"]).get("tenant_id")
    if tenant is None and principal is not None:
        tenant = principal.tenant_id
    return tenant
