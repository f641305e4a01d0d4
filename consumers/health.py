"""A tiny HTTP server for the standalone worker: /healthz, /readyz and /metrics.
(Under `phoenix-coupons run` the API serves these instead.)"""

import asyncio
import contextlib
import json
from collections.abc import Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = structlog.get_logger(__name__)


class HealthServer:
    """`ready`: the worker's readiness (consumers/readiness.py says what it covers);
    `reasons`: why not, in the 503's body."""

    def __init__(
        self,
        host: str,
        port: int,
        ready: Callable[[], bool],
        reasons: Callable[[], list[str]] | None = None,
    ) -> None:
        self._host, self._port, self._ready, self._reasons = host, port, ready, reasons
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info("worker_health_listening", host=self._host, port=self._port)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else "/"
            status, ctype, body = self._route(path.split("?", 1)[0])
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            if self._ready():
                return "200 OK", "application/json", b'{"status":"ready"}'
            body = {"status": "not_ready", "reasons": self._reasons() if self._reasons else []}
            return "503 Service Unavailable", "application/json", json.dumps(body).encode()
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        return "404 Not Found", "application/json", b'{"error":"not_found"}'
