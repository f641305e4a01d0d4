"""Two `phoenix-coupons scheduler` processes on the real clock, one SIGKILLed while the
coupons' steps fall due: every reminder and expiry is still published, each by one
scheduler attempt only (the survivor takes the dead one's claims over when their lease
ends, and the outbox sweep drops what the dead one prepared without marking), and the
survivor stops cleanly on SIGTERM."""

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from phoenix_coupons.adapters.coupon_repo import DUE
from phoenix_coupons.adapters.mongo_schema import CODE_HISTORY, OUTBOX
from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.devservers import free_port
from phoenix_coupons.settings import Settings
from tests.conftest import ALL, TEST_SECRET
from tests.e2e.conftest import WorkerProcess
from tests.support import records_to_end, wait_until

pytestmark = pytest.mark.slow

USERS = 120
STEPS = ("PT6S", "PT3S", "expired")


def scheduler_env(s: Settings, port: int, data_dir: Path) -> dict[str, str]:
    assert s.kafka_bootstrap_servers and s.mongodb_uri
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "MONGODB_URI": s.mongodb_uri,
        "PHOENIX_MONGODB_DATABASE": s.mongodb_database,
        "PHOENIX_SECRET_KEY": TEST_SECRET,
        "PHOENIX_TOPIC_COUPONS_ISSUED": s.topic_coupons_issued,
        "PHOENIX_TOPIC_COUPONS_REDEEMED": s.topic_coupons_redeemed,
        "PHOENIX_TOPIC_COUPONS_EXPIRY": s.topic_coupons_expiry,
        "PHOENIX_TOPIC_ACHIEVEMENTS": s.topic_achievements,
        "PHOENIX_TOPIC_STREAKS": s.topic_streaks,
        "PHOENIX_TOPIC_LEADERBOARDS": s.topic_leaderboards,
        "PHOENIX_TOPIC_DLQ": s.topic_dlq,
        "PHOENIX_WORKER_PORT": str(port),
        "PHOENIX_EXPIRY_SWEEP_SECONDS": "0.2",
        "PHOENIX_EXPIRY_BATCH_SIZE": "10",
        "PHOENIX_EXPIRY_LEASE_SECONDS": "1",
        "PHOENIX_SWEEP_SECONDS": "0.5",
        "PHOENIX_SWEEP_GRACE_SECONDS": "3",
        "PHOENIX_OUTBOX_POLL_SECONDS": "0.2",
        "PHOENIX_OUTBOX_LEASE_SECONDS": "3",
        "PHOENIX_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
async def own(settings: Settings) -> AsyncIterator[Container]:
    """The test's own database: schedulers claim due coupons of every tenant."""
    settings = settings.model_copy(update={"mongodb_database": f"e2e_exp_{uuid.uuid4().hex[:8]}"})
    container = Container(settings)
    await container.start()
    yield container
    await container.mongo.client.drop_database(settings.mongodb_database)
    await container.stop()


def start(
    settings: Settings,
    tmp_path: Path,
    name: str,
    command: str = "scheduler",
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """`phoenix-coupons <command>` (a background part alone), `env` on top of the test's."""
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "phoenix_coupons", command],
            env={**scheduler_env(settings, port, tmp_path / "data"), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return WorkerProcess(name, port, log_path, proc)


async def test_each_step_published_by_one_attempt_with_a_scheduler_killed(
    own: Container, tmp_path: Path
) -> None:
    settings = own.settings
    first, second = start(settings, tmp_path, "first"), start(settings, tmp_path, "second")
    try:
        await first.wait_ready()
        await second.wait_ready()
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        _, key = await own.api_keys.create("e2e", ALL, tenant)
        headers = {"X-API-Key": key}
        transport = httpx.ASGITransport(app=create_app(own, manage_lifecycle=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            base = f"/v1/tenants/{tenant}"
            reward = await client.post(
                f"{base}/rewards",
                headers=headers,
                json={"name": "B", "reward_type": "points", "payload": {"amount": 1}},
            )
            config = {
                "reward_item_id": reward.json()["item_id"],
                "code_format": "random",
                "usage_limit": {"limit_type": "per_user", "max_uses": 1},
                # Steps 3 s apart, longer than a claim's lease: a step of a coupon the
                # killed scheduler held is taken over before the next one supersedes it.
                "valid_for": "PT9S",
                "remind_before": ["PT6S", "PT3S"],
            }
            made = await client.post(
                f"{base}/coupons", headers=headers, json={"name": "soon", "config": config}
            )
            users = [f"user-{i:03d}" for i in range(USERS)]
            generated = await client.post(
                f"{base}/coupons/{made.json()['id']}/generate",
                headers=headers,
                json={"user_ids": users},
            )
            assert generated.status_code == 201, generated.text

        history = own.mongo.db[CODE_HISTORY.name]

        # SIGKILL once it has sent a batch of the first step: the others are being worked
        # through by both.
        await wait_until(lambda: "expiry_events_readied" in first.log_text(), deadline_s=20)
        first.kill()

        async def all_done() -> bool:
            coupons = own.mongo.coupons
            scheduled = await coupons.find_one({"tenant_id": tenant, DUE: {"$gte": 0}})
            pending = await own.mongo.db[OUTBOX.name].find_one({"tenant_id": tenant})
            return scheduled is None and pending is None

        await wait_until(all_done, deadline_s=60)
        second.terminate()
        assert await second.wait_exit(20) == 0
        assert "expiry_events_readied" in second.log_text()
    finally:
        for p in (first, second):
            if p.alive:
                p.proc.kill()
            p.proc.wait(10)

    assert settings.kafka_bootstrap_servers
    records = await records_to_end(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_expiry,
        lambda e: e.get("tenant_id") == tenant,
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_id.setdefault(r["event_id"], []).append(r)
    assert len(by_id) == USERS * len(STEPS)
    # A relay killed between Kafka's acknowledgement and its delete sends an entry again (at
    # least once, the same record); a step sent by two scheduler attempts would differ.
    for copies in by_id.values():
        assert all(c == copies[0] for c in copies), copies
    steps = {(e["user_id"], e.get("remind_before") or "expired") for e in records}
    assert steps == {(u, s) for u in [f"user-{i:03d}" for i in range(USERS)] for s in STEPS}
    timeline = [d async for d in history.find({"tenant_id": tenant})]
    assert len(timeline) == USERS * len(STEPS)  # one step each, by one attempt
