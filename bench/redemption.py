"""(d) Redemption over HTTP: redeems/s and latency at a fixed concurrency through a real API
process, against a raw baseline of as many conditional `find_one_and_update` calls (the
cheapest exact "use one if any is left" MongoDB offers) at the same concurrency, on the same
server in the same run; and holds through the same process: a reserve then its confirm per
call (two requests; the latency is the pair's)."""

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

from bench.common import SECRET, TENANT, BenchError, Servers, now, scenario_settings
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings
from schemas.coupons import CouponConfig, DefinitionCreate, UsageLimit
from schemas.rewards import RewardItemCreate

CODE = "BENCHPROMO"
HOLD_CODE = "BENCHHOLD"
READY_S = 60.0


@dataclass
class CallRun:
    name: str
    calls: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def _timed(
    name: str, calls: int, concurrency: int, call: Callable[[int], Awaitable[None]]
) -> CallRun:
    """`calls` calls, at most `concurrency` in flight; each one's latency."""
    latencies: list[float] = []
    pending = iter(range(calls))

    async def lane() -> None:
        for i in pending:
            t = now()
            await call(i)
            latencies.append((now() - t) * 1000)

    started = now()
    await asyncio.gather(*[lane() for _ in range(concurrency)])
    return CallRun(name, calls, now() - started, latencies)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> "subprocess.Popen[bytes]":
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def process_env(settings: Settings) -> dict[str, str]:
    """The environment of a service process the bench starts on the scenario's servers."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "MONGODB_URI": settings.mongodb_uri or "",
        "PHOENIX_MONGODB_DATABASE": settings.mongodb_database,
        "PHOENIX_SECRET_KEY": SECRET,
        "PHOENIX_TOPIC_COUPONS_ISSUED": settings.topic_coupons_issued,
        "PHOENIX_TOPIC_COUPONS_REDEEMED": settings.topic_coupons_redeemed,
        "PHOENIX_TOPIC_COUPONS_EXPIRY": settings.topic_coupons_expiry,
        "PHOENIX_TOPIC_DLQ": settings.topic_dlq,
    }


@contextlib.asynccontextmanager
async def api_process(
    settings: Settings,
    log: Path,
    extra_env: dict[str, str] | None = None,
    module: str = "phoenix_coupons",
    command_log: Path | None = None,
) -> AsyncIterator[tuple[str, int]]:
    """A real API process on the scenario's servers: (its base URL, its pid). `module`: the
    bench's framework reference (bench.reference_app) instead, with the same environment.
    `command_log`: the API's every MongoDB command timed into that file (bench.command_log)."""
    port = _free_port()
    env = {**process_env(settings), "PHOENIX_LOG_LEVEL": "WARNING", **(extra_env or {})}
    argv = [sys.executable, "-m", module, *(["api"] if module == "phoenix_coupons" else [])]
    if command_log is not None and module == "phoenix_coupons":
        argv = [sys.executable, "-m", "bench.command_log", str(command_log), "api"]
    proc = _spawn([*argv, "--port", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_S
        async with httpx.AsyncClient(base_url=base, timeout=1.0) as probe:
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"the API process exited ({proc.returncode}); see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"the API process did not get ready; see {log}")
                await asyncio.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()


async def redemption_runs(
    servers: Servers, calls: int, concurrency: int, log: Path
) -> tuple[CallRun, CallRun, CallRun]:
    """The raw baseline, redeems, and reserve + confirm pairs (as many as redeems)."""
    settings = scenario_settings(servers, "d")
    container = Container(settings)
    await container.start_storage()
    try:
        reward = await container.rewards.create(
            TENANT, RewardItemCreate(name="Points", reward_type="points", payload={"n": 1})
        )
        for code in (CODE, HOLD_CODE):
            await container.definitions.create(
                TENANT,
                DefinitionCreate(
                    name=f"bench {code}",
                    config=CouponConfig(
                        reward_item_id=reward.item_id,
                        code_format="custom",
                        custom_code=code,
                        usage_limit=UsageLimit(limit_type="per_user", max_uses=1),
                    ),
                ),
            )
        _, key = await container.api_keys.create("bench", "coupons:redeem", TENANT)
    finally:
        await container.mongo.close()

    async with api_process(settings, log) as (base, _):
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=base, headers={"X-API-Key": key}, limits=limits, timeout=30
        ) as http:
            url = f"/v1/tenants/{TENANT}/coupons/redeem"

            async def redeem(i: int) -> None:
                answer = await http.post(url, json={"code": CODE, "user_id": f"user-{i}"})
                if answer.status_code != 201:
                    raise BenchError(f"redeem answered {answer.status_code}: {answer.text}")

            api = await _timed("HTTP redeem", calls, concurrency, redeem)
            base = f"/v1/tenants/{TENANT}/coupons"

            async def reserve_and_confirm(i: int) -> None:
                held = await http.post(
                    f"{base}/reserve", json={"code": HOLD_CODE, "user_id": f"user-{i}"}
                )
                if held.status_code != 201:
                    raise BenchError(f"reserve answered {held.status_code}: {held.text}")
                hid = held.json()["reservation_id"]
                made = await http.post(f"{base}/reservations/{hid}/confirm")
                if made.status_code != 201:
                    raise BenchError(f"confirm answered {made.status_code}: {made.text}")

            holds = await _timed("HTTP reserve + confirm", calls, concurrency, reserve_and_confirm)

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(servers.mongodb)
    try:
        col = client[settings.mongodb_database]["bench_raw_uses"]
        await col.insert_many([{"_id": f"user-{i}", "used": 0} for i in range(calls)])

        async def use(i: int) -> None:
            done = await col.find_one_and_update(
                {"_id": f"user-{i}", "used": {"$lt": 1}}, {"$inc": {"used": 1}}
            )
            if done is None:
                raise BenchError("raw baseline: a use was refused")

        raw = await _timed("raw find_one_and_update", calls, concurrency, use)
    finally:
        await client.close()
    return raw, api, holds
