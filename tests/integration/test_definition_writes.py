"""Definitions are written without multi-document transactions: claim the shared code,
write its coupon, write the definition, confirm. Refusals leave nothing behind; concurrent
creates of one code leave one definition and no 500; a crash between the writes leaves a
claim the sweep settles against the definition."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.claims_sweep import sweep_claims
from phoenix_coupons.adapters.code_registry import claim_id
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.definition_repo import MongoDefinitionRepo, to_doc
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.coupon_factory import CouponFactory
from schemas.coupons import CouponConfig, CouponDefinition
from tests.integration.test_redemption import Tenant

Json = dict[str, Any]
LATER = datetime.now(UTC) + timedelta(hours=1)  # every claim is past the grace period
GRACE = timedelta(minutes=1)


@pytest.fixture
def api(client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str) -> Tenant:
    return Tenant(client, tenant, admin["headers"], reward)


def body(api: Tenant, code: str | None) -> Json:
    config: Json = {
        "reward_item_id": api.reward["item_id"],
        "usage_limit": {"limit_type": "unlimited"},
    }
    if code is None:
        config.update(code_format="random")
    else:
        config.update(code_format="custom", custom_code=code)
    return {"name": "concurrent", "config": config}


async def test_twenty_concurrent_creates_of_one_code_leave_one_definition(
    api: Tenant, container: Container
) -> None:
    code = f"SAME{uuid.uuid4().hex[:6]}".upper()
    answers = await asyncio.gather(
        *[
            api.client.post(f"{api.base}/coupons", json=body(api, code), headers=api.headers)
            for _ in range(20)
        ]
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] + [409] * 19, [r.text for r in answers if r.status_code >= 500]
    assert {r.json()["error"] for r in answers if r.status_code == 409} == {"custom_code_taken"}
    stored = [d async for d in container.mongo.definitions.find({"tenant_id": api.id})]
    assert len(stored) == 1
    shared = [d async for d in container.mongo.coupons.find({"tenant_id": api.id})]
    assert [c["definition_id"] for c in shared] == [stored[0]["_id"]]
    claims = [d async for d in container.mongo.db["codes"].find({"_id": {"$regex": f"^{api.id}:"}})]
    assert [(c["_id"], "unconfirmed" in c) for c in claims] == [(claim_id(api.id, code), False)]
    listed = await api.client.get(f"{api.base}/coupons", headers=api.headers)
    assert listed.json()["total"] == 1


async def test_twenty_concurrent_creates_of_distinct_codes_all_succeed(
    api: Tenant, container: Container
) -> None:
    """Before: each create ran in a multi-document transaction, and the embedded server
    failed 17 of 20 with a 500 ("no such savepoint") yet stored their definitions."""
    codes = [f"D{i}{uuid.uuid4().hex[:6]}".upper() for i in range(20)]
    answers = await asyncio.gather(
        *[
            api.client.post(f"{api.base}/coupons", json=body(api, code), headers=api.headers)
            for code in codes
        ]
    )
    assert [r.status_code for r in answers] == [201] * 20, [r.text for r in answers]
    assert await MongoCouponRepo(container.mongo).taken(api.id, codes) == set(codes)
    listed = await api.client.get(f"{api.base}/coupons", headers=api.headers)
    assert listed.json()["total"] == 20


async def test_twenty_concurrent_creates_and_generations_answer_no_500(api: Tenant) -> None:
    defn = await api.define()
    creates = [
        api.client.post(f"{api.base}/coupons", json=body(api, None), headers=api.headers)
        for _ in range(20)
    ]
    generations = [
        api.client.post(
            f"{api.base}/coupons/{defn['id']}/generate",
            json={"user_ids": [f"u-{i}-{j}" for j in range(5)]},
            headers=api.headers,
        )
        for i in range(20)
    ]
    answers = await asyncio.gather(*creates, *generations)
    assert [r.status_code for r in answers] == [201] * 40, [
        r.text for r in answers if r.status_code >= 300
    ]
    codes = await api.client.get(f"{api.base}/coupons/{defn['id']}/codes", headers=api.headers)
    assert codes.json()["total"] == 100
    listed = await api.client.get(f"{api.base}/coupons", headers=api.headers)
    assert listed.json()["total"] == 21


async def test_changing_the_shared_code_frees_the_old_one(api: Tenant) -> None:
    old, new = f"OLD{uuid.uuid4().hex[:6]}".upper(), f"NEW{uuid.uuid4().hex[:6]}".upper()
    first = await api.define(old)
    changed = await api.client.put(
        f"{api.base}/coupons/{first['id']}",
        json={"config": {"custom_code": new}},
        headers=api.headers,
    )
    assert changed.status_code == 200, changed.text
    assert (await api.client.get(f"{api.base}/codes/{new}", headers=api.headers)).status_code == 200
    assert (await api.client.get(f"{api.base}/codes/{old}", headers=api.headers)).status_code == 404
    await api.define(old)  # free again
    taken = await api.client.put(
        f"{api.base}/coupons/{first['id']}",
        json={"config": {"custom_code": old}},
        headers=api.headers,
    )
    assert taken.status_code == 409 and taken.json()["error"] == "custom_code_taken"
    assert (await api.client.get(f"{api.base}/codes/{new}", headers=api.headers)).status_code == 200


def definition(tenant: str, code: str) -> CouponDefinition:
    now = datetime.now(UTC)
    config = {
        "reward_item_id": "reward-1",
        "code_format": "custom",
        "custom_code": code,
        "usage_limit": {"limit_type": "unlimited"},
    }
    return CouponDefinition(
        id=str(uuid.uuid4()),
        tenant_id=tenant,
        name="crash",
        description=None,
        config=CouponConfig.model_validate(config),
        status="active",
        created_at=now,
        updated_at=now,
    )


async def test_the_sweep_settles_creates_a_crash_cut_short(
    container: Container, tenant: str
) -> None:
    coupons = MongoCouponRepo(container.mongo)
    lost, landed = definition(tenant, "LOST0001"), definition(tenant, "LANDED01")
    for defn in (lost, landed):
        shared = CouponFactory.of(defn, "definition").coupon(
            issue_keys.shared(defn.id), defn.config.custom_code or "", defn.updated_at
        )
        await coupons.insert_unconfirmed([shared])  # crash after the coupon...
    await container.mongo.definitions.insert_one(to_doc(landed))  # ...or after the definition
    await sweep(container)
    assert await coupons.taken(tenant, ["LOST0001", "LANDED01"]) == {"LANDED01"}
    assert await coupons.by_code(tenant, "LOST0001") is None
    found = await coupons.by_code(tenant, "LANDED01")
    assert found is not None and found.definition_id == landed.id
    codes = container.mongo.db["codes"]
    assert "unconfirmed" not in (
        await codes.find_one({"_id": claim_id(tenant, "LANDED01")}) or {"unconfirmed": 1}
    )


async def test_the_sweep_finishes_a_code_swap_a_crash_cut_short(
    container: Container, tenant: str
) -> None:
    coupons = MongoCouponRepo(container.mongo)
    repo = MongoDefinitionRepo(container.mongo, coupons)
    defn = definition(tenant, "BEFORE01")
    shared = CouponFactory.of(defn, "definition").coupon(
        issue_keys.shared(defn.id), "BEFORE01", defn.updated_at
    )
    await repo.insert(defn, shared)
    changed = defn.model_copy(
        update={"config": defn.config.model_copy(update={"custom_code": "AFTER001"})}
    )
    new = CouponFactory.of(changed, "definition").coupon(
        issue_keys.shared(defn.id), "AFTER001", changed.updated_at
    )
    await coupons.codes.claim([new])  # replace: the claim, then the definition, then a crash
    await container.mongo.definitions.update_one(
        {"_id": defn.id}, {"$set": {"config.custom_code": "AFTER001"}}
    )
    await sweep(container)
    assert await coupons.taken(tenant, ["BEFORE01", "AFTER001"]) == {"AFTER001"}
    found = await coupons.by_code(tenant, "AFTER001")
    assert found is not None and found.id == shared.id
    counters = MongoCounters(container.mongo)
    assert await counters.get(counter_keys.codes(tenant, defn.id)) == 1


async def sweep(container: Container) -> None:
    """Until no stale claim is left (other tests' too: the database is shared)."""
    while await sweep_claims(container.mongo, LATER, GRACE):
        pass
