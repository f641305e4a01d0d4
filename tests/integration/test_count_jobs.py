"""Count jobs (`{"count": N}`) over HTTP on the real wire servers: N unassigned codes made
by the job runner in chunks (no rows stored), each stored once under its line's issue key
and announced once on the issued topic (keyed by coupon id, `user_id` null), in no wallet,
shown by the code lookup and the timeline, and exported exactly as the job made them; the
refusals before a job starts (both or neither field, custom definition, code space, budget),
an idempotent count submission, and a job of a million codes stored as one document."""

from typing import Any

import httpx

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo_schema import GENERATION_JOB_ROWS
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.config_rules import code_spec
from phoenix_coupons.domain.jobs import issue_key
from phoenix_coupons.settings import Settings
from schemas.coupons import CouponConfig
from tests.integration.test_code_export import csv_rows
from tests.integration.test_generation import create_definition
from tests.integration.test_generation_jobs import jobs_url, run_all
from tests.support import read_events

Json = dict[str, Any]
COUNT = 1_200  # two chunks of PHOENIX_JOB_CHUNK_SIZE (1,000), the second one partial


async def test_a_count_job_makes_unassigned_codes_announced_once_and_exported_as_made(
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
        code_pattern="CARD-####-????",
        expires_at="2099-01-01T00:00:00Z",
        remind_before=["P3D"],
    )
    url = jobs_url(tenant, defn["id"])
    body = {"count": COUNT, "metadata": {"campaign": "cards"}}
    submitted = await client.post(url, json=body, headers=admin["headers"])
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert submitted.headers["Location"].endswith(f"{url}/{job['id']}")
    assert (job["status"], job["total"], job["unassigned"]) == ("queued", COUNT, True)
    rows = container.mongo.db[GENERATION_JOB_ROWS.name]
    assert await rows.count_documents({"_id": {"$regex": f"^{job['id']}:"}}) == 0, "no rows"

    await run_all(container.job_run)
    done = (await client.get(f"{url}/{job['id']}", headers=admin["headers"])).json()
    assert (done["status"], done["generated"], done["failed"], done["errors"]) == (
        "succeeded",
        COUNT,
        0,
        [],
    )

    ids = [issue_keys.coupon_id(issue_key(job["id"], line)) for line in range(1, COUNT + 1)]
    stored = {
        d["_id"]: d async for d in container.mongo.coupons.find({"definition_id": defn["id"]})
    }
    assert set(stored) == set(ids), "one coupon per line 1..N, under its issue key"
    for doc in stored.values():
        assert (doc["kind"], doc["user_id"], doc["source"]) == ("unassigned", None, "bulk")
        assert doc["metadata"] == {"campaign": "cards"}
        assert "by_user" not in doc and "expiry_due" not in doc, "no wallet, no reminders"
    made = {(d["code"], d["kind"], d["user_id"]) for d in stored.values()}
    assert len({code for code, _, _ in made}) == COUNT

    events = await read_events(
        settings.kafka_bootstrap_servers or "",
        settings.topic_coupons_issued,
        lambda e: e.get("definition_id") == defn["id"],
        count=COUNT + 1,
    )
    issued = [e for e in events if e["event_type"] == "coupon.issued"]
    assert sorted(e["coupon_id"] for e in issued) == sorted(ids), "each announced once"
    assert all(e["_key"] == e["coupon_id"] for e in issued), "keyed by coupon: no user"
    assert {(e["user_id"], e["kind"]) for e in issued} == {(None, "unassigned")}
    assert {(e["code"], "unassigned", None) for e in issued} == made
    [completed] = [e for e in events if e["event_type"] == "coupon.generation_job.completed"]
    assert (completed["job_id"], completed["generated"]) == (job["id"], COUNT)

    exported = await client.get(
        f"/v1/tenants/{tenant}/coupons/{defn['id']}/codes/export", headers=admin["headers"]
    )
    assert exported.status_code == 200, exported.text
    as_rows = csv_rows(exported.text)
    assert len(as_rows) == COUNT
    assert {(r["code"], r["kind"], r["user_id"] or None) for r in as_rows} == made
    assert {(r["status"], r["uses"], r["metadata"]) for r in as_rows} == {
        ("active", "0", '{"campaign":"cards"}')
    }

    code = as_rows[0]["code"]
    lookup = await client.get(f"/v1/tenants/{tenant}/codes/{code}", headers=admin["headers"])
    assert lookup.status_code == 200, lookup.text
    coupon = lookup.json()["coupon"]
    assert (coupon["kind"], coupon["user_id"]) == ("unassigned", None)
    timeline = await client.get(
        f"/v1/tenants/{tenant}/codes/{code}/history", headers=admin["headers"]
    )
    [step] = timeline.json()["events"]
    assert step["type"] == "issued" and "user_id" not in step["details"]


async def test_what_a_count_job_cannot_do_is_refused_before_it_starts(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    random = await create_definition(client, tenant, admin, reward, code_length=4)
    url = jobs_url(tenant, random["id"])
    h = admin["headers"]

    async def refused(target: str, body: Json, status: int = 422) -> Json:
        response = await client.post(target, json=body, headers=h)
        assert response.status_code == status, response.text
        out: Json = response.json()
        return out

    for body in ({"user_ids": ["a"], "count": 1}, {}, {"metadata": {"m": 1}}):
        both = await refused(url, body)
        assert {d["field"] for d in both["details"]} == {"user_ids", "count"}, both
    for bad in (0, -1, 1_000_001, "ten"):
        out = await refused(url, {"count": bad})
        assert out["details"][0]["field"] == "count", out

    custom = await create_definition(
        client, tenant, admin, reward, code_format="custom", custom_code="SHARED-1"
    )
    out = await refused(jobs_url(tenant, custom["id"]), {"count": 3})
    assert out["details"][0]["field"] == "count" and "custom" in out["message"]

    # A code space nearly full (the kept count the capacity check reads): 4 characters of
    # the unambiguous alphabet hold 31**4 = 923,521 codes, with the margin fewer.
    spec = code_spec(CouponConfig.model_validate(random["config"]))
    await MongoCounters(container.mongo).add({counter_keys.space(tenant, spec.space): 600_000})
    full = await refused(url, {"count": 200_000})
    assert full["error"] == "code_space_exhausted" and full["details"][0]["field"] == "count"

    limited = await create_definition(
        client, tenant, admin, reward, issuance_limit={"max_coupons": 3}
    )
    over = await refused(jobs_url(tenant, limited["id"]), {"count": 4}, status=409)
    assert over["error"] == "issuance_limit_reached"
    assert over["conflicts"][0]["field"] == "count"
    for target in (url, jobs_url(tenant, limited["id"]), jobs_url(tenant, custom["id"])):
        listed = await client.get(target, headers=h)
        assert listed.json() == {"jobs": [], "total": 0}, "nothing was stored"
    fits = await client.post(jobs_url(tenant, limited["id"]), json={"count": 3}, headers=h)
    assert fits.status_code == 202, fits.text
    await run_all(container.job_run)


async def test_a_keyed_count_submission_returns_the_first_job(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    url = jobs_url(tenant, defn["id"])
    keyed = {**admin["headers"], "Idempotency-Key": "cards-1"}
    first = await client.post(url, json={"count": 5}, headers=keyed)
    again = await client.post(url, json={"count": 5}, headers=keyed)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = await client.post(url, json={"count": 6}, headers=keyed)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"

    # The largest job costs one document: no rows stored (cancelled before any runner).
    million = await client.post(url, json={"count": 1_000_000}, headers=admin["headers"])
    assert million.status_code == 202, million.text
    big = million.json()
    cancelled = await client.post(f"{url}/{big['id']}/cancel", headers=admin["headers"])
    assert (cancelled.json()["status"], cancelled.json()["total"]) == ("cancelled", 1_000_000)
    rows = container.mongo.db[GENERATION_JOB_ROWS.name]
    assert await rows.count_documents({"_id": {"$regex": f"^{big['id']}:"}}) == 0
    await run_all(container.job_run)
    stored = await container.mongo.coupons.count_documents({"definition_id": defn["id"]})
    assert stored == 5
