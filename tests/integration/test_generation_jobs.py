"""Generation jobs over HTTP on the real wire servers: a CSV job with imported codes and
deliberate row errors (each reported with its line, value and reason, the others stored once
and announced), the refusals before a job starts (header, body, code space, budget), an
idempotent submission and the list, cancel (queued: at once; running: at the next chunk,
what was generated stays), and the lease: one runner per job, another taking over only
once the lease ends, the loser recording nothing."""

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.job_repo import MongoJobStore
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.mongo_schema import OUTBOX
from phoenix_coupons.adapters.outbox import MongoOutbox, sweep_outbox
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.domain.config_rules import code_spec
from phoenix_coupons.domain.jobs import Job, Row, issue_key
from phoenix_coupons.domain.outbox import job_completed
from phoenix_coupons.services.job_input import JobInput
from phoenix_coupons.services.job_run import JobRun
from phoenix_coupons.services.jobs import JobService
from phoenix_coupons.settings import Settings
from schemas.coupons import CouponConfig
from tests.integration.test_generation import create_definition
from tests.support import read_events

Json = dict[str, Any]
CSV = {"Content-Type": "text/csv"}


def jobs_url(tenant: str, definition_id: str) -> str:
    return f"/v1/tenants/{tenant}/coupons/{definition_id}/generation-jobs"


async def run_all(run: JobRun) -> None:
    """Every due job to its end (jobs of other tests included: none is left queued)."""
    while await run.run_next() is not None:
        pass


def small_chunks(container: Container, size: int) -> JobService:
    """The container's job service cutting jobs into chunks of `size` rows."""
    ctx = replace(container.job_context, chunk_size=size)
    return JobService(ctx, container.job_runner.wake)


def runner(container: Container, clock_ahead: timedelta = timedelta()) -> JobRun:
    """A runner of its own whose clock is `clock_ahead` ahead (a lease seen as over)."""
    return JobRun(replace(container.job_context, clock=lambda: utc_now() + clock_ahead))


async def test_a_csv_job_imports_codes_and_reports_row_errors(
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await create_definition(client, tenant, admin, reward, code_format="custom")
    taken = await client.post(
        f"/v1/tenants/{tenant}/coupons/{defn['id']}/generate",
        json={"user_ids": ["someone"], "custom_codes": ["TAKEN-1"]},
        headers=admin["headers"],
    )
    assert taken.status_code == 201, taken.text
    body = (
        "user_id,code,metadata.campaign\n"  # line 1
        "u1,SPRING-001,spring\n"  # 2 ok
        "u2,SPRING-002,\n"  # 3 ok, no metadata
        "u1,SPRING-003,spring\n"  # 4 user repeats line 2
        "u4,spring-001,spring\n"  # 5 code repeats line 2 (case ignored)
        "u5,bad code!,spring\n"  # 6 invalid code
        "u6,taken-1,spring\n"  # 7 taken in the tenant
        "u7\n"  # 8 too few fields
        "u8,,spring\n"  # 9 no code on a custom definition
        "\n"
        "u9,SPRING-009,spring\n"  # 11 ok
    )
    url = jobs_url(tenant, defn["id"])
    submitted = await client.post(url, content=body, headers={**admin["headers"], **CSV})
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert submitted.headers["Location"].endswith(f"{url}/{job['id']}")
    assert (job["status"], job["total"], job["generated"], job["failed"]) == ("queued", 9, 0, 0)

    await run_all(container.job_run)
    done = (await client.get(f"{url}/{job['id']}", headers=admin["headers"])).json()
    assert (done["status"], done["total"], done["generated"], done["failed"]) == (
        "succeeded",
        9,
        3,
        6,
    )
    assert done["started_at"] and done["finished_at"] and done["reason"] is None
    errors = {e["line"]: (e["value"], e["reason"]) for e in done["errors"]}
    assert errors[4] == ("SPRING-003", "duplicate row: user_id repeats line 2")
    assert errors[5] == ("spring-001", "duplicate row: code repeats line 2")
    assert errors[6][0] == "bad code!" and errors[6][1].startswith("invalid code")
    assert errors[7] == ("taken-1", "code already taken in this tenant")
    assert errors[8][1] == "expected 3 fields, found 1"
    assert errors[9][1].startswith("code required")
    assert set(errors) == {4, 5, 6, 7, 8, 9}, "blank lines are skipped; the line numbers stay"

    stored = {
        d["code"]: d
        async for d in container.mongo.coupons.find(
            {"_id": {"$in": [issue_keys.coupon_id(issue_key(job["id"], n)) for n in (2, 3, 11)]}}
        )
    }
    assert set(stored) == {"SPRING-001", "SPRING-002", "SPRING-009"}
    assert stored["SPRING-001"]["metadata"] == {"campaign": "spring"}
    assert stored["SPRING-002"]["metadata"] is None
    assert stored["SPRING-001"]["user_id"] == "u1"

    events = await read_events(
        settings.kafka_bootstrap_servers or "",
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant and e.get("code") != "TAKEN-1",
        count=4,
    )
    issued = sorted(e["code"] for e in events if e["event_type"] == "coupon.issued")
    assert issued == ["SPRING-001", "SPRING-002", "SPRING-009"]
    (completed,) = [e for e in events if e["event_type"] == "coupon.generation_job.completed"]
    assert completed["job_id"] == job["id"]
    assert (completed["status"], completed["generated"], completed["failed"]) == (
        "succeeded",
        3,
        6,
    )


async def test_what_a_job_cannot_do_is_refused_before_it_starts(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    custom = await create_definition(client, tenant, admin, reward, code_format="custom")
    url = jobs_url(tenant, custom["id"])
    h = {**admin["headers"], **CSV}

    async def refused(target: str, body: str, headers: Json = h) -> Json:
        response = await client.post(target, content=body, headers=headers)
        assert response.status_code in (409, 422), response.text
        out: Json = response.json()
        return out

    bad = await refused(url, "user_id,colour\nu1,red\n")
    assert bad["details"][0]["field"] == "header.colour"
    bad = await refused(url, "user_id\nu1\n")
    assert bad["details"][0]["field"] == "header.code"
    bad = await refused(url, "code\nX-1\n")
    assert bad["details"][0]["field"] == "header.user_id"
    bad = await refused(url, "user_id,code\n")
    assert bad["details"][0] == {"field": "body", "reason": "no rows below the header"}
    bad = await refused(
        url, '{"user_ids": ["u1"]}', {**admin["headers"], "Content-Type": "application/json"}
    )
    assert bad["details"][0]["field"] == "user_ids"
    bad = await refused(url, "x", {**admin["headers"], "Content-Type": "text/plain"})
    assert bad["details"][0]["field"] == "Content-Type"

    random = await create_definition(client, tenant, admin, reward, code_length=4)
    # A code space nearly full (the kept count the capacity check reads).
    spec = code_spec(CouponConfig.model_validate(random["config"]))
    await MongoCounters(container.mongo).add({counter_keys.space(tenant, spec.space): 524_000})
    full = await client.post(
        jobs_url(tenant, random["id"]),
        json={"user_ids": [f"u{i}" for i in range(1000)]},
        headers=admin["headers"],
    )
    assert full.status_code == 422 and full.json()["error"] == "code_space_exhausted", full.text

    limited = await create_definition(
        client, tenant, admin, reward, issuance_limit={"max_coupons": 3}
    )
    over = await client.post(
        jobs_url(tenant, limited["id"]),
        json={"user_ids": ["a", "b", "c", "d"]},
        headers=admin["headers"],
    )
    assert over.status_code == 409 and over.json()["error"] == "issuance_limit_reached"
    nothing = await client.get(jobs_url(tenant, limited["id"]), headers=admin["headers"])
    assert nothing.json() == {"jobs": [], "total": 0}
    unknown = await client.get(f"{url}/no-such-job", headers=admin["headers"])
    assert unknown.status_code == 404 and unknown.json()["error"] == "job_not_found"
    no_cancel = await client.post(f"{url}/no-such-job/cancel", headers=admin["headers"])
    assert no_cancel.status_code == 404
    no_list = await client.get(jobs_url(tenant, "no-such-definition"), headers=admin["headers"])
    assert no_list.status_code == 404 and no_list.json()["error"] == "definition_not_found"
    paused = await create_definition(client, tenant, admin, reward)
    await client.put(
        f"/v1/tenants/{tenant}/coupons/{paused['id']}/status",
        json={"status": "paused"},
        headers=admin["headers"],
    )
    refused_paused = await client.post(
        jobs_url(tenant, paused["id"]), json={"user_ids": ["a"]}, headers=admin["headers"]
    )
    assert refused_paused.status_code == 409
    assert refused_paused.json()["error"] == "definition_paused"


async def test_an_idempotent_submission_returns_the_first_job_and_the_list_shows_jobs(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    url = jobs_url(tenant, defn["id"])
    keyed = {**admin["headers"], "Idempotency-Key": "campaign-7"}
    body = {"user_ids": ["a", "b", "c"], "metadata": {"batch": 7}}
    first = await client.post(url, json=body, headers=keyed)
    again = await client.post(url, json=body, headers=keyed)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = await client.post(url, json={"user_ids": ["z"]}, headers=keyed)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    second = await client.post(url, json={"user_ids": ["d"]}, headers=admin["headers"])
    assert second.status_code == 202
    await run_all(container.job_run)
    replay = await client.post(url, json=body, headers=keyed)
    assert replay.json()["id"] == first.json()["id"] and replay.json()["status"] == "succeeded"

    listed = await client.get(url, params={"limit": 1}, headers=admin["headers"])
    assert listed.json()["total"] == 2
    assert [j["id"] for j in listed.json()["jobs"]] == [second.json()["id"]]
    after = listed.headers["X-Next-After"]
    rest = await client.get(url, params={"after": after}, headers=admin["headers"])
    assert [j["id"] for j in rest.json()["jobs"]] == [first.json()["id"]]
    stored = await container.mongo.coupons.count_documents({"definition_id": defn["id"]})
    assert stored == 4, "one coupon per row, the replayed submissions made none"


async def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_chunk(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    url = jobs_url(tenant, defn["id"])
    queued = await client.post(url, json={"user_ids": ["a"]}, headers=admin["headers"])
    cancelled = await client.post(f"{url}/{queued.json()['id']}/cancel", headers=admin["headers"])
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["generated"] == 0
    again = await client.post(f"{url}/{queued.json()['id']}/cancel", headers=admin["headers"])
    assert again.status_code == 409 and again.json()["error"] == "job_cancelled"

    jobs = small_chunks(container, 2)
    defn_full = await jobs.definition(tenant, defn["id"])
    rows = [Row(i + 1, f"user-{i}") for i in range(6)]
    job, made = await jobs.submit(defn_full, JobInput(rows, "h-cancel"))
    assert made and job.chunks == 3
    chunks_seen = 0

    def stop_after_one() -> bool:
        nonlocal chunks_seen
        chunks_seen += 1
        return chunks_seen > 1

    await container.job_run.run_next(stop_after_one)  # one chunk, then given back
    running = await client.post(f"{url}/{job.id}/cancel", headers=admin["headers"])
    assert running.status_code == 200
    assert (running.json()["status"], running.json()["cancel_requested"]) == ("running", True)
    await run_all(container.job_run)
    over = (await client.get(f"{url}/{job.id}", headers=admin["headers"])).json()
    assert (over["status"], over["generated"]) == ("cancelled", 2)
    assert "stay" in over["reason"]
    assert await container.mongo.coupons.count_documents({"definition_id": defn["id"]}) == 2


async def test_one_runner_per_job_and_another_only_after_the_lease(
    container: Container, client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    jobs = small_chunks(container, 5)
    full = await jobs.definition(tenant, defn["id"])
    rows = [Row(i + 1, f"user-{i}") for i in range(20)]
    job, _ = await jobs.submit(full, JobInput(rows, "h-lease"))
    store = MongoJobStore(container.mongo)
    now = utc_now()
    held = await store.claim(now, now + timedelta(seconds=60), "dead-runner")
    assert held is not None and held.id == job.id
    # The holder "dies": others find nothing due until its lease ends.
    assert await runner(container).run_next() is None
    late = runner(container, timedelta(seconds=61))
    taken_over = await late.run_next()
    assert taken_over is not None and taken_over.id == job.id and taken_over.status == "succeeded"
    assert not await store.commit(held, "dead-runner", 0, now + timedelta(seconds=60))
    assert await container.mongo.coupons.count_documents({"definition_id": defn["id"]}) == 20

    # Four runners at once on a fresh job: one claims it, the others find nothing.
    job2, _ = await jobs.submit(full, JobInput([Row(1, "solo"), Row(2, "duo")], "h-race"))
    results = await asyncio.gather(*(runner(container).run_next() for _ in range(4)))
    ran: list[Job] = [r for r in results if r is not None]
    assert [r.id for r in ran] == [job2.id] and ran[0].generated == 2


async def test_the_sweep_announces_an_end_only_if_the_job_ended_so(own_mongo: Mongo) -> None:
    store, box = MongoJobStore(own_mongo), MongoOutbox(own_mongo)
    now = utc_now()
    job = Job("j-1", "t-a", "d-1", "queued", 1, 1, now, "h" * 16)
    assert await store.insert(job) is None
    held = await store.claim(now, now + timedelta(seconds=60), "a-1")
    assert held is not None
    ended = replace(held, status="succeeded", generated=1)
    won = job_completed(ended, now)
    lost = job_completed(replace(held, status="cancelled"), now)
    await box.prepare([won, lost])
    assert await store.finish(ended, "a-1", now)
    assert not await store.finish(replace(held, status="failed"), "a-2", now), "not its lease"
    # The runner crashed before readying: past the grace, the sweep readies the end the job
    # holds and drops the other.
    assert await sweep_outbox(own_mongo, now + timedelta(minutes=5), timedelta(minutes=2)) == 2
    left = await own_mongo.db[OUTBOX.name].find({}, {"state": 1}).to_list()
    assert left == [{"_id": won.id, "state": "ready"}]


async def test_rows_past_the_issuance_budget_fail_while_the_others_are_made(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward, issuance_limit={"max_coupons": 3})
    url = jobs_url(tenant, defn["id"])
    submitted = await client.post(url, json={"user_ids": ["a", "b"]}, headers=admin["headers"])
    assert submitted.status_code == 202
    # Taken by the worker or a bulk call while the job waits.
    taken = await client.post(
        f"/v1/tenants/{tenant}/coupons/{defn['id']}/generate",
        json={"user_ids": ["z"]},
        headers=admin["headers"],
    )
    assert taken.status_code == 201
    again = await client.post(url, json={"user_ids": ["c", "d"]}, headers=admin["headers"])
    assert again.status_code == 202
    await run_all(container.job_run)
    first = (await client.get(f"{url}/{submitted.json()['id']}", headers=admin["headers"])).json()
    second = (await client.get(f"{url}/{again.json()['id']}", headers=admin["headers"])).json()
    assert (first["generated"], first["failed"]) == (2, 0)
    assert (second["status"], second["generated"], second["failed"]) == ("succeeded", 0, 2)
    assert {e["reason"] for e in second["errors"]} == {
        "issuance_limit reached: the definition's budget is used up"
    }
