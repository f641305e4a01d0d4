"""The issuance budget exact with the worker and two bulk calls racing, on the embedded
Kafka and MongoDB through the service's own paths (the worker of the container, the HTTP
API): never more coupons than `max_coupons`, the over-budget events counted, committed and
not dead-lettered, `GET` of the definition telling issued and remaining, and one
`coupon.definition_exhausted` on the issued topic."""

import asyncio
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.mongo_schema import COUNTERS, OUTBOX
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.settings import Settings
from tests.integration.test_worker import (  # noqa: F401  (fixtures)
    create_definition,
    event,
    kafka_admin,
    produce_event,
    producer,
    read_all,
    uid,
    until_cached,
    until_processed,
    worker,
)
from tests.support import read_events, wait_until

LIMIT = 40
EVENTS = 45  # the worker alone asks for more than the limit: it fills what bulk leaves
PER_BULK = 15
OVER_BUDGET = "phoenix_worker_issuance_budget_refused_total"
ACHIEVED = {"event_type": "achievement_completed"}


def refused_so_far() -> float:
    return REGISTRY.get_sample_value(OVER_BUDGET, ACHIEVED) or 0.0


async def test_the_worker_and_two_bulk_calls_never_pass_the_limit(
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    worker: Any,  # noqa: F811  (the fixture imported above)
    producer: AIOKafkaProducer,  # noqa: F811
    kafka_admin: AIOKafkaAdminClient,  # noqa: F811
) -> None:
    achievement = uid("ach")
    created = await create_definition(
        client,
        admin,
        tenant,
        reward,
        "achievement_completed",
        {"achievement_id": achievement},
        "CAP",
    )
    url = f"/v1/tenants/{tenant}/coupons/{created['id']}"
    limited = await client.put(
        url, json={"config": {"issuance_limit": {"max_coupons": LIMIT}}}, headers=admin["headers"]
    )
    assert limited.status_code == 200, limited.text
    events = [
        event("achievement_completed", tenant, f"w-{i:02d}", {"achievement_id": achievement})
        for i in range(EVENTS)
    ]
    await until_cached(container, events[0], created)
    before = refused_so_far()

    async def bulk(side: str) -> httpx.Response:
        users = [f"{side}-{i:02d}" for i in range(PER_BULK)]
        return await client.post(
            f"{url}/generate", json={"user_ids": users}, headers=admin["headers"]
        )

    async def stream() -> list[Any]:
        return [await produce_event(producer, settings, e) for e in events]

    metas, left, right = await asyncio.gather(stream(), bulk("left"), bulk("right"))
    await until_processed(kafka_admin, settings.consumer_group, *metas)

    generated = 0
    for answer in (left, right):
        if answer.status_code == 201:
            generated += answer.json()["generated"]
        else:
            assert answer.status_code == 409, answer.text
            body = answer.json()
            assert body["error"] == "issuance_limit_reached"
            (conflict,) = body["conflicts"]
            assert conflict["requested"] == PER_BULK and conflict["remaining"] < PER_BULK
    stored = [
        d
        async for d in container.mongo.coupons.find(
            {"tenant_id": tenant}, {"code_norm": 1, "source": 1}
        )
    ]
    by_worker = sum(1 for d in stored if d["source"] == "event")
    assert len(stored) == LIMIT, "exactly the limit: never more, and the worker filled the rest"
    assert len({d["code_norm"] for d in stored}) == LIMIT
    assert by_worker + generated == LIMIT
    assert refused_so_far() - before == EVENTS - by_worker

    shown = (await client.get(url, headers=admin["headers"])).json()
    assert (shown["issued"], shown["remaining"]) == (LIMIT, 0)
    counter = await container.mongo.db[COUNTERS.name].find_one(
        {"_id": counter_keys.issued(tenant, created["id"])}
    )
    assert counter is not None and counter["n"] == LIMIT

    # The over-budget records were committed (until_processed) and not dead-lettered.
    assert settings.kafka_bootstrap_servers
    dead = await read_all(settings.kafka_bootstrap_servers, settings.topic_dlq)
    assert not [r for r in dead if tenant.encode() in r.value]

    # Every coupon announced, and the exhaustion once, keyed by the definition.
    async def outbox_empty() -> bool:
        return await container.mongo.db[OUTBOX.name].find_one({"tenant_id": tenant}) is None

    await wait_until(outbox_empty, deadline_s=30)
    issued = await read_events(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant and e["event_type"] == "coupon.issued",
        count=LIMIT,
    )
    assert len(issued) == LIMIT
    on_topic = [
        r
        for r in await read_all(settings.kafka_bootstrap_servers, settings.topic_coupons_issued)
        if b"coupon.definition_exhausted" in r.value and created["id"].encode() in r.value
    ]
    assert len(on_topic) == 1, "announced once"
    assert on_topic[0].key == created["id"].encode()
    headers = {k: v.decode() for k, v in on_topic[0].headers}
    assert headers["event_id"] == event_id(
        "coupon.definition_exhausted", f"{created['id']}:{LIMIT}"
    )

    # Events past the limit keep getting nothing, and announce nothing again.
    late = event("achievement_completed", tenant, "late", {"achievement_id": achievement})
    meta = await produce_event(producer, settings, late)
    await until_processed(kafka_admin, settings.consumer_group, meta)
    assert await container.mongo.coupons.count_documents({"tenant_id": tenant}) == LIMIT
    assert refused_so_far() - before == EVENTS - by_worker + 1
