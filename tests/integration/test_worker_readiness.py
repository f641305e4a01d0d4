"""The standalone worker's readiness: `/readyz` and the gauge
`phoenix_worker_ready` say whether its dependencies answer. MongoDB is reached through a
relay the test can freeze (the bytes stop flowing, as from a stalled server), so the session's
shared server stays up."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from prometheus_client import REGISTRY

from consumers.health import HealthServer
from phoenix_coupons.devservers import free_port
from phoenix_coupons.settings import Settings
from tests.integration.worker_groups import create_inbound, group_settings, worker_pool
from tests.support import wait_until

PING_S = 0.5


class Relay:
    """A TCP relay to one server; `freeze()` holds every byte until `thaw()`."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = free_port()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self._open.set()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    def freeze(self) -> None:
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._open.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sink.close()


@pytest.fixture
async def mongo_relay(settings: Settings) -> AsyncIterator[tuple[Relay, str]]:
    assert settings.mongodb_uri
    parts = urlsplit(settings.mongodb_uri)
    assert parts.hostname and parts.port
    relay = Relay(parts.hostname, parts.port)
    await relay.start()
    try:
        yield relay, urlunsplit(parts._replace(netloc=f"127.0.0.1:{relay.port}"))
    finally:
        await relay.stop()


def gauge() -> float | None:
    return REGISTRY.get_sample_value("phoenix_worker_ready")


async def test_readiness_follows_mongodb_and_the_gauge_with_it(
    settings: Settings, mongo_relay: tuple[Relay, str]
) -> None:
    relay, uri = mongo_relay
    own = group_settings(
        settings,
        mongodb_uri=uri,
        worker_ready_timeout_seconds=PING_S,
    )
    await create_inbound(own)
    async with worker_pool() as pool:
        running = await pool.start(own)
        worker = running.worker
        port = free_port()
        health = HealthServer("127.0.0.1", port, lambda: worker.ready, worker.not_ready_reasons)
        await health.start()
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", trust_env=False
            ) as http:
                ready = await http.get("/readyz")
                assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
                assert gauge() == 1.0

                relay.freeze()  # MongoDB stops answering
                await wait_until(lambda: not worker.ready, deadline_s=4 * PING_S + 2)
                assert gauge() == 0.0
                stalled = await http.get("/readyz")
                assert stalled.status_code == 503
                body = stalled.json()
                assert body["status"] == "not_ready"
                assert any(r.startswith("mongodb: ") for r in body["reasons"]), body

                relay.thaw()
                await wait_until(lambda: worker.ready, deadline_s=30)
                assert gauge() == 1.0
                assert (await http.get("/readyz")).status_code == 200
        finally:
            await health.stop()
        await pool.stop(running)
    assert gauge() == 0.0  # a stopped worker is not ready
