"""In-process workers of a test's own: own consumer group and inbound topics (so they read
only the test's records), each with its own Container, started and stopped by the test."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from consumers.loop import Worker
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings
from tests.support import wait_until

STOP_S = 15.0


def group_settings(settings: Settings, **update: Any) -> Settings:
    """The session's settings with a consumer group and inbound topics of the test's own."""
    run = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "consumer_group": f"group-{run}",
            "topic_achievements": f"test.g{run}.achievements",
            "topic_streaks": f"test.g{run}.streaks",
            "topic_leaderboards": f"test.g{run}.leaderboards",
            # Heartbeats every 2 s: group changes show within seconds.
            "kafka_session_timeout_ms": 6000,
            **update,
        }
    )


async def create_inbound(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t, settings.topic_partitions, 1)
                for t in (
                    settings.topic_achievements,
                    settings.topic_streaks,
                    settings.topic_leaderboards,
                )
            ]
        )
    finally:
        await admin.close()


async def group_members(settings: Settings) -> list[dict[str, Any]]:
    """The group's members as the coordinator lists them (DescribeGroups)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([settings.consumer_group])
    finally:
        await admin.close()
    (group,) = response.to_object()["groups"]
    members: list[dict[str, Any]] = group["members"]
    return members


@dataclass
class Running:
    worker: Worker
    task: "asyncio.Task[None]"
    container: Container


@dataclass
class WorkerPool:
    started: list[Running] = field(default_factory=list)

    async def start(self, settings: Settings, wait_ready: bool = True) -> Running:
        container = Container(settings)
        worker = container.worker()
        task = asyncio.create_task(worker.run())
        running = Running(worker, task, container)
        self.started.append(running)
        if wait_ready:
            await wait_until(lambda: worker.ready or task.done())
            if task.done():
                task.result()  # raises what stopped it
        return running

    async def stop(self, running: Running) -> None:
        running.worker.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(running.task), STOP_S)
        await running.container.mongo.close()

    async def stop_all(self) -> None:
        for running in self.started:
            if not running.task.done():
                running.worker.request_stop()
        for running in self.started:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(running.task, STOP_S)
            with contextlib.suppress(Exception):
                await running.container.mongo.close()


@contextlib.asynccontextmanager
async def worker_pool() -> AsyncIterator[WorkerPool]:
    pool = WorkerPool()
    try:
        yield pool
    finally:
        await pool.stop_all()
