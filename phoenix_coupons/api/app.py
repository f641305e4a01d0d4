"""The admin HTTP sidecar (FastAPI)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Match
from starlette.types import Scope

from phoenix_coupons import __version__
from phoenix_coupons.api.body_limit import BodyLimit
from phoenix_coupons.api.errors import install_error_handlers
from phoenix_coupons.api.observe import RequestLog
from phoenix_coupons.api.routes import codes, coupons, jobs, redemptions, reservations, rewards
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings

if TYPE_CHECKING:
    from consumers.loop import Worker

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE_S = 10.0


def server_options(
    settings: Settings, host: str | None = None, port: int | None = None
) -> dict[str, Any]:
    """uvicorn's settings of the API (and of the bench's framework reference: the same)."""
    return {
        "host": host or settings.api_host,
        "port": port or settings.api_port,
        "loop": settings.api_event_loop,
        "http": settings.api_http_parser,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(SHUTDOWN_GRACE_S),
    }


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
            await container.start(scheduler=worker is not None)
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
    app.include_router(reservations.router)
    app.include_router(coupons.router)
    app.include_router(jobs.router)
    app.include_router(codes.router)

    # Bulk generation reads up to PHOENIX_BULK_MAX_USERS ids (and as many custom codes).
    generate_route = next(
        r
        for r in coupons.router.routes
        if isinstance(r, APIRoute) and r.endpoint is coupons.generate
    )

    submit_route = next(
        r for r in jobs.router.routes if isinstance(r, APIRoute) and r.endpoint is jobs.submit_job
    )

    def body_limit(scope: Scope) -> int:
        settings = container.settings
        if generate_route.matches(scope)[0] is Match.FULL:
            return settings.generate_max_body_bytes
        if submit_route.matches(scope)[0] is Match.FULL:
            return settings.job_max_body_bytes
        return settings.api_max_body_bytes

    # The last added runs first: the request log sees the 413s of the body limit too.
    app.add_middleware(BodyLimit, limit_for=body_limit)
    app.add_middleware(RequestLog)

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
