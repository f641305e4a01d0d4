"""(export) A definition's codes exported over HTTP (CSV, through a real API process) against a
raw cursor read of the same documents (the definition's `by_definition` range, sorted, one
cursor), on the same server in the same run; and the API process's peak resident memory.

The coupons are written directly (not timed): `write_coupons` is the one place that builds
them, shared by the memory test of the export (tests/e2e/test_code_export.py)."""

import contextlib
import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.common import TENANT, Servers, now, scenario_settings
from bench.redemption import api_process
from phoenix_coupons.adapters import counter_keys, list_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.coupon_repo import BY_DEFINITION, definition_prefix, to_doc
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.models import Coupon
from schemas.coupons import CouponConfig, CouponDefinition, DefinitionCreate, UsageLimit
from schemas.rewards import RewardItemCreate

WRITE_CHUNK = 5000


def coupons(
    tenant_id: str, definition_id: str, reward_item_id: str, start: int, count: int
) -> Iterator[Coupon]:
    """Coupons `start` .. `start + count - 1` of a definition, one user each, a second apart."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(start, start + count):
        code = f"EXP{i:09d}"
        yield Coupon(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{definition_id}:{i}")),
            tenant_id=tenant_id,
            definition_id=definition_id,
            reward_item_id=reward_item_id,
            code=code,
            code_norm=code,
            kind="issued",
            source="bulk",
            issue_key=f"export-bench:{definition_id}:{i}",
            issued_at=base + timedelta(seconds=i),
            user_id=f"user-{i}",
            metadata={"campaign": "export bench", "n": i},
        )


async def write_coupons(
    mongo: Mongo,
    tenant_id: str,
    definition_id: str,
    reward_item_id: str,
    start: int,
    count: int,
) -> None:
    """Insert the coupons as the repository stores them (list keys included) and count
    them in the definition's kept count; their codes are not claimed (nothing redeems them)."""
    batch = []
    for c in coupons(tenant_id, definition_id, reward_item_id, start, count):
        batch.append(to_doc(c))
        if len(batch) == WRITE_CHUNK:
            await mongo.coupons.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await mongo.coupons.insert_many(batch, ordered=False)
    await MongoCounters(mongo).add({counter_keys.codes(tenant_id, definition_id): count})


async def export_definition(container: Container, tenant_id: str) -> tuple[CouponDefinition, str]:
    """A definition with random codes and a `per_user` limit (a usage group per code: each
    batch of the export reads its 1,000 kept counts), and a `coupons:read` key's plaintext."""
    reward = await container.rewards.create(
        tenant_id, RewardItemCreate(name="Points", reward_type="points", payload={"n": 1})
    )
    defn = await container.definitions.create(
        tenant_id,
        DefinitionCreate(
            name="export",
            config=CouponConfig(
                reward_item_id=reward.item_id,
                code_format="random",
                usage_limit=UsageLimit(limit_type="per_user", max_uses=1),
            ),
        ),
    )
    _, key = await container.api_keys.create("export", "coupons:read", tenant_id)
    return defn, key


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/<pid>/status")


@dataclass
class ExportFigures:
    codes: int
    raw_s: list[float]
    export_s: list[float]
    bytes: int
    peak_rss_mb: float

    @property
    def raw_rate(self) -> float:
        return self.codes / statistics.median(self.raw_s)

    @property
    def export_rate(self) -> float:
        return self.codes / statistics.median(self.export_s)


async def raw_read(mongo: Mongo, tenant_id: str, definition_id: str) -> int:
    """The baseline: every document of the definition's list-key range, in key order."""
    start = definition_prefix(tenant_id, definition_id) + list_keys.SEP
    query = {BY_DEFINITION: {"$gte": start, "$lt": start + list_keys.END}}
    n = 0
    async for _ in mongo.coupons.find(query).sort(BY_DEFINITION, 1).batch_size(1000):
        n += 1
    return n


async def export_over_http(base: str, key: str, definition_id: str) -> tuple[int, int]:
    """The export's body, streamed and dropped: (lines, bytes)."""
    lines = size = 0
    url = f"{base}/v1/tenants/{TENANT}/coupons/{definition_id}/codes/export"
    async with (
        httpx.AsyncClient(timeout=120.0) as http,
        http.stream("GET", url, headers={"X-API-Key": key}) as response,
    ):
        response.raise_for_status()
        async for chunk in response.aiter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines, size


async def export_run(servers: Servers, codes: int, runs: int, log: Path) -> ExportFigures:
    settings = scenario_settings(servers, "export")
    container = Container(settings)
    await container.start_storage()
    try:
        defn, key = await export_definition(container, TENANT)
        t = now()
        await write_coupons(container.mongo, TENANT, defn.id, defn.config.reward_item_id, 0, codes)
        print(f"  {codes:,} coupons written in {now() - t:.1f} s (not timed)", flush=True)
        raw_s: list[float] = []
        export_s: list[float] = []
        size = 0
        async with api_process(settings, log) as (base, pid):
            for i in range(runs):
                t = now()
                read = await raw_read(container.mongo, TENANT, defn.id)
                raw_s.append(now() - t)
                t = now()
                lines, size = await export_over_http(base, key, defn.id)
                export_s.append(now() - t)
                if read != codes or lines != codes + 1:  # + the header row
                    raise RuntimeError(f"read {read} documents, exported {lines - 1} rows")
                print(
                    f"  run {i + 1}/{runs} raw cursor read {raw_s[-1]:6.2f} s, "
                    f"export (CSV over HTTP) {export_s[-1]:6.2f} s, {size / 2**20:.1f} MiB",
                    flush=True,
                )
            peak = peak_rss_mb(pid)
        return ExportFigures(codes, raw_s, export_s, size, peak)
    finally:
        with contextlib.suppress(Exception):
            await container.mongo.close()
