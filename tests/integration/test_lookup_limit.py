"""Code guessing is bounded: failed code look-ups (`code_not_found`) of one
API key in one tenant are counted in MongoDB; past the limit (30 a minute by default) every
look-up of that key in that tenant answers 429 `too_many_failed_lookups` with Retry-After until
the window passes. validate, redeem and the code state count alike; two API instances share
the count."""

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from phoenix_coupons.adapters.api_key_repo import MongoApiKeyRepo
from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.domain.errors import TooManyFailedLookups
from phoenix_coupons.settings import Settings
from tests.conftest import KeyFactory

Json = dict[str, Any]
LIMIT = 30  # PHOENIX_CODE_LOOKUP_FAILURE_LIMIT's default: 30/minute


@dataclass
class Caller:
    """One API key's calls in one tenant, through one app instance."""

    client: httpx.AsyncClient
    tenant: str
    headers: dict[str, str]

    async def validate(self, code: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/tenants/{self.tenant}/coupons/validate",
            json={"code": code, "user_id": "guesser"},
            headers=self.headers,
        )

    async def redeem(self, code: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/tenants/{self.tenant}/coupons/redeem",
            json={"code": code, "user_id": "guesser"},
            headers=self.headers,
        )

    async def code_state(self, code: str) -> httpx.Response:
        return await self.client.get(
            f"/v1/tenants/{self.tenant}/codes/{code}", headers=self.headers
        )

    async def history(self, code: str) -> httpx.Response:
        return await self.client.get(
            f"/v1/tenants/{self.tenant}/codes/{code}/history", headers=self.headers
        )

    async def fail(self, times: int, how: str = "validate") -> None:
        """`times` look-ups of codes that do not exist, each answered as not found."""
        for i in range(times):
            response = await getattr(self, how)(f"GUESS{i:04d}")
            if how == "validate":
                assert response.status_code == 200, response.text
                assert response.json()["reason"] == "code_not_found"
            else:
                assert response.status_code == 404, response.text
                assert response.json()["error"] == "code_not_found"

    def at(self, client: httpx.AsyncClient) -> "Caller":
        return Caller(client, self.tenant, self.headers)

    def key(self, headers: dict[str, str]) -> "Caller":
        return Caller(self.client, self.tenant, headers)

    def tenant_(self, tenant: str) -> "Caller":
        return Caller(self.client, tenant, self.headers)


def too_many(response: httpx.Response, window_s: int = 60) -> int:
    """A 429 with the one error body and Retry-After; returns the seconds to wait."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "too_many_failed_lookups", body
    assert body["message"] and body["details"] == []
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window_s
    return retry_after


async def shared_code(client: httpx.AsyncClient, tenant: str, headers: dict[str, str]) -> str:
    """A redeemable shared custom code in the tenant."""
    reward = await client.post(
        f"/v1/tenants/{tenant}/rewards",
        json={"name": "Points", "reward_type": "points", "payload": {"amount": 1}},
        headers=headers,
    )
    assert reward.status_code == 201, reward.text
    defn = await client.post(
        f"/v1/tenants/{tenant}/coupons",
        json={
            "name": "real",
            "config": {
                "reward_item_id": reward.json()["item_id"],
                "code_format": "custom",
                "custom_code": "REALCODE",
                "usage_limit": {"limit_type": "unlimited"},
            },
        },
        headers=headers,
    )
    assert defn.status_code == 201, defn.text
    return "REALCODE"


@pytest.fixture
async def guesser(client: httpx.AsyncClient, admin: Json, tenant: str) -> Caller:
    return Caller(client, tenant, admin["headers"])


def refused_total() -> float:
    return REGISTRY.get_sample_value("phoenix_code_lookups_refused_total") or 0.0


async def test_the_31st_failed_lookup_in_a_minute_answers_429_with_retry_after(
    guesser: Caller,
) -> None:
    code = await shared_code(guesser.client, guesser.tenant, guesser.headers)
    await guesser.fail(LIMIT)
    before = refused_total()
    too_many(await guesser.validate("GUESS9999"))
    # Every look-up of this key in this tenant now, successful ones too: else guessing goes on.
    too_many(await guesser.validate(code))
    too_many(await guesser.redeem(code))
    too_many(await guesser.code_state(code))
    too_many(await guesser.history(code))
    assert refused_total() == before + 5


async def test_another_key_or_another_tenant_is_unaffected(
    guesser: Caller, make_key: KeyFactory, tenant: str
) -> None:
    unbound = await make_key(tenant=None)
    caller = guesser.key(unbound["headers"])
    await caller.fail(LIMIT)
    too_many(await caller.validate("GUESS9999"))
    # The same key in another tenant, and another key in this tenant, look up as usual.
    await caller.tenant_(f"{tenant}-other").fail(1)
    await guesser.fail(1)


async def test_validate_redeem_code_state_and_history_all_count(guesser: Caller) -> None:
    await guesser.fail(10, "validate")
    await guesser.fail(10, "redeem")
    await guesser.fail(5, "code_state")
    await guesser.fail(5, "history")
    reason = {"reason": "too_many_failed_lookups"}
    before = REGISTRY.get_sample_value("phoenix_redemption_refusals_total", reason) or 0
    too_many(await guesser.redeem("GUESS9999"))
    assert REGISTRY.get_sample_value("phoenix_redemption_refusals_total", reason) == before + 1


class SettableClock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def app_instance(
    settings: Settings, clock: Callable[[], datetime] = utc_now
) -> AsyncIterator[httpx.AsyncClient]:
    """Another API instance on the session's database: its own MongoDB client and services."""
    other = Container(settings, clock=clock)
    app = create_app(other, manage_lifecycle=False)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as c:
            yield c
    finally:
        await other.stop()


async def test_two_api_instances_share_the_count(guesser: Caller, settings: Settings) -> None:
    async with app_instance(settings) as other:
        there = guesser.at(other)
        for _ in range(LIMIT // 2):
            await guesser.fail(1)
            await there.fail(1)
        too_many(await there.validate("GUESS9999"))
        too_many(await guesser.validate("GUESS9999"))


async def test_the_window_passing_frees_the_key(guesser: Caller, settings: Settings) -> None:
    clock = SettableClock()
    async with app_instance(settings, clock) as instance:
        caller = guesser.at(instance)
        await caller.fail(LIMIT)
        wait = too_many(await caller.validate("GUESS9999"))
        clock.now += timedelta(seconds=wait - 1)
        assert too_many(await caller.validate("GUESS9999")) == 1
        clock.now += timedelta(seconds=1)
        # A new window: look-ups answer again, and failures count from zero.
        await caller.fail(LIMIT)
        too_many(await caller.validate("GUESS9999"))


async def test_concurrent_failures_are_each_counted_once(
    container: Container, make_key: KeyFactory, tenant: str
) -> None:
    """The first hits of a window race to create its document: none is lost. The block is
    written on the key at the limit, not before."""
    key = await make_key(tenant=tenant)
    limiter = container.lookup_limiter

    async def blocks() -> Mapping[str, int]:
        found = await MongoApiKeyRepo(container.mongo).get(key["id"])
        assert found is not None
        return found.lookup_blocks

    await asyncio.gather(*[limiter.failed(key["id"], tenant) for _ in range(LIMIT - 1)])
    assert limiter.refusal(await blocks(), tenant) is None  # 29 of 30: still allowed
    await limiter.failed(key["id"], tenant)
    assert isinstance(limiter.refusal(await blocks(), tenant), TooManyFailedLookups)
    assert limiter.refusal(await blocks(), f"{tenant}.other") is None  # per tenant
