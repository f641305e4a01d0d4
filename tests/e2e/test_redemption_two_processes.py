"""Usage limits stay exact with two API processes serving at once:
`python -m phoenix_coupons api` twice on the session's servers and database, concurrent redeems
split across both. No lock is shared but MongoDB's unique slot index."""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from phoenix_coupons.bootstrap import Container
from phoenix_coupons.devservers import free_port
from phoenix_coupons.settings import Settings
from tests.conftest import TEST_SECRET, KeyFactory
from tests.support import POLL_S, read_events

pytestmark = pytest.mark.slow

Json = dict[str, Any]
READY_DEADLINE_S = 40.0


@dataclass
class ApiProcess:
    port: int
    log_path: Path
    proc: "subprocess.Popen[bytes]"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def wait_ready(self) -> None:
        end = time.monotonic() + READY_DEADLINE_S
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"API on :{self.port} exited with {self.proc.returncode}:\n{self.tail()}"
                    )
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > end:
                    raise AssertionError(f"API on :{self.port} not ready:\n{self.tail()}")
                await asyncio.sleep(POLL_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def api_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    assert settings.kafka_bootstrap_servers and settings.mongodb_uri
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URI": settings.mongodb_uri,
        "PHOENIX_MONGODB_DATABASE": settings.mongodb_database,
        "PHOENIX_SECRET_KEY": TEST_SECRET,
        "PHOENIX_DATA_DIR": str(data_dir),
        "PHOENIX_OUTBOX_POLL_SECONDS": "0.2",
        "PHOENIX_LOG_LEVEL": "WARNING",
    }
    for name, value in settings.model_dump().items():
        if name.startswith("topic_"):
            env[f"PHOENIX_{name.upper()}"] = str(value)
    return env


def start_api(settings: Settings, tmp_path: Path, n: int) -> ApiProcess:
    port = free_port()
    log_path = tmp_path / f"api-{n}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "phoenix_coupons", "api", "--port", str(port)],
            env=api_env(settings, tmp_path / f"data-{n}"),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return ApiProcess(port, log_path, proc)


@pytest.fixture
async def apis(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[list[ApiProcess]]:
    """Two API processes on the session's database; killed at the end, logs shown on failure."""
    started: list[ApiProcess] = []
    try:
        for n in range(2):
            started.append(start_api(settings, tmp_path, n))
        await asyncio.gather(*[p.wait_ready() for p in started])
        yield started
    finally:
        for p in started:
            p.kill()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            for p in started:
                print(f"----- api :{p.port} (exit {p.proc.returncode}) -----\n{p.tail()}")


async def define(
    client: httpx.AsyncClient, admin: Json, tenant: str, reward: Json, code: str, limit: Json
) -> Json:
    body = {
        "name": f"two processes {code}",
        "config": {
            "reward_item_id": reward["item_id"],
            "code_format": "custom",
            "custom_code": code,
            "usage_limit": limit,
        },
    }
    response = await client.post(
        f"/v1/tenants/{tenant}/coupons", json=body, headers=admin["headers"]
    )
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def redeem_split(
    apis: list[ApiProcess],
    tenant: str,
    headers: dict[str, str],
    bodies: list[Json],
    action: str = "redeem",
) -> list[tuple[int, httpx.Response]]:
    """Send every redeem (or reserve: `action`) at once, alternating between the processes:
    (process, response)."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    clients = [
        httpx.AsyncClient(base_url=p.url, timeout=60.0, limits=limits, headers=headers)
        for p in apis
    ]
    try:
        path = f"/v1/tenants/{tenant}/coupons/{action}"
        responses = await asyncio.gather(
            *[clients[i % len(clients)].post(path, json=b) for i, b in enumerate(bodies)]
        )
    finally:
        for c in clients:
            await c.aclose()
    return [(i % len(apis), r) for i, r in enumerate(responses)]


def check_outcome(
    answers: list[tuple[int, httpx.Response]], successes: int, refusal: str
) -> list[Json]:
    statuses = [r.status_code for _, r in answers]
    assert statuses.count(201) == successes, sorted(statuses)
    assert statuses.count(409) == len(answers) - successes, sorted(statuses)
    for _, r in answers:
        if r.status_code == 409:
            assert r.json()["error"] == refusal, r.text
    won = [r.json() for _, r in answers if r.status_code == 201]
    ids = {w.get("redemption_id") or w.get("reservation_id") for w in won}
    assert len(ids) == successes
    assert all(w["status"] in ("redeemed", "held") for w in won)
    return won


async def test_global_limit_is_exact_across_two_api_processes(
    apis: list[ApiProcess],
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    make_key: KeyFactory,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await define(
        client, admin, tenant, reward, "TWO-PROC-10", {"limit_type": "global", "max_uses": 10}
    )
    key = await make_key(scopes="coupons:redeem,coupons:read", tenant=tenant)
    bodies = [{"code": "two-proc-10", "user_id": f"user-{i:03d}"} for i in range(200)]
    answers = await redeem_split(apis, tenant, key["headers"], bodies)
    won = check_outcome(answers, 10, "global_limit_reached")
    assert all(w["reward"] == reward for w in won)

    stored = await container.mongo.redemptions.count_documents(
        {"tenant_id": tenant, "definition_id": defn["id"], "state": "redeemed"}
    )
    assert stored == 10
    verdict = await client.post(
        f"/v1/tenants/{tenant}/coupons/validate",
        json={"code": "TWO-PROC-10", "user_id": "late-user"},
        headers=admin["headers"],
    )
    assert verdict.json()["reason"] == "global_limit_reached"

    # The processes' relays announce each success once (first sighting per redemption).
    seen: set[str] = set()

    def first_sighting(event: Json) -> bool:
        if event.get("tenant_id") != tenant or event["redemption_id"] in seen:
            return False
        seen.add(event["redemption_id"])
        return True

    assert settings.kafka_bootstrap_servers
    events = await read_events(
        settings.kafka_bootstrap_servers, settings.topic_coupons_redeemed, first_sighting, 10
    )
    assert {e["redemption_id"] for e in events} == {w["redemption_id"] for w in won}
    assert {e["event_type"] for e in events} == {"coupon.redeemed"}


async def test_per_user_limit_is_exact_across_two_api_processes(
    apis: list[ApiProcess],
    client: httpx.AsyncClient,
    container: Container,
    make_key: KeyFactory,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await define(
        client, admin, tenant, reward, "TWO-PROC-2", {"limit_type": "per_user", "max_uses": 2}
    )
    key = await make_key(scopes="coupons:redeem", tenant=tenant)
    bodies = [{"code": "TWO-PROC-2", "user_id": "alice"} for _ in range(50)]
    answers = await redeem_split(apis, tenant, key["headers"], bodies)
    won = check_outcome(answers, 2, "per_user_limit_reached")
    assert {w["user_id"] for w in won} == {"alice"}
    stored = await container.mongo.redemptions.count_documents(
        {"tenant_id": tenant, "definition_id": defn["id"], "state": "redeemed"}
    )
    assert stored == 2

    # Another user is not affected; a rollback on one process frees a use on the other.
    other = await redeem_split(
        apis, tenant, key["headers"], [{"code": "TWO-PROC-2", "user_id": "bob"}]
    )
    assert other[0][1].status_code == 201, other[0][1].text
    async with httpx.AsyncClient(base_url=apis[0].url, headers=key["headers"]) as first:
        back = await first.post(
            f"/v1/tenants/{tenant}/coupons/redemptions/{won[0]['redemption_id']}/rollback"
        )
    assert back.status_code == 200, back.text
    again = await redeem_split(
        apis,
        tenant,
        key["headers"],
        [{"code": "TWO-PROC-2", "user_id": "alice"} for _ in range(10)],
    )
    assert [r.status_code for _, r in again].count(201) == 1


async def test_holds_share_the_exact_limit_across_two_api_processes(
    apis: list[ApiProcess],
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    """Reserves split over both processes hold exactly the limit; a release on one frees a
    use that a redeem on either takes, and a confirm keeps its use."""
    await define(
        client, admin, tenant, reward, "TWO-PROC-HOLD", {"limit_type": "global", "max_uses": 5}
    )
    key = await make_key(scopes="coupons:redeem", tenant=tenant)
    bodies = [
        {"code": "TWO-PROC-HOLD", "user_id": f"user-{i:02d}", "ttl_seconds": 600} for i in range(60)
    ]
    held = check_outcome(
        await redeem_split(apis, tenant, key["headers"], bodies, "reserve"),
        5,
        "global_limit_reached",
    )
    base = f"/v1/tenants/{tenant}/coupons/reservations"
    async with (
        httpx.AsyncClient(base_url=apis[0].url, headers=key["headers"]) as first,
        httpx.AsyncClient(base_url=apis[1].url, headers=key["headers"]) as second,
    ):
        for hold in held[:2]:
            gone = await first.post(f"{base}/{hold['reservation_id']}/release")
            assert gone.status_code == 200, gone.text
        for hold in held[2:]:
            made = await second.post(f"{base}/{hold['reservation_id']}/confirm")
            assert made.status_code == 201, made.text
            again = await first.post(f"{base}/{hold['reservation_id']}/confirm")
            assert (again.status_code, again.json()) == (200, made.json())
    more = [{"code": "TWO-PROC-HOLD", "user_id": f"late-{i:02d}"} for i in range(20)]
    check_outcome(await redeem_split(apis, tenant, key["headers"], more), 2, "global_limit_reached")
