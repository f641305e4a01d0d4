"""The worker's consumer group membership, on the embedded Kafka.

Without `PHOENIX_WORKER_ID` a worker joins as a dynamic member: two on one host (or `run` and
`worker`) share the partitions. With it, the membership is static (a restarted worker takes
its partitions back at once), and a second process with the same id fences the first, which
stops with an error naming the variable instead of taking its membership back for ever."""

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from consumers.membership import WorkerFenced
from phoenix_coupons.settings import Settings
from tests.integration.worker_groups import (
    create_inbound,
    group_members,
    group_settings,
    worker_pool,
)
from tests.support import wait_until

# aiokafka heartbeats every session timeout / 3: 2 s here.
HEARTBEAT_S = 2.0


def test_the_worker_id_is_unset_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHOENIX_WORKER_ID", raising=False)
    assert Settings().worker_id is None
    monkeypatch.setenv("PHOENIX_WORKER_ID", "worker-7")
    assert Settings().worker_id == "worker-7"


async def test_two_workers_without_a_worker_id_share_the_partitions_without_fighting(
    settings: Settings,
) -> None:
    own = group_settings(settings)
    assert own.worker_id is None
    await create_inbound(own)
    async with worker_pool() as pool:
        first = await pool.start(own)
        second = await pool.start(own)

        async def both_members() -> list[str] | None:
            members = await group_members(own)
            return sorted(m["member_id"] for m in members) if len(members) == 2 else None

        ids = await wait_until(both_members, deadline_s=30, step_s=0.2)
        # Static members with one id would replace each other at every heartbeat; dynamic
        # members keep their member ids. Watched for three heartbeats (an absence: no
        # condition to wait for).
        end = time.monotonic() + 3 * HEARTBEAT_S
        while time.monotonic() < end:
            assert await both_members() == ids
            await asyncio.sleep(0.5)
        for running in (first, second):
            assert running.worker.ready
            assert not running.task.done()
        clients = {m["client_id"] for m in await group_members(own)}
        assert len(clients) == 2, clients


async def test_a_second_process_with_the_same_worker_id_fences_the_first_which_stops(
    settings: Settings,
) -> None:
    own = group_settings(settings, worker_id="same-id")
    await create_inbound(own)
    async with worker_pool() as pool:
        first = await pool.start(own)
        with capture_logs() as logs:
            second = await pool.start(own)
            # The first finds its membership taken by another process with its id: it stops,
            # and does not take the membership back.
            with pytest.raises(WorkerFenced) as fenced:
                await asyncio.wait_for(first.task, 30)
        assert "PHOENIX_WORKER_ID" in str(fenced.value)
        assert "same-id" in str(fenced.value)
        errors = [e for e in logs if e["event"] == "worker_fenced"]
        assert errors and errors[0]["log_level"] == "error"
        assert "PHOENIX_WORKER_ID" in errors[0]["error"]
        assert not first.worker.ready

        # The second keeps the membership (the group settles with it alone) and stays ready.
        async def alone() -> bool:
            members = await group_members(own)
            return len(members) == 1 and second.worker.ready

        await wait_until(alone, deadline_s=30, step_s=0.2)
        (member,) = await group_members(own)
        end = time.monotonic() + 3 * HEARTBEAT_S
        while time.monotonic() < end:
            assert [m["member_id"] for m in await group_members(own)] == [member["member_id"]]
            await asyncio.sleep(0.5)
        assert not second.task.done()
