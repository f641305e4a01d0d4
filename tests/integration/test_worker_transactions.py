"""Exactly-once mode on the embedded Kafka: one transactional producer per
assigned input partition, `{group}.{topic}.{partition}`, initialised at assignment before the
partition's committed offset is read, so that a former owner of the partition (stalled with
a transaction open) is fenced and its transaction aborted; a partition whose producer is
fenced drops its batch instead of committing it, and the worker carries on."""

import json
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from consumers.transactions import transactional_id
from phoenix_coupons.adapters.kafka import make_producer
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.settings import Settings
from tests.e2e.conftest import read_to_end
from tests.integration.worker_groups import create_inbound, group_settings, worker_pool
from tests.support import wait_until


def achievement(tenant: str, user: str, achievement_id: str) -> dict[str, Any]:
    return {
        "event_id": f"evt-{uuid.uuid4().hex[:10]}",
        "event_type": "achievement_completed",
        "tenant_id": tenant,
        "user_id": user,
        "occurred_at": "2025-01-15T10:00:00Z",
        "data": {"achievement_id": achievement_id},
    }


async def committed(settings: Settings, tp: TopicPartition) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(settings.consumer_group, partitions=[tp])
    finally:
        await admin.close()
    meta = found.get(tp)
    return None if meta is None or meta.offset < 0 else int(meta.offset)


async def stale_transaction(
    settings: Settings, tp: TopicPartition, tenant: str, offset: int
) -> AIOKafkaProducer:
    """A former owner of `tp`, stalled with a transaction open: a `coupon.issued` record and
    the partition's offset, neither committed."""
    assert settings.kafka_bootstrap_servers
    producer = make_producer(
        settings.kafka_bootstrap_servers,
        transactional_id=transactional_id(settings.consumer_group, tp),
    )
    await producer.start()
    await producer.begin_transaction()
    record = {"coupon_id": "stale", "tenant_id": tenant, "event_id": "stale"}
    await producer.send_and_wait(
        settings.topic_coupons_issued,
        json.dumps(record).encode(),
        key=b"stale",
        headers=[("tenant_id", tenant.encode())],
    )
    await producer.send_offsets_to_transaction({tp: offset}, settings.consumer_group)
    return producer


async def test_assignment_initialises_a_producer_per_partition_which_fences_a_stalled_owner(
    settings: Settings, container: Container, tenant: str
) -> None:
    own = group_settings(settings, exactly_once=True)
    assert own.kafka_bootstrap_servers
    await create_inbound(own)  # and the session's outbound topics exist (`container`)
    tp = TopicPartition(own.topic_achievements, 0)
    stale = await stale_transaction(own, tp, tenant, offset=1000)
    try:
        async with worker_pool() as pool:
            running = await pool.start(own)
            worker = running.worker
            expected = {
                TopicPartition(t, p): f"{own.consumer_group}.{t}.{p}"
                for t in worker.topics
                for p in range(own.topic_partitions)
            }
            await wait_until(lambda: worker.transactional_ids() == expected, deadline_s=30)
            # The stalled owner's transaction was aborted by the initialisation: it can no
            # longer commit, and its offset and record never become visible.
            try:
                await stale.commit_transaction()
            except KafkaError as exc:
                fenced: KafkaError | None = exc
            else:
                fenced = None
            assert fenced is not None, "the stalled owner's transaction committed"
            assert await committed(own, tp) in (None, 0)
    finally:
        await stale.stop()
    seen = await announced_committed(own, tenant)
    assert seen == []


async def test_a_fenced_partition_drops_its_batch_and_is_taken_again_if_still_assigned(
    settings: Settings,
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
) -> None:
    """Another producer initialises a partition's transactional id (as a new owner would):
    the worker's transaction on it fails, its batch is not committed, the other partitions
    go on. No revocation follows, so the partition is still this worker's: after two
    heartbeats it initialises it again and processes the batch, announced once."""
    own = group_settings(settings, exactly_once=True)
    assert own.kafka_bootstrap_servers
    await create_inbound(own)
    body = {
        "name": "eos",
        "config": {
            "reward_item_id": reward["item_id"],
            "code_format": "random",
            "code_prefix": "EOS",
            "usage_limit": {"limit_type": "per_user", "max_uses": 1},
            "auto_generate": {
                "enabled": True,
                "trigger": "achievement_completed",
                "trigger_config": {"achievement_id": "eos"},
            },
        },
    }
    created = await client.post(
        f"/v1/tenants/{tenant}/coupons", json=body, headers=admin["headers"]
    )
    assert created.status_code == 201, created.text
    tps = [TopicPartition(own.topic_achievements, p) for p in range(own.topic_partitions)]
    fenced_tp, other_tp = tps[0], tps[1]
    async with worker_pool() as pool:
        running = await pool.start(own)
        worker = running.worker
        await wait_until(lambda: len(worker.transactional_ids()) == 3 * own.topic_partitions)
        intruder = make_producer(
            own.kafka_bootstrap_servers,
            transactional_id=transactional_id(own.consumer_group, fenced_tp),
        )
        await intruder.start()  # fences the worker's producer of that partition
        try:
            producer = make_producer(own.kafka_bootstrap_servers)
            await producer.start()
            try:
                first = achievement(tenant, "user-fenced", "eos")
                second = achievement(tenant, "user-other", "eos")
                await producer.send_and_wait(
                    fenced_tp.topic, json.dumps(first).encode(), partition=fenced_tp.partition
                )
                await producer.send_and_wait(
                    other_tp.topic, json.dumps(second).encode(), partition=other_tp.partition
                )
            finally:
                await producer.stop()

            # The other partition's batch commits; the fenced one's does not, at first.
            await wait_until(lambda: _committed_at_least(own, other_tp, 1), deadline_s=30)
            assert not running.task.done()
            # Taken again (no revocation came): its batch is redelivered and committed.
            await wait_until(lambda: _committed_at_least(own, fenced_tp, 1), deadline_s=30)
            assert fenced_tp in worker.transactional_ids()
        finally:
            await intruder.stop()
        assert not running.task.done()
    seen = await announced_committed(own, tenant)
    assert sorted(e["user_id"] for e in seen) == ["user-fenced", "user-other"]


async def announced_committed(settings: Settings, tenant: str) -> list[dict[str, Any]]:
    """The tenant's `coupon.issued` records a read_committed consumer sees."""
    assert settings.kafka_bootstrap_servers
    return await read_to_end(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_issued,
        settings.topic_partitions,
        tenant,
        isolation_level="read_committed",
    )


async def _committed_at_least(settings: Settings, tp: TopicPartition, offset: int) -> bool:
    found = await committed(settings, tp)
    return found is not None and found >= offset
