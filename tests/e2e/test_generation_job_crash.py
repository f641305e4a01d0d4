"""Two `phoenix-coupons jobs` processes sharing the queue; the one running a generation job
(of user rows, or a count job of unassigned codes) SIGKILLed mid-way, the other resuming it
once the lease ends: every row's coupon exactly once (no duplicate, none missing), each
announced by `coupon.issued`, the job's counts exact, its completion announced once."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from phoenix_coupons.adapters.job_repo import MongoJobStore
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.jobs import Row, issue_key
from phoenix_coupons.services.job_input import JobInput
from phoenix_coupons.settings import Settings
from schemas.coupons import DefinitionCreate
from schemas.rewards import RewardItemCreate
from tests.e2e.conftest import WorkerProcess
from tests.e2e.test_expiry_scheduler_crash import start as start_alone
from tests.support import records_to_end, wait_until

pytestmark = pytest.mark.slow

ROWS, CHUNK = 4000, 100
RUNNER_ENV = {
    "PHOENIX_EXPIRY_SCHEDULER": "false",
    "PHOENIX_JOB_LEASE_SECONDS": "2",
    "PHOENIX_JOB_POLL_SECONDS": "0.2",
}


@pytest.fixture
async def own(settings: Settings) -> AsyncIterator[Container]:
    """The test's own database (runners take the jobs of every tenant), small chunks."""
    settings = settings.model_copy(
        update={"mongodb_database": f"e2e_job_{uuid.uuid4().hex[:8]}", "job_chunk_size": CHUNK}
    )
    container = Container(settings)
    await container.start()
    yield container
    await container.mongo.client.drop_database(settings.mongodb_database)
    await container.stop()


def start(settings: Settings, tmp_path: Path, name: str) -> WorkerProcess:
    return start_alone(settings, tmp_path, name, "jobs", RUNNER_ENV)


@pytest.mark.parametrize("count_job", [False, True], ids=["user-rows", "count"])
async def test_a_job_killed_mid_way_is_resumed_exactly_by_another_runner(
    own: Container, tmp_path: Path, count_job: bool
) -> None:
    """`count_job`: a job of ROWS unassigned codes, its lines made from the job by each
    runner (the resumed one included) rather than read from stored rows."""
    settings = own.settings
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    reward = await own.rewards.create(
        tenant, RewardItemCreate(name="B", reward_type="points", payload={"amount": 1})
    )
    defn = await own.definitions.create(
        tenant,
        DefinitionCreate.model_validate(
            {
                "name": "cards",
                "config": {
                    "reward_item_id": reward.item_id,
                    "code_format": "random",
                    "usage_limit": {"limit_type": "per_user", "max_uses": 1},
                },
            }
        ),
    )
    if count_job:
        rows = [Row(i + 1, None) for i in range(ROWS)]
        job, _ = await own.jobs.submit(defn, JobInput([], "e2e-crash-count", count=ROWS))
    else:
        rows = [Row(i + 1, f"user-{i:05d}") for i in range(ROWS)]
        job, _ = await own.jobs.submit(defn, JobInput(rows, "e2e-crash"))
    store = MongoJobStore(own.mongo)

    async def progressed(at_least: int) -> bool:
        current = await store.get(tenant, job.id)
        return current is not None and current.next_chunk >= at_least

    # Two runners share the queue from the start: one takes the job, the other waits.
    runners = [start(settings, tmp_path, "first"), start(settings, tmp_path, "second")]
    try:
        await wait_until(lambda: progressed(3), deadline_s=60, step_s=0.02)
        holders = [p for p in runners if "generation_job_claimed" in p.log_text()]
        assert len(holders) == 1, "one runner holds the job"
        (holder,) = holders
        (other,) = [p for p in runners if p is not holder]
        holder.kill()
        holder.proc.wait(10)
        killed_at = await store.get(tenant, job.id)
        assert killed_at is not None and killed_at.status == "running"
        assert killed_at.next_chunk < killed_at.chunks, "killed mid-way"

        async def over() -> bool:
            current = await store.get(tenant, job.id)
            return current is not None and current.done

        await wait_until(over, deadline_s=120)
        assert "resumed=True" in other.log_text() or '"resumed": true' in other.log_text()
        other.terminate()
        assert await other.wait_exit(20) == 0
    finally:
        for p in runners:
            if p.alive:
                p.proc.kill()
            p.proc.wait(10)

    done = await store.get(tenant, job.id)
    assert done is not None
    assert (done.status, done.generated, done.failed) == ("succeeded", ROWS, 0)
    ids = [issue_keys.coupon_id(issue_key(job.id, r.line)) for r in rows]
    stored = [d async for d in own.mongo.coupons.find({"definition_id": defn.id})]
    assert sorted(d["_id"] for d in stored) == sorted(ids), "each row's coupon, once"
    assert len({d["code_norm"] for d in stored}) == ROWS
    if count_job:
        assert {(d["kind"], d["user_id"]) for d in stored} == {("unassigned", None)}
    else:
        assert sorted(d["user_id"] for d in stored) == [r.user_id for r in rows]

    assert settings.kafka_bootstrap_servers
    records: list[dict[str, object]] = []

    async def all_sent() -> bool:
        nonlocal records
        records = await records_to_end(
            settings.kafka_bootstrap_servers or "",
            settings.topic_coupons_issued,
            lambda e: e.get("tenant_id") == tenant,
        )
        issued = {r["event_id"] for r in records if r["event_type"] == "coupon.issued"}
        return len(issued) == ROWS and any(
            r["event_type"] == "coupon.generation_job.completed" for r in records
        )

    await wait_until(all_sent, deadline_s=60)
    by_code = {r["code"] for r in records if r["event_type"] == "coupon.issued"}
    assert by_code == {d["code"] for d in stored}, "the codes announced are the codes stored"
    completed = {
        r["event_id"] for r in records if r["event_type"] == "coupon.generation_job.completed"
    }
    assert len(completed) == 1
