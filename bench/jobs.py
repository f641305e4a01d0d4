"""(jobs) A generation job run the way users run one: submitted over HTTP to a real API
process, run by a `phoenix-coupons jobs` process (whose resident memory is sampled from
/proc throughout), against a raw `insert_many` of the same documents: the job writes two
per code, its coupon and its code's claim in the code registry (what keeps codes unique per
tenant on a sharded cluster), so the baseline inserts both (built by the same factory and
`claim_doc`, in batches of a job chunk) into collections with the same indexes, on the same
server in the same run. The coupons' time alone is reported beside.

The baseline runs before and after the job (the machine's load moves; the mean is
compared). The job's time is its own (`started_at` to `finished_at`, as it stores them);
the time until the outbox holds none of its entries (every `coupon.issued` published) is
reported beside it.
After the run the coupons and the records on the issued topic are counted: one coupon and
one `coupon.issued` per row, one `coupon.generation_job.completed` (a wrong count fails the
run)."""

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from bench.common import TENANT, BenchError, Servers, end_offsets, now, scenario_settings
from bench.export import export_definition, export_over_http, peak_rss_mb, raw_read
from bench.redemption import _free_port, _spawn, api_process, process_env
from phoenix_coupons.adapters.code_registry import claim_doc
from phoenix_coupons.adapters.coupon_repo import to_doc
from phoenix_coupons.adapters.kafka import ensure_topics
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.mongo_schema import CODES, COUPONS, OUTBOX
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.codes import CodeGenerator, normalize
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.jobs import issue_key
from phoenix_coupons.domain.models import Requester
from phoenix_coupons.settings import Settings
from schemas.coupons import CouponDefinition

CHUNK = 1000  # the job's chunk (PHOENIX_JOB_CHUNK_SIZE's default) and the baseline's batch
READY_S = 60.0
SAMPLE_S = 0.25  # the runner's RSS, this often
MONGODB_TIMEOUT_MS = 120_000
DONE = ("succeeded", "failed", "cancelled")


def job_request(n: int) -> tuple[dict[str, Any], list[str | None]]:
    """The job's JSON body and each line's user (the baseline's documents follow them): N
    unassigned codes, as a campaign of printed cards asks for them."""
    return {"count": n}, [None] * n


@dataclass
class JobFigures:
    codes: int
    raw_s: float  # the coupons' insert_many
    claims_s: float  # their code claims' insert_many (the baseline adds it)
    job_s: float
    drained_s: float  # from the job's start until the outbox held none of its entries
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds in, MiB)
    peak_rss_mb: float = 0.0
    # The job's codes exported over HTTP, and the raw read of the same documents.
    export_s: float = 0.0
    read_s: float = 0.0

    @property
    def export_ratio(self) -> float:
        return self.read_s / self.export_s

    @property
    def raw_rate(self) -> float:
        return self.codes / self.raw_s

    @property
    def baseline_rate(self) -> float:
        return self.codes / (self.raw_s + self.claims_s)

    @property
    def job_rate(self) -> float:
        return self.codes / self.job_s


async def job_definition(container: Container) -> tuple[CouponDefinition, str]:
    """The export scenario's definition (random codes, `per_user` limit) and a key that may
    submit and read jobs."""
    defn, _ = await export_definition(container, TENANT)
    _, key = await container.api_keys.create("jobs", "coupons:write,coupons:read", TENANT)
    return defn, key


def _raw_batches(
    defn: CouponDefinition, users: list[str | None]
) -> Iterator[tuple[list[Any], list[Any]]]:
    """The documents a job of these rows stores, a chunk at a time (as `to_doc` writes
    them: list keys and all), with codes drawn by the same generator, distinct over the
    whole run (the registry would refuse a repeat: 100,000 8-character codes repeat one in
    about 170 runs); and their codes' claims (the code registry's documents, as a batch
    claims them)."""
    make = CouponFactory.of(defn, "bulk")
    if make.spec is None:
        raise BenchError("the definition draws no codes")
    spec = make.spec
    codegen = CodeGenerator()
    job_id = uuid.uuid4().hex
    by = Requester("bench-key", "bench-request")
    at = datetime.now(UTC)
    seen: set[str] = set()
    for start in range(0, len(users), CHUNK):
        part = users[start : start + CHUNK]
        drawn = codegen.unique(len(part), spec, seen.__contains__)
        seen.update(normalize(code) for code in drawn)
        coupons = [
            make.coupon(issue_key(job_id, start + j + 1), code, at, user, requester=by)
            for j, (user, code) in enumerate(zip(part, drawn, strict=True))
        ]
        yield [to_doc(c) for c in coupons], [claim_doc(c, at, False) for c in coupons]


async def raw_insert(
    mongo: Mongo, defn: CouponDefinition, users: list[str | None]
) -> tuple[float, float]:
    """The baseline: seconds spent in `insert_many` (unordered, a chunk each) of the job's
    coupons into a fresh collection with the coupons' indexes, and of their code claims
    into a fresh collection with the registry's. Building the documents is not timed."""
    tag = uuid.uuid4().hex[:8]
    col, claims = mongo.db[f"raw_coupons_{tag}"], mongo.db[f"raw_codes_{tag}"]
    for target, schema in ((col, COUPONS), (claims, CODES)):
        for index in schema.indexes:
            await target.create_index(list(index.keys), unique=index.unique, sparse=index.sparse)
    coupons_s = claims_s = 0.0
    for docs, claimed in _raw_batches(defn, users):
        t = now()
        await col.insert_many(docs, ordered=False)
        coupons_s += now() - t
        t = now()
        await claims.insert_many(claimed, ordered=False)
        claims_s += now() - t
    stored = await col.estimated_document_count()
    await col.drop()
    await claims.drop()
    if stored != len(users):
        raise BenchError(f"the baseline stored {stored} documents of {len(users)}")
    return coupons_s, claims_s


async def _raw(
    mongo: Mongo, defn: CouponDefinition, users: list[str | None], when: str
) -> tuple[float, float]:
    coupons_s, claims_s = await raw_insert(mongo, defn, users)
    print(
        f"  raw insert_many of {len(users):,} coupons {coupons_s:.1f} s, of their code "
        f"claims {claims_s:.1f} s ({when})",
        flush=True,
    )
    return coupons_s, claims_s


@contextlib.asynccontextmanager
async def runner_process(settings: Settings, log: Path) -> AsyncIterator[int]:
    """`phoenix-coupons jobs` on the scenario's servers, logging JSON at INFO into `log` as
    in production, polling the queue every 0.2 s (a job submitted to another process's API
    waits for the poll): its pid once healthy."""
    port = _free_port()
    env = {**process_env(settings), "PHOENIX_LOG_LEVEL": "INFO", "PHOENIX_JOB_POLL_SECONDS": "0.2"}
    argv = [sys.executable, "-m", "phoenix_coupons", "jobs", "--port", str(port)]
    proc = _spawn(argv, env, log)
    try:
        deadline = time.monotonic() + READY_S
        async with httpx.AsyncClient(timeout=1.0) as probe:
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"the jobs process exited ({proc.returncode}); see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await probe.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"the jobs process did not get healthy; see {log}")
                await asyncio.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS in /proc/<pid>/status")


async def sample_rss(pid: int, into: list[tuple[float, float]]) -> None:
    started = now()
    while True:
        into.append((now() - started, rss_mb(pid)))
        await asyncio.sleep(SAMPLE_S)


def _times(job: dict[str, Any]) -> float:
    started = datetime.fromisoformat(job["started_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return (finished - started).total_seconds()


async def run_job(
    base: str, key: str, defn: CouponDefinition, body: dict[str, Any], mongo: Mongo
) -> tuple[dict[str, Any], float]:
    """Submit, follow until it ends (progress printed every ~10%), then wait for the outbox
    (the scenario's database: this job's entries only) to be empty: (the job, seconds from
    submission to drained)."""
    url = f"{base}/v1/tenants/{TENANT}/coupons/{defn.id}/generation-jobs"
    async with httpx.AsyncClient(timeout=120.0, headers={"X-API-Key": key}) as http:
        submitted = now()
        answer = await http.post(url, json=body)
        if answer.status_code != 202:
            raise BenchError(f"job refused: {answer.status_code} {answer.text[:300]}")
        job: dict[str, Any] = answer.json()
        step, shown = max(1, job["total"] // 10), 0
        while job["status"] not in DONE:
            await asyncio.sleep(0.2)
            job = (await http.get(f"{url}/{job['id']}")).json()
            if job["generated"] >= shown + step:
                shown = job["generated"]
                print(f"  {now() - submitted:6.1f} s  {shown:>9,} / {job['total']:,}", flush=True)
    outbox = mongo.db[OUTBOX.name]
    while True:  # the relay runs in another process: poll
        if await outbox.find_one({}, {"_id": 1}) is None:
            return job, now() - submitted
        await asyncio.sleep(0.1)


async def count_announced(settings: Settings) -> dict[str, int]:
    """Distinct event ids on the issued topic, by event type."""
    topic = settings.topic_coupons_issued
    bootstrap = settings.kafka_bootstrap_servers or ""
    ends = await end_offsets(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    seen: dict[str, set[str]] = {}
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning()
        left = {tp for tp, end in ends.items() if end}
        while left:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for r in records:
                    if r.value is None:
                        continue
                    event = json.loads(r.value)
                    seen.setdefault(event["event_type"], set()).add(event["event_id"])
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    return {kind: len(ids) for kind, ids in seen.items()}


async def export_figures(
    container: Container, base: str, key: str, definition_id: str, codes: int
) -> tuple[float, float]:
    """Seconds to read the job's coupons raw (their list-key range), then to export them as
    CSV over HTTP: every code the job made, and no other (a wrong count fails)."""
    started = time.perf_counter()
    read = await raw_read(container.mongo, TENANT, definition_id)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    lines, _ = await export_over_http(base, key, definition_id)
    export_s = time.perf_counter() - started
    if read != codes or lines != codes + 1:  # the CSV's header line
        raise BenchError(f"read {read} coupons, exported {lines - 1} codes, of {codes}")
    return read_s, export_s


async def job_bench(servers: Servers, codes: int, log: Path) -> JobFigures:
    # The bench's own reads wait longer than the service's 10 s default (a backlog of
    # 100,000 outbox entries before the bundles).
    settings = scenario_settings(servers, "jobs").model_copy(
        update={"mongodb_timeout_ms": MONGODB_TIMEOUT_MS}
    )
    container = Container(settings)
    await container.start_storage()
    await ensure_topics(settings)
    api_log = log.with_suffix(".api.log")
    try:
        defn, key = await job_definition(container)
        body, users = job_request(codes)
        before = await _raw(container.mongo, defn, users, "before the job")
        samples: list[tuple[float, float]] = []
        async with (
            api_process(settings, api_log) as (base, _),
            runner_process(settings, log) as pid,
        ):
            sampler = asyncio.create_task(sample_rss(pid, samples))
            try:
                job, drained_s = await run_job(base, key, defn, body, container.mongo)
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            peak = peak_rss_mb(pid)
            read_s, export_s = await export_figures(container, base, key, defn.id, codes)
        after = await _raw(container.mongo, defn, users, "after the job")
        raw_s, claims_s = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        if (job["status"], job["generated"], job["failed"]) != ("succeeded", codes, 0):
            raise BenchError(f"the job ended {job['status']}: {job}")
        stored = await container.mongo.coupons.estimated_document_count()  # this job's alone
        announced = await count_announced(settings)
        if stored != codes or announced.get("coupon.issued") != codes:
            raise BenchError(f"{stored} coupons stored, announced {announced}, of {codes}")
        if announced.get("coupon.generation_job.completed") != 1:
            raise BenchError(f"job completions announced: {announced}")
        job_s = _times(job)
        started = datetime.fromisoformat(job["started_at"])
        created = datetime.fromisoformat(job["created_at"])
        wait_s = (started - created).total_seconds()
        return JobFigures(
            codes, raw_s, claims_s, job_s, drained_s - wait_s, samples, peak, export_s, read_s
        )
    finally:
        with contextlib.suppress(Exception):
            await container.mongo.close()


def rss_line(samples: list[tuple[float, float]], points: int = 10) -> str:
    """The sampled RSS at `points` evenly spaced moments (MiB)."""
    if not samples:
        return "(no samples)"
    picks = [samples[min(len(samples) - 1, i * len(samples) // points)] for i in range(points)]
    return " ".join(f"{mb:.0f}" for _, mb in [*picks, samples[-1]])
