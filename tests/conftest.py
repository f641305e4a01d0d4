"""Shared fixtures. Kafka and MongoDB are real wire servers, chosen by tests/servers.py:
the URLs from the environment when set (`make test` sets them), else embedded servers or
containers started once for the session."""

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from phoenix_coupons.adapters.aiokafka_compat import install_fetch_pause
from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.devservers import FETCH_BACKOFF_ENV
from phoenix_coupons.domain.scopes import ALL_SCOPES
from phoenix_coupons.settings import Settings
from tests import servers
from tests.tiers import TIERS, summary_lines, tier_of

TEST_SECRET = "test-secret-key-not-for-production"
ALL = ",".join(sorted(ALL_SCOPES))
# The embedded MongoDB serves one request at a time: on a shared 2-core machine, 200
# concurrent redeems or a 10,000-document read take longer than the service's 10 s operation
# timeout. This process and the workers and APIs the tests start get a longer one (tests of
# the timeout set their own: tests/e2e/test_mongodb_stall.py).
os.environ.setdefault("PHOENIX_MONGODB_TIMEOUT_MS", "120000")


def pytest_configure(config: pytest.Config) -> None:
    for tier in TIERS:
        config.addinivalue_line("markers", f"{tier}: a test of tests/{tier}/ (set by folder)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test's tier is its folder: `pytest -m unit` runs the tests that need no server."""
    for item in items:
        tier = tier_of(item.nodeid)
        if tier is not None:
            item.add_marker(tier)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Iterator[None]:
    """The count per tier, after pytest's own summaries and before its closing line (which
    CI reads, so it stays last)."""
    yield
    lines = summary_lines(terminalreporter.stats)
    if lines:
        terminalreporter.write_sep("-", "tiers")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The URLs of the servers chosen by tests/servers.py (`PHOENIX_TEST_SERVERS`), started
    for the session unless given."""
    try:
        selection = servers.select(os.environ)
        servers.check(selection)
    except servers.ServerSelectionError as exc:  # never another kind of server instead
        pytest.exit(str(exc), returncode=2)
    with servers.started(selection, tmp_path_factory.mktemp("servers"), os.environ) as env:
        yield env


@pytest.fixture(scope="session")
def settings(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Own database and topics per session, so runs against a shared server never mix."""
    run = uuid.uuid4().hex[:8]
    # The test's own consumers pause after empty fetches too, as the service's do.
    backoff = int(server_env.get(FETCH_BACKOFF_ENV) or 0)
    install_fetch_pause(backoff)
    return Settings(
        kafka_empty_fetch_backoff_ms=backoff,
        kafka_bootstrap_servers=server_env["KAFKA_BOOTSTRAP_SERVERS"],
        mongodb_uri=server_env["MONGODB_URI"],
        mongodb_database=f"phoenix_test_{run}",
        data_dir=tmp_path_factory.mktemp("data"),
        secret_key=TEST_SECRET,
        topic_coupons_issued=f"test.{run}.coupons.issued",
        topic_coupons_redeemed=f"test.{run}.coupons.redeemed",
        topic_coupons_expiry=f"test.{run}.coupons.expiry",
        topic_achievements=f"test.{run}.achievements",
        topic_streaks=f"test.{run}.streaks",
        topic_leaderboards=f"test.{run}.leaderboards",
        topic_dlq=f"test.{run}.dlq",
        topic_partitions=3,
        outbox_poll_seconds=0.2,
    )


@pytest.fixture(scope="session")
async def container(settings: Settings) -> AsyncIterator[Container]:
    c = Container(settings)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture(scope="session")
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(container, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        yield c


@pytest.fixture
def tenant() -> str:
    """A fresh tenant per test: tests share the database and never see each other's data."""
    return f"t-{uuid.uuid4().hex[:12]}"


KeyFactory = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture(scope="session")
def make_key(container: Container) -> KeyFactory:
    """`await make_key(scopes="coupons:read", tenant="t1")` -> {id, key, headers}."""

    async def make(
        scopes: str = ALL, tenant: str | None = None, name: str = "test"
    ) -> dict[str, Any]:
        key, plaintext = await container.api_keys.create(name, scopes, tenant)
        return {"id": key.id, "key": plaintext, "headers": {"X-API-Key": plaintext}}

    return make


@pytest.fixture
async def admin(make_key: KeyFactory, tenant: str) -> dict[str, Any]:
    """A key with every scope, bound to this test's tenant."""
    return await make_key(tenant=tenant)


@pytest.fixture
async def reward(client: httpx.AsyncClient, admin: dict[str, Any], tenant: str) -> dict[str, Any]:
    response = await client.post(
        f"/v1/tenants/{tenant}/rewards",
        headers=admin["headers"],
        json={"name": "100 Bonus Points", "reward_type": "points", "payload": {"amount": 100}},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
