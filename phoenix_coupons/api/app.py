"""The admin HTTP sidecar (FastAPI)."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from phoenix_coupons import __version__
from phoenix_coupons.api.errors import install_error_handlers
from phoenix_coupons.api.routes import codes, coupons, redemptions, rewards
from phoenix_coupons.bootstrap import Container

if TYPE_CHECKING:
    from consumers.loop import Worker

log = structlog.get_logger(__name__)

REQUESTS = Counter("phoenix_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("phoenix_http_request_seconds", "HTTP request latency", ["method", "route"])


SHUTDOWN_GRACE_S = 10.0


async def stop_worker(worker: "Worker", task: "asyncio.Task[None]") -> None:
    """Let the worker finish its batch and commit; cancel it past the grace period."""
    worker.request_stop()
    try:
        await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_GRACE_S)
    except TimeoutError:
        log.error("worker_stop_timeout", seconds=SHUTDOWN_GRACE_S)
        task.cancel()
    except Exception as exc:
        log.error("worker_failed", error=repr(exc))


def create_app(
    container: Container, manage_lifecycle: bool = True, worker: "Worker | None" = None
) -> FastAPI:
    """`manage_lifecycle`: start and stop the container with the app (tests may own it).
    `worker`: the event worker runs in this process too (`phoenix-coupons run`)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await container.start()
        task = asyncio.create_task(worker.run(), name="worker") if worker else None
        log.info("api_started", version=__version__, worker=worker is not None)
        try:
            yield
        finally:
            if worker and task:
                await stop_worker(worker, task)
            if manage_lifecycle:
                await container.stop()

    app = FastAPI(
        title="Phoenix Coupons admin API",
        version=__version__,
        description="Reward items, coupon definitions and bulk generation "
        "(spec: admin-gateway-coupon-codes).",
        lifespan=lifespan,
    )
    app.state.container = container
    install_error_handlers(app)
    app.include_router(rewards.router)
    # Redemption before definitions: `/coupons/validate` is no definition id.
    app.include_router(redemptions.router)
    app.include_router(coupons.router)
    app.include_router(codes.router)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id, method=request.method, path=request.url.path
        )
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(request.method, route).observe(elapsed)
        response.headers["X-Request-Id"] = request_id
        log.info("http_request", status=response.status_code, ms=round(elapsed * 1000, 1))
        return response

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            await container.mongo.ping(container.settings.mongodb_ping_timeout_ms / 1000)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "mongodb": repr(exc)}, status_code=503)
        if worker is not None and not worker.ready:
            return JSONResponse({"status": "starting", "worker": "not ready"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
