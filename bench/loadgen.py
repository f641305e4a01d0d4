"""A light HTTP/1.1 load generator in its own process: keep-alive connections on raw asyncio
streams (uvloop when installed), each request's bytes built by one string format, a
response read by its `Content-Length`. It answers one JSON line on stdout: the calls, the
seconds, each call's latency, the statuses, and its own CPU seconds (to show it is not the
bottleneck: `make bench` also measures it alone against bench/trivial_server.py).

    python -m bench.loadgen URL --body '{"code": "X", "user_id": "u-{i}"}' \\
        --header 'X-API-Key: pk_...' --calls 2000 --concurrency 32     # closed loop
    python -m bench.loadgen URL ... --calls 1000 --rate 100            # open loop

Closed loop: `concurrency` connections, each sending its next call once answered. Open
loop: call i is due at start + i / rate whatever the answers; it takes an idle connection
(or opens one) and its latency counts from when it was due, so a stall shows in full
(no coordinated omission). `{i}` in the body is the call's number (`--first` + i); the
warm-up calls (not timed) use `w0`, `w1`, ..."""

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

with contextlib.suppress(ImportError):
    import uvloop


@dataclass
class Timed:
    """The timed calls: wall and CPU seconds, each latency, the statuses."""

    seconds: float
    cpu_s: float
    latencies_ms: list[float]
    statuses: Counter[int]
    series: list[tuple[float, float]] = field(default_factory=list)  # open loop
    started_at: float = 0.0  # open loop: the wall clock (epoch s) of the first call's due time


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> int:
        """Send one request, read its whole answer: its status."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


class Target:
    def __init__(self, url: str, method: str, body: str | None, headers: list[str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", *headers]
        if body is not None:
            lines.append("Content-Type: application/json")
        self._head = "\r\n".join(lines) + "\r\n"
        self._body = body

    def request(self, i: str) -> bytes:
        if self._body is None:
            return (self._head + "\r\n").encode()
        body = self._body.replace("{i}", i).encode()
        return (self._head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def closed_loop(
    target: Target, calls: int, concurrency: int, first: int, warmup: int
) -> Timed:
    conns = [await Connection.open(target.host, target.port) for _ in range(concurrency)]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    try:
        for j in range(warmup):  # each connection used once or more before the clock runs
            await conns[j % concurrency].call(target.request(f"w{j}"))
        pending = iter(range(calls))

        async def lane(conn: Connection) -> None:
            for n in pending:
                request = target.request(str(first + n))
                t = time.perf_counter()
                statuses[await conn.call(request)] += 1
                latencies.append((time.perf_counter() - t) * 1000)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(lane(c) for c in conns))
        return Timed(time.perf_counter() - started, time.process_time() - cpu, latencies, statuses)
    finally:
        for c in conns:
            c.close()


async def open_loop(target: Target, calls: int, rate: float, first: int, warmup: int) -> Timed:
    idle: list[Connection] = []
    everyone: list[Connection] = []
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    series: list[tuple[float, float]] = []  # (when due, s from the start; latency, ms)
    started = 0.0

    async def fresh() -> Connection:
        conn = await Connection.open(target.host, target.port)
        everyone.append(conn)
        return conn

    async def one(request: bytes, due: float | None) -> None:
        conn = idle.pop() if idle else None
        t = due if due is not None else time.perf_counter()
        if conn is None:
            conn = await fresh()
            status = await conn.call(request)
        else:
            try:
                status = await conn.call(request)
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed it while idle (its keep-alive timeout) as the request
                # went out, unread: sent again on a new connection, its wait counted.
                conn.close()
                conn = await fresh()
                status = await conn.call(request)
        if due is not None:
            statuses[status] += 1
            latencies.append((time.perf_counter() - t) * 1000)
            series.append((due - started, latencies[-1]))
        idle.append(conn)

    try:
        for j in range(warmup):
            await one(target.request(f"w{j}"), None)
        tasks: list[asyncio.Task[None]] = []
        started, cpu = time.perf_counter(), time.process_time()
        wall = time.time()
        for n in range(calls):
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(target.request(str(first + n)), due)))
        await asyncio.gather(*tasks)
        timed = Timed(time.perf_counter() - started, time.process_time() - cpu, latencies, statuses)
        timed.series = series
        timed.started_at = wall
        return timed
    finally:
        for c in everyone:
            c.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen")
    p.add_argument("url")
    p.add_argument("--method", default=None, help="POST when a body is given, else GET")
    p.add_argument("--body", default=None, help="JSON text; {i} is the call's number")
    p.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=32, help="closed loop: calls in flight")
    p.add_argument("--rate", type=float, default=None, help="open loop: calls offered per s")
    p.add_argument("--first", type=int, default=0, help="the number of the first call")
    p.add_argument("--warmup", type=int, default=64, help="untimed calls first")
    p.add_argument("--out", type=Path, default=None, help="write the answer here, not stdout")
    args = p.parse_args()
    method = args.method or ("POST" if args.body is not None else "GET")
    target = Target(args.url, method, args.body, args.header)
    if args.rate is None:
        run = closed_loop(target, args.calls, args.concurrency, args.first, args.warmup)
    else:
        run = open_loop(target, args.calls, args.rate, args.first, args.warmup)
    timed = uvloop.run(run) if "uvloop" in sys.modules else asyncio.run(run)
    answer = {
        "calls": args.calls,
        "seconds": timed.seconds,
        "latencies_ms": timed.latencies_ms,
        "statuses": {str(k): v for k, v in timed.statuses.items()},
        "cpu_s": timed.cpu_s,
        "series": timed.series,
        "started_at": timed.started_at,
        "loop": "uvloop" if "uvloop" in sys.modules else "asyncio",
    }
    text = json.dumps(answer) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
