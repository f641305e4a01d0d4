"""The issuance budget and `metadata` of bulk generation over HTTP, on the real wire servers:
the 409 of a call that does not fit (nothing generated), `issued`/`remaining` on `GET` only
with a limit, `metadata` stored on each coupon and carried by `coupon.issued`; and the
budget's storage: the exhaustion claim the outbox sweep checks, and the recount that sets a
budget back to the coupons stored after a crash cut a reservation from its insert."""

from datetime import timedelta
from typing import Any

import httpx

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.issuance_budget import MongoIssuanceBudgets
from phoenix_coupons.adapters.migrations import migrate
from phoenix_coupons.adapters.migrations.m0104_counts import RECOUNTS
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.mongo_schema import COUNTERS, OUTBOX
from phoenix_coupons.adapters.outbox import MongoOutbox, sweep_outbox
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.domain.events import definition_exhausted
from phoenix_coupons.domain.outbox import exhausted
from phoenix_coupons.services.ports import Reserved
from phoenix_coupons.settings import Settings
from schemas.metadata import METADATA_MAX_BYTES
from tests.integration.test_generation import create_definition
from tests.support import read_events

Json = dict[str, Any]


async def test_a_call_past_the_limit_is_refused_whole_and_get_tells_what_is_left(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    plain = await create_definition(client, tenant, admin, reward)
    shown = (
        await client.get(f"/v1/tenants/{tenant}/coupons/{plain['id']}", headers=admin["headers"])
    ).json()
    assert "issued" not in shown and "remaining" not in shown, "the spec's body, unchanged"

    defn = await create_definition(client, tenant, admin, reward, issuance_limit={"max_coupons": 5})
    url = f"/v1/tenants/{tenant}/coupons/{defn['id']}"
    first = await client.post(
        f"{url}/generate", json={"user_ids": ["a", "b", "c"]}, headers=admin["headers"]
    )
    assert first.status_code == 201, first.text
    over = await client.post(
        f"{url}/generate", json={"user_ids": ["d", "e", "f"]}, headers=admin["headers"]
    )
    assert over.status_code == 409, over.text
    body = over.json()
    assert body["error"] == "issuance_limit_reached"
    assert body["conflicts"] == [
        {"field": "user_ids", "requested": 3, "remaining": 2, "max_coupons": 5}
    ]
    assert await container.mongo.coupons.count_documents({"tenant_id": tenant}) == 3
    shown = (await client.get(url, headers=admin["headers"])).json()
    assert (shown["issued"], shown["remaining"]) == (3, 2)
    fits = await client.post(
        f"{url}/generate", json={"user_ids": ["d", "e"]}, headers=admin["headers"]
    )
    assert fits.status_code == 201, fits.text
    shown = (await client.get(url, headers=admin["headers"])).json()
    assert (shown["issued"], shown["remaining"]) == (5, 0)
    bad = await client.put(
        url, json={"config": {"issuance_limit": {"max_coupons": 0}}}, headers=admin["headers"]
    )
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "config.issuance_limit.max_coupons"


async def test_bulk_metadata_is_stored_on_each_coupon_and_announced(
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    url = f"/v1/tenants/{tenant}/coupons/{defn['id']}/generate"
    meta = {"campaign": "spring", "wave": 2, "tags": ["vip"]}
    answer = await client.post(
        url, json={"user_ids": ["u-1", "u-2"], "metadata": meta}, headers=admin["headers"]
    )
    assert answer.status_code == 201, answer.text
    assert "metadata" not in answer.json(), "the spec's response, unchanged"
    stored = [d async for d in container.mongo.coupons.find({"tenant_id": tenant})]
    assert [d["metadata"] for d in stored] == [meta, meta]
    assert settings.kafka_bootstrap_servers
    events = await read_events(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant,
        count=2,
    )
    assert [e["metadata"] for e in events] == [meta, meta]

    too_big = {"note": "x" * METADATA_MAX_BYTES}
    refused = await client.post(
        url, json={"user_ids": ["u-3"], "metadata": too_big}, headers=admin["headers"]
    )
    assert refused.status_code == 422
    assert refused.json()["details"][0]["field"] == "metadata"
    not_object = await client.post(
        url, json={"user_ids": ["u-3"], "metadata": ["a"]}, headers=admin["headers"]
    )
    assert not_object.status_code == 422


async def test_the_sweep_readies_a_claimed_exhaustion_and_drops_an_unclaimed_one(
    own_mongo: Mongo,
) -> None:
    budgets, box = MongoIssuanceBudgets(own_mongo), MongoOutbox(own_mongo)
    now = utc_now()
    assert await budgets.reserve("t-a", "d-1", 2, 2, partial=False) == Reserved(2, 2, None)
    assert (await budgets.reserve("t-a", "d-1", 1, 2, partial=True)).granted == 0
    claimed = exhausted(definition_exhausted("t-a", "d-1", 2, now), "exhausted:2:one")
    assert await box.prepare_new(claimed)
    assert not await box.prepare_new(exhausted(definition_exhausted("t-a", "d-1", 2, now), "x"))
    assert await budgets.mark_exhausted("t-a", "d-1", 2, "exhausted:2:one")
    assert not await budgets.mark_exhausted("t-a", "d-1", 2, "exhausted:2:two"), "once"
    assert (await budgets.reserve("t-a", "d-1", 1, 2, partial=True)).exhausted == 2
    # Another definition's writer crashed before its claim: the sweep drops its entry.
    await budgets.reserve("t-a", "d-2", 1, 1, partial=True)
    unclaimed = exhausted(definition_exhausted("t-a", "d-2", 1, now), "exhausted:1:gone")
    assert await box.prepare_new(unclaimed)
    # Both crashed before readying: past the grace, the claimed one is readied.
    settled = await sweep_outbox(own_mongo, now + timedelta(minutes=5), timedelta(minutes=2))
    assert settled == 2
    left = await own_mongo.db[OUTBOX.name].find({}, {"state": 1}).to_list()
    assert left == [{"_id": claimed.id, "state": "ready"}]


async def test_recount_sets_a_budget_back_to_the_coupons_stored(own_mongo: Mongo) -> None:
    budgets = MongoIssuanceBudgets(own_mongo)
    await budgets.reserve("t-a", "d-1", 3, 10, partial=False)  # a crash: none stored
    doc = {"tenant_id": "t-a", "definition_id": "d-1", "source": "bulk"}
    await own_mongo.coupons.insert_one({"_id": "c-1", **doc})
    await own_mongo.coupons.insert_one({"_id": "c-2", **doc, "source": "definition"})
    report = await migrate(own_mongo.db, [], recount=True)  # `migrate --recount`
    assert {r.name for r in RECOUNTS} <= set(report.recounted)
    assert await budgets.issued("t-a", "d-1") == 1, "the shared code is not issued"
    counter = await own_mongo.db[COUNTERS.name].find_one({"_id": counter_keys.issued("t-a", "d-1")})
    assert counter is not None and counter["n"] == 1
