"""A stalled MongoDB bounds every request: with the server stopped
(SIGSTOP), `/readyz` answers 503 within its ping timeout, a redeem and a read answer 503
`service_unavailable` with `Retry-After` within the operation timeout, and the redeem retried
with its Idempotency-Key once the server is back applies once.

The stalled server is an embedded MongoDB of this module's own (the session's one is shared
by every other test)."""

import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.errors import PyMongoError

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.mongo import unavailable
from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.devservers import EmbeddedServers
from phoenix_coupons.domain.scopes import ALL_SCOPES
from phoenix_coupons.settings import Settings
from tests.integration.test_coupon_ids import coupon
from tests.support import wait_until

pytestmark = pytest.mark.slow

TIMEOUT_MS = 1500  # the operation timeout of this API
PING_TIMEOUT_MS = 1000
READYZ_WITHIN_S = 3.0
SLACK_S = 1.5  # event loop and connection set-up on a busy machine


class Stoppable:
    """The embedded MongoDB process, stopped and resumed by signal."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        os.kill(self.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def own_mongodb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Stoppable]]:
    root: Path = tmp_path_factory.mktemp("stalled-mongodb")
    with EmbeddedServers(root, start_kafka=False) as servers:
        pid = int((root / "mongodb.pid").read_text().strip())
        yield servers.env["MONGODB_URI"], Stoppable(pid)


@pytest.fixture
async def api(
    settings: Settings, own_mongodb: tuple[str, Stoppable]
) -> AsyncIterator[tuple[httpx.AsyncClient, Container]]:
    uri, _ = own_mongodb
    own = settings.model_copy(
        update={
            "mongodb_uri": uri,
            "mongodb_database": f"stall_{uuid.uuid4().hex[:8]}",
            "mongodb_timeout_ms": TIMEOUT_MS,
            "mongodb_connect_timeout_ms": PING_TIMEOUT_MS,
            "mongodb_ping_timeout_ms": PING_TIMEOUT_MS,
        }
    )
    container = Container(own)
    # Indexes only: the outbox relay (and Kafka) play no part in answering these requests.
    await container.start_storage()
    app = create_app(container, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http, container
    finally:
        await container.stop()


async def _coupon_to_redeem(http: httpx.AsyncClient, container: Container) -> tuple[str, Any]:
    """A tenant, its key's headers and a shared code each user may redeem once."""
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    _, key = await container.api_keys.create("stall", ",".join(sorted(ALL_SCOPES)), tenant)
    headers = {"X-API-Key": key}
    reward = await http.post(
        f"/v1/tenants/{tenant}/rewards",
        headers=headers,
        json={"name": "Points", "reward_type": "points", "payload": {"amount": 5}},
    )
    assert reward.status_code == 201, reward.text
    definition = await http.post(
        f"/v1/tenants/{tenant}/coupons",
        headers=headers,
        json={
            "name": "Stall",
            "config": {
                "reward_item_id": reward.json()["item_id"],
                "code_format": "custom",
                "custom_code": "STALLED1",
                "usage_limit": {"limit_type": "per_user", "max_uses": 1},
            },
        },
    )
    assert definition.status_code == 201, definition.text
    return tenant, {"headers": headers, "definition": definition.json()["id"]}


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "service_unavailable"
    assert {"message", "details"} <= response.json().keys()
    assert int(response.headers["Retry-After"]) > 0


async def test_requests_answer_503_in_time_and_a_keyed_redeem_applies_once(
    api: tuple[httpx.AsyncClient, Container], own_mongodb: tuple[str, Stoppable]
) -> None:
    http, container = api
    _, server = own_mongodb
    tenant, made = await _coupon_to_redeem(http, container)
    headers = made["headers"]
    assert (await http.get("/readyz")).status_code == 200
    redeem_url = f"/v1/tenants/{tenant}/coupons/redeem"
    body = {"code": "STALLED1", "user_id": "u-1"}
    keyed = {**headers, "Idempotency-Key": f"stall-{uuid.uuid4().hex}"}

    with server.stopped():
        started = time.monotonic()
        ready = await http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert time.monotonic() - started < READYZ_WITHIN_S

        started = time.monotonic()
        _unavailable(await http.post(redeem_url, json=body, headers=keyed))
        assert time.monotonic() - started < TIMEOUT_MS / 1000 + SLACK_S

        started = time.monotonic()
        read = await http.get(f"/v1/tenants/{tenant}/coupons/{made['definition']}", headers=headers)
        _unavailable(read)
        assert time.monotonic() - started < TIMEOUT_MS / 1000 + SLACK_S

    async def served() -> httpx.Response | None:
        again = await http.post(redeem_url, json=body, headers=keyed)
        return None if again.status_code == 503 else again

    again = await wait_until(served)
    assert again.status_code in (200, 201), again.text
    stored = await container.mongo.redemptions.count_documents({"tenant_id": tenant})
    assert stored == 1
    replay = await http.post(redeem_url, json=body, headers=keyed)
    assert replay.status_code == 200
    assert replay.json()["redemption_id"] == again.json()["redemption_id"]
    assert (await http.get("/readyz")).status_code == 200


async def test_a_worker_write_on_a_stalled_server_fails_within_the_timeout(
    api: tuple[httpx.AsyncClient, Container], own_mongodb: tuple[str, Stoppable]
) -> None:
    """The worker's store of a batch raises (and the batch is retried) instead of holding the
    consumer past its poll interval."""
    _, container = api
    _, server = own_mongodb
    repo = MongoCouponRepo(container.mongo)
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    batch = [coupon(tenant, f"evt:stall:{i}", f"STALL{i:04d}") for i in range(50)]
    with server.stopped():
        started = time.monotonic()
        with pytest.raises(PyMongoError) as caught:
            await repo.insert_unordered(batch)
        assert time.monotonic() - started < TIMEOUT_MS / 1000 + SLACK_S
    assert unavailable(caught.value)
    # The stalled insert may still land when the server resumes: the retry finds those.
    await repo.insert_unordered(batch)
    assert await container.mongo.coupons.count_documents({"tenant_id": tenant}) == len(batch)
