"""Bulk generation, `POST /v1/tenants/{tenant_id}/coupons/{definition_id}/generate`, against
the real wire servers: codes, validation, conflicts, idempotency, crash resume and the
`coupon.issued` event of every coupon."""

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.mongo_schema import OUTBOX
from phoenix_coupons.adapters.nx27017_compat import aware, epoch_ms
from phoenix_coupons.adapters.outbox import MongoOutbox
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import codes, issue_keys, outbox
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.idempotency import request_hash
from phoenix_coupons.settings import Settings
from schemas.coupons import GenerateRequest
from tests.support import wait_until

Json = dict[str, Any]
UPPER = set(codes.UPPER_ALPHABET)
MIXED = set(codes.alphabet(True))
LOOK_ALIKES = set("0O1IL")


# --- helpers ---------------------------------------------------------------------------------


async def create_definition(
    client: httpx.AsyncClient, tenant: str, admin: Json, reward: Json, **config: Any
) -> Json:
    body = {
        "name": "Bulk test",
        "config": {
            "reward_item_id": reward["item_id"],
            "code_format": "random",
            "usage_limit": {"limit_type": "per_user", "max_uses": 1},
            **config,
        },
    }
    response = await client.post(
        f"/v1/tenants/{tenant}/coupons", json=body, headers=admin["headers"]
    )
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def generate(
    client: httpx.AsyncClient,
    tenant: str,
    definition_id: str,
    admin: Json,
    body: Json,
    idempotency_key: str | None = None,
) -> httpx.Response:
    headers = dict(admin["headers"])
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await client.post(
        f"/v1/tenants/{tenant}/coupons/{definition_id}/generate", json=body, headers=headers
    )


def users(count: int, tag: str = "u") -> list[str]:
    return [f"{tag}_{i:05d}" for i in range(count)]


async def issued(container: Container, tenant: str) -> list[Json]:
    """The tenant's issued coupons as stored (shared definition codes left out)."""
    cursor = container.mongo.coupons.find({"tenant_id": tenant, "kind": "issued"})
    return [d async for d in cursor]


async def count(container: Container, query: Json) -> int:
    """Matching coupons, by a find: the embedded server answers count_documents with a full
    scan, ~20 times slower than an indexed find, and polling that would slow the relay."""
    return len(await container.mongo.coupons.find(query, {"_id": 1}).to_list())


async def count_issued(container: Container, tenant: str) -> int:
    return await count(container, {"tenant_id": tenant, "kind": "issued"})


async def all_announced(container: Container, tenant: str) -> bool:
    pending = await container.mongo.db[OUTBOX.name].find_one({"tenant_id": tenant}, {"_id": 1})
    return pending is None


async def tenant_events(settings: Settings, tenant: str) -> list[Json]:
    """Every event of `tenant` on the issued topic, read up to the topic's current end.
    Call it once the relay marked the tenant's coupons announced (they are then in the log)."""
    assert settings.kafka_bootstrap_servers
    topic = settings.topic_coupons_issued
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Json] = []
    try:
        await consumer.topics()  # loads metadata
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        assert tps, f"topic {topic} has no partitions"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                        continue
                    event = json.loads(record.value)
                    if event.get("tenant_id") != tenant:
                        continue
                    event["_key"] = record.key.decode() if record.key else None
                    event["_headers"] = {k: v.decode() for k, v in record.headers}
                    found.append(event)
    finally:
        await consumer.stop()
    return found


async def settled_events(container: Container, settings: Settings, tenant: str) -> list[Json]:
    await wait_until(lambda: all_announced(container, tenant))
    return await tenant_events(settings, tenant)


def fields_of(response: httpx.Response) -> list[str]:
    return [d["field"] for d in response.json()["details"]]


# --- random format ---------------------------------------------------------------------------


async def test_random_codes_follow_the_definition_and_are_stored(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward, code_prefix="WELCOME")
    user_ids = users(50)
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": user_ids})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"generated", "coupons"}
    assert body["generated"] == 50
    assert [c["user_id"] for c in body["coupons"]] == user_ids
    for coupon in body["coupons"]:
        assert set(coupon) == {"user_id", "code"}
        code = coupon["code"]
        assert code.startswith("WELCOME") and len(code) == len("WELCOME") + 8
        assert set(code[len("WELCOME") :]) <= UPPER
    assert len({c["code"] for c in body["coupons"]}) == 50
    stored = {d["user_id"]: d for d in await issued(container, tenant)}
    assert {u: d["code"] for u, d in stored.items()} == {
        c["user_id"]: c["code"] for c in body["coupons"]
    }
    assert all(d["definition_id"] == defn["id"] for d in stored.values())
    assert all(d["code_norm"] == d["code"] for d in stored.values())


async def test_code_length_is_honoured_without_prefix(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward, code_length=12)
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": users(20)})
    assert response.status_code == 201, response.text
    for coupon in response.json()["coupons"]:
        assert re.fullmatch(r"[A-Z2-9]{12}", coupon["code"]), coupon
        assert not set(coupon["code"]) & LOOK_ALIKES


async def test_case_sensitive_codes_may_mix_case_and_stay_distinct_ignoring_case(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(
        client, tenant, admin, reward, code_prefix="Vip-", case_sensitive=True
    )
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": users(200)})
    assert response.status_code == 201, response.text
    got = [c["code"] for c in response.json()["coupons"]]
    assert all(c.startswith("Vip-") and len(c) == 12 for c in got)
    random_parts = [c[4:] for c in got]
    assert all(set(p) <= MIXED for p in random_parts)
    assert not set("".join(random_parts)) & set("0O1ILilo")
    assert any(p != p.upper() for p in random_parts), "case-sensitive codes use lower case too"
    assert len({c.upper() for c in got}) == 200
    stored = await issued(container, tenant)
    assert sorted(d["code"] for d in stored) == sorted(got)
    assert all(d["code_norm"] == d["code"].upper() for d in stored)


async def test_one_user_is_enough(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": ["solo"]})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["generated"] == 1
    assert [c["user_id"] for c in body["coupons"]] == ["solo"]
    assert re.fullmatch(r"[A-Z2-9]{8}", body["coupons"][0]["code"])


async def test_ten_thousand_users_of_the_longest_ids_in_one_call(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    """10,000 user ids of 255 characters: a 2.6 MB body, past the 1 MiB limit of other
    requests, within generation's own cap."""
    defn = await create_definition(client, tenant, admin, reward, code_prefix="BIG")
    user_ids = [u.ljust(255, "x") for u in users(10_000)]
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": user_ids})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["generated"] == 10_000
    assert [c["user_id"] for c in body["coupons"]] == user_ids
    assert len({c["code"] for c in body["coupons"]}) == 10_000
    assert await count_issued(container, tenant) == 10_000


@pytest.mark.parametrize("count", [0, 10_001])
async def test_user_count_out_of_range_is_refused(
    client: httpx.AsyncClient,
    container: Container,
    admin: Json,
    reward: Json,
    tenant: str,
    count: int,
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": users(count)})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert fields_of(response) == ["user_ids"]
    assert await count_issued(container, tenant) == 0


async def test_missing_user_ids_is_refused(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    response = await generate(client, tenant, defn["id"], admin, {})
    assert response.status_code == 422, response.text
    assert fields_of(response) == ["user_ids"]


async def test_repeated_user_id_is_refused(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    body = {"user_ids": ["a", "b", "a"]}
    response = await generate(client, tenant, defn["id"], admin, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert error["details"] == [{"field": "user_ids.2", "reason": "repeats user id 'a'"}]
    assert await count_issued(container, tenant) == 0


async def test_custom_codes_on_a_random_definition_are_refused(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    body = {"user_ids": ["a"], "custom_codes": ["MYCODE"]}
    response = await generate(client, tenant, defn["id"], admin, body)
    assert response.status_code == 422, response.text
    assert fields_of(response) == ["custom_codes"]
    assert await count_issued(container, tenant) == 0


async def test_paused_definition_does_not_generate(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    paused = await client.put(
        f"/v1/tenants/{tenant}/coupons/{defn['id']}/status",
        json={"status": "paused"},
        headers=admin["headers"],
    )
    assert paused.status_code == 200, paused.text
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": ["a"]})
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "definition_paused"
    assert defn["id"] in response.json()["message"]
    assert await count_issued(container, tenant) == 0

    resumed = await client.put(
        f"/v1/tenants/{tenant}/coupons/{defn['id']}/status",
        json={"status": "active"},
        headers=admin["headers"],
    )
    assert resumed.status_code == 200, resumed.text
    again = await generate(client, tenant, defn["id"], admin, {"user_ids": ["a"]})
    assert again.status_code == 201, again.text


async def test_archived_definition_does_not_generate(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    archived = await client.delete(
        f"/v1/tenants/{tenant}/coupons/{defn['id']}", headers=admin["headers"]
    )
    assert archived.status_code == 204, archived.text
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": ["a"]})
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "definition_archived"
    assert await count_issued(container, tenant) == 0


async def test_unknown_definition_is_not_found(
    client: httpx.AsyncClient, admin: Json, tenant: str
) -> None:
    missing = str(uuid.uuid4())
    response = await generate(client, tenant, missing, admin, {"user_ids": ["a"]})
    assert response.status_code == 404, response.text
    error = response.json()
    assert error["error"] == "definition_not_found"
    assert missing in error["message"]


async def test_definition_of_another_tenant_is_not_found(
    client: httpx.AsyncClient, make_key: Any, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    other = f"t-{uuid.uuid4().hex[:12]}"
    other_admin = await make_key(tenant=other)
    response = await generate(client, other, defn["id"], other_admin, {"user_ids": ["a"]})
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "definition_not_found"


# --- custom format ---------------------------------------------------------------------------


async def custom_definition(
    client: httpx.AsyncClient, tenant: str, admin: Json, reward: Json, **config: Any
) -> Json:
    return await create_definition(client, tenant, admin, reward, code_format="custom", **config)


async def test_custom_codes_are_issued_one_to_one(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await custom_definition(client, tenant, admin, reward)
    body = {"user_ids": ["user_123", "user_456"], "custom_codes": ["VIP-USER-123", "vip_user_456"]}
    response = await generate(client, tenant, defn["id"], admin, body)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "generated": 2,
        "coupons": [
            {"user_id": "user_123", "code": "VIP-USER-123"},
            {"user_id": "user_456", "code": "vip_user_456"},
        ],
    }
    stored = {d["user_id"]: d for d in await issued(container, tenant)}
    assert stored["user_123"]["code"] == "VIP-USER-123"
    assert stored["user_456"]["code"] == "vip_user_456"
    assert stored["user_456"]["code_norm"] == "VIP_USER_456"


@pytest.mark.parametrize(
    "custom_codes",
    [None, ["ONLY-ONE"], ["ONE", "TWO", "THREE"]],
    ids=["missing", "too-few", "too-many"],
)
async def test_custom_codes_must_match_user_ids(
    client: httpx.AsyncClient,
    container: Container,
    admin: Json,
    reward: Json,
    tenant: str,
    custom_codes: list[str] | None,
) -> None:
    defn = await custom_definition(client, tenant, admin, reward)
    body: Json = {"user_ids": ["a", "b"]}
    if custom_codes is not None:
        body["custom_codes"] = custom_codes
    response = await generate(client, tenant, defn["id"], admin, body)
    assert response.status_code == 422, response.text
    assert fields_of(response) == ["custom_codes"]
    assert await count_issued(container, tenant) == 0


async def test_invalid_custom_codes_are_named_by_position(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await custom_definition(client, tenant, admin, reward)
    body = {
        "user_ids": ["a", "b", "c", "d"],
        "custom_codes": ["GOOD-1", "BAD CODE", "", "X" * 256],
    }
    response = await generate(client, tenant, defn["id"], admin, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert fields_of(response) == ["custom_codes.1", "custom_codes.2", "custom_codes.3"]
    assert await count_issued(container, tenant) == 0


async def test_custom_codes_conflicting_generate_nothing(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await custom_definition(client, tenant, admin, reward, custom_code="SUMMER2024")
    first = await generate(
        client, tenant, defn["id"], admin, {"user_ids": ["u1"], "custom_codes": ["TAKEN-1"]}
    )
    assert first.status_code == 201, first.text
    before = await count(container, {"tenant_id": tenant})

    body = {
        "user_ids": ["u2", "u3", "u4", "u5", "u6"],
        # taken ignoring case, the definition's own shared code, fresh, and a repeat
        "custom_codes": ["taken-1", "summer2024", "FRESH-1", "Dup-X", "DUP-x"],
    }
    response = await generate(client, tenant, defn["id"], admin, body)
    assert response.status_code == 409, response.text
    error = response.json()
    assert error["error"] == "custom_codes_conflict"
    conflicts = {c["code"].upper(): c for c in error["conflicts"]}
    assert set(conflicts) == {"TAKEN-1", "SUMMER2024", "DUP-X"}
    assert conflicts["TAKEN-1"]["user_id"] == "u2"
    assert conflicts["SUMMER2024"]["user_id"] == "u3"
    assert conflicts["TAKEN-1"]["reason"] == "already used in this tenant"
    assert conflicts["DUP-X"]["reason"] == "repeated in the request"
    assert await count(container, {"tenant_id": tenant}) == before
    assert await count(container, {"tenant_id": tenant, "code_norm": "FRESH-1"}) == 0


async def test_custom_code_used_by_another_definition_of_the_tenant_conflicts(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    shared = await custom_definition(client, tenant, admin, reward, custom_code="WINTER")
    defn = await custom_definition(client, tenant, admin, reward)
    response = await generate(
        client, tenant, defn["id"], admin, {"user_ids": ["u1"], "custom_codes": ["Winter"]}
    )
    assert response.status_code == 409, response.text
    assert [c["code"] for c in response.json()["conflicts"]] == ["Winter"]
    assert await count_issued(container, tenant) == 0
    assert shared["config"]["custom_code"] == "WINTER"


async def test_custom_codes_are_unique_per_tenant_only(
    client: httpx.AsyncClient, make_key: Any, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await custom_definition(client, tenant, admin, reward)
    body = {"user_ids": ["u1"], "custom_codes": ["SAME-CODE"]}
    assert (await generate(client, tenant, defn["id"], admin, body)).status_code == 201

    other = f"t-{uuid.uuid4().hex[:12]}"
    other_admin = await make_key(tenant=other)
    other_reward = await client.post(
        f"/v1/tenants/{other}/rewards",
        headers=other_admin["headers"],
        json={"name": "Points", "reward_type": "points", "payload": {"amount": 1}},
    )
    assert other_reward.status_code == 201, other_reward.text
    other_defn = await custom_definition(client, other, other_admin, other_reward.json())
    response = await generate(client, other, other_defn["id"], other_admin, body)
    assert response.status_code == 201, response.text
    assert response.json()["coupons"] == [{"user_id": "u1", "code": "SAME-CODE"}]


# --- Idempotency-Key -------------------------------------------------------------------------


async def test_same_key_and_body_replays_the_first_response(
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    body = {"user_ids": users(30)}
    first = await generate(client, tenant, defn["id"], admin, body, idempotency_key="k-1")
    assert first.status_code == 201, first.text
    events_before = await settled_events(container, settings, tenant)
    assert len(events_before) == 30

    again = await generate(client, tenant, defn["id"], admin, body, idempotency_key="k-1")
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert await count_issued(container, tenant) == 30
    events_after = await settled_events(container, settings, tenant)
    assert sorted(e["event_id"] for e in events_after) == sorted(
        e["event_id"] for e in events_before
    )


async def test_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    first = await generate(client, tenant, defn["id"], admin, {"user_ids": ["a"]}, "k-2")
    assert first.status_code == 201, first.text
    other = await generate(client, tenant, defn["id"], admin, {"user_ids": ["b"]}, "k-2")
    assert other.status_code == 422, other.text
    error = other.json()
    assert error["error"] == "idempotency_key_reused"
    assert fields_of(other) == ["Idempotency-Key"]
    assert await count_issued(container, tenant) == 1


async def test_without_a_key_each_call_generates_anew(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    body = {"user_ids": ["a", "b"]}
    first = await generate(client, tenant, defn["id"], admin, body)
    second = await generate(client, tenant, defn["id"], admin, body)
    assert first.status_code == second.status_code == 201
    assert first.json() != second.json()
    assert await count_issued(container, tenant) == 4


async def test_definitions_use_the_same_key_independently(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    one = await create_definition(client, tenant, admin, reward, code_prefix="ONE")
    two = await create_definition(client, tenant, admin, reward, code_prefix="TWO")
    body = {"user_ids": ["a", "b"]}
    first = await generate(client, tenant, one["id"], admin, body, idempotency_key="shared")
    second = await generate(client, tenant, two["id"], admin, body, idempotency_key="shared")
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert all(c["code"].startswith("ONE") for c in first.json()["coupons"])
    assert all(c["code"].startswith("TWO") for c in second.json()["coupons"])
    assert await count_issued(container, tenant) == 4
    # Another body under the same key stays refused on each definition on its own.
    third = await generate(client, tenant, two["id"], admin, {"user_ids": ["c"]}, "shared")
    assert third.status_code == 422, third.text


async def test_key_held_by_a_live_request_answers_in_progress(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    body = GenerateRequest(user_ids=["a"])
    now = utc_now()
    await container.mongo.idempotency.insert_one(
        {
            "_id": f"generate:{tenant}:{defn['id']}:busy",
            "request_hash": request_hash(body),
            "state": "pending",
            "created_at": now,
            "lease_until": epoch_ms(now + timedelta(minutes=5)),
            "response": None,
        }
    )
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": ["a"]}, "busy")
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "idempotency_key_in_progress"
    assert await count_issued(container, tenant) == 0


async def insert_dead_claim(
    container: Container, tenant: str, defn_id: str, key: str, body: Json
) -> None:
    """The state a keyed call leaves when it dies midway: its claim, lease over."""
    now = utc_now()
    await container.mongo.idempotency.insert_one(
        {
            "_id": f"generate:{tenant}:{defn_id}:{key}",
            "request_hash": request_hash(GenerateRequest.model_validate(body)),
            "state": "pending",
            "created_at": now - timedelta(minutes=3),
            "lease_until": epoch_ms(now - timedelta(seconds=1)),
            "response": None,
        }
    )


def partial_coupon(defn: Json, user_id: str, code: str, key: str, position: int) -> Coupon:
    issue_key = issue_keys.bulk(defn["id"], key, position, "")
    config = defn["config"]
    space = None
    if config["code_format"] == "random":
        space = f"{codes.normalize(config.get('code_prefix') or '')}:{config['code_length']}"
    return Coupon(
        id=issue_keys.coupon_id(issue_key),  # as the service derives it
        tenant_id=defn["tenant_id"],
        definition_id=defn["id"],
        reward_item_id=config["reward_item_id"],
        code=code,
        code_norm=codes.normalize(code),
        kind="issued",
        source="bulk",
        issue_key=issue_key,
        issued_at=utc_now(),
        user_id=user_id,
        code_space=space,
    )


async def test_keyed_random_call_that_died_midway_resumes_without_duplicates(
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await create_definition(client, tenant, admin, reward, code_prefix="R-")
    body = {"user_ids": users(40)}
    await insert_dead_claim(container, tenant, defn["id"], "crash-1", body)
    # The dead call stored the coupons of positions 0..14 (and their outbox rows).
    early = codes.CodeGenerator().unique(15, codes.CodeSpec.random("R-", 8, False))
    stored_early = [
        partial_coupon(defn, body["user_ids"][i], code, "crash-1", i)
        for i, code in enumerate(early)
    ]
    await MongoOutbox(container.mongo).prepare([outbox.issued(c) for c in stored_early])
    assert await MongoCouponRepo(container.mongo).insert_unordered(stored_early) == []

    response = await generate(client, tenant, defn["id"], admin, body, idempotency_key="crash-1")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["generated"] == 40
    assert [c["user_id"] for c in result["coupons"]] == body["user_ids"]
    assert [c["code"] for c in result["coupons"][:15]] == early
    assert len({c["code"] for c in result["coupons"]}) == 40
    stored = await issued(container, tenant)
    assert len(stored) == 40
    assert sorted(d["code"] for d in stored) == sorted(c["code"] for c in result["coupons"])

    # Completed now: a further retry replays, nothing new.
    replay = await generate(client, tenant, defn["id"], admin, body, idempotency_key="crash-1")
    assert replay.status_code == 201 and replay.json() == result
    events = await settled_events(container, settings, tenant)
    assert sorted(e["coupon_id"] for e in events) == sorted(d["_id"] for d in stored)


async def test_keyed_custom_call_that_died_midway_resumes_without_duplicates(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await custom_definition(client, tenant, admin, reward)
    body = {"user_ids": ["a", "b", "c", "d"], "custom_codes": ["C-A", "C-B", "C-C", "C-D"]}
    await insert_dead_claim(container, tenant, defn["id"], "crash-2", body)
    done = [partial_coupon(defn, u, c, "crash-2", i) for i, (u, c) in enumerate([("a", "C-A")])]
    await MongoCouponRepo(container.mongo).insert_atomic(done)

    response = await generate(client, tenant, defn["id"], admin, body, idempotency_key="crash-2")
    assert response.status_code == 201, response.text
    assert response.json() == {
        "generated": 4,
        "coupons": [
            {"user_id": u, "code": c}
            for u, c in zip(body["user_ids"], body["custom_codes"], strict=True)
        ],
    }
    stored = await issued(container, tenant)
    assert sorted(d["code"] for d in stored) == ["C-A", "C-B", "C-C", "C-D"]
    assert next(d for d in stored if d["code"] == "C-A")["_id"] == done[0].id


# --- coupon.issued events --------------------------------------------------------------------


async def test_every_coupon_is_announced_once_with_its_fields(
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await create_definition(
        client,
        tenant,
        admin,
        reward,
        code_prefix="EVT",
        starts_at="2030-01-01T00:00:00Z",
        expires_at="2030-12-31T23:59:59Z",
    )
    user_ids = users(25)
    response = await generate(client, tenant, defn["id"], admin, {"user_ids": user_ids})
    assert response.status_code == 201, response.text

    events = await settled_events(container, settings, tenant)
    stored = {d["_id"]: d for d in await issued(container, tenant)}
    assert len(stored) == 25
    assert sorted(e["coupon_id"] for e in events) == sorted(stored), "exactly one per coupon"
    for event in events:
        coupon = stored[event["coupon_id"]]
        assert event["_key"] == coupon["user_id"]
        assert event["_headers"]["event_type"] == "coupon.issued"
        assert event["_headers"]["tenant_id"] == tenant
        assert event["_headers"]["event_id"] == event["event_id"]
        assert event["event_id"] == event_id("coupon.issued", coupon["_id"])
        assert event["event_type"] == "coupon.issued"
        assert event["tenant_id"] == tenant
        assert event["user_id"] == coupon["user_id"]
        assert event["code"] == coupon["code"]
        assert event["definition_id"] == defn["id"]
        assert event["reward_item_id"] == reward["item_id"]
        assert event["source"] == "bulk"
        assert event["trigger_event_id"] is None
        assert event["starts_at"].startswith("2030-01-01T00:00:00")
        assert event["expires_at"].startswith("2030-12-31T23:59:59")
        assert datetime.fromisoformat(event["occurred_at"]) == aware(coupon["issued_at"])
    by_user = {e["user_id"]: e["code"] for e in events}
    assert by_user == {c["user_id"]: c["code"] for c in response.json()["coupons"]}


async def test_custom_coupons_are_announced_but_not_the_shared_code(
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await custom_definition(client, tenant, admin, reward, custom_code="SHARED-1")
    body = {"user_ids": ["a", "b"], "custom_codes": ["CUS-A", "CUS-B"]}
    response = await generate(client, tenant, defn["id"], admin, body)
    assert response.status_code == 201, response.text
    events = await settled_events(container, settings, tenant)
    assert sorted((e["_key"], e["code"]) for e in events) == [("a", "CUS-A"), ("b", "CUS-B")]


async def test_a_keyed_call_that_failed_leaves_the_key_free_for_a_retry(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    status_url = f"/v1/tenants/{tenant}/coupons/{defn['id']}/status"
    paused = await client.put(status_url, json={"status": "paused"}, headers=admin["headers"])
    assert paused.status_code == 200, paused.text
    body = {"user_ids": ["a", "b"]}
    refused = await generate(client, tenant, defn["id"], admin, body, idempotency_key="retry")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "definition_paused"

    active = await client.put(status_url, json={"status": "active"}, headers=admin["headers"])
    assert active.status_code == 200, active.text
    retried = await generate(client, tenant, defn["id"], admin, body, idempotency_key="retry")
    assert retried.status_code == 201, retried.text
    assert retried.json()["generated"] == 2
    again = await generate(client, tenant, defn["id"], admin, body, idempotency_key="retry")
    assert again.json() == retried.json()
    assert await count_issued(container, tenant) == 2
