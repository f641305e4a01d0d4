"""(r) The redeem path against the framework reference, every call made by the load generator
in its own process (bench/loadgen.py), on the same servers in one run:

1. the load generator alone against a bare asyncio server (bench/trivial_server.py): its
   ceiling and its CPU per call;
2. the framework reference (bench/reference_app.py, the API's uvicorn settings): a constant
   answer (the framework alone), then one conditional `find_one_and_update` a call;
3. the API process (`phoenix-coupons api`, logging at INFO as in production): redeem and
   validate, `concurrency` in flight; with each process's CPU per call (the API, the
   embedded MongoDB, the load generator);
4. open loop: redeems offered at `rate`/s, and the reference at the same rate (p50, p99;
   every answer counts, an error status too: over capacity the API answers 503s);
5. flat: a redeem of one `unlimited` shared code with 0, 10,000 and 100,000 earlier
   redemptions of that code (its definition and its tenant: one tenant per size), written
   directly beforehand as redeems leave them (the redemption, its timeline step);
6. `profile`: the same redeem run once more under py-spy (the API process, then the load
   generator), the samples summarized by owner (bench/profile_summary.py)."""

import asyncio
import contextlib
import functools
import json
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from bench import command_log
from bench.common import TENANT, BenchError, Servers, now, scenario_settings
from bench.profile_summary import Summary, summarize
from bench.redemption import CallRun, api_process
from bench.reference_app import COLLECTION
from bench.round_trips import Counts, count_round_trips
from bench.scale import _cpu_seconds, _listener_pid
from bench.sched_probe import SchedProbe
from phoenix_coupons.adapters.code_history import history_doc, insert_history
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.redemption_repo import to_doc
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import codes
from phoenix_coupons.domain.history import Actor
from phoenix_coupons.domain.outbox import redeemed
from phoenix_coupons.domain.redemption import Redemption, free_slot
from phoenix_coupons.services.redemptions import coupon_view
from phoenix_coupons.settings import Settings
from schemas.coupons import CouponConfig, DefinitionCreate, UsageLimit
from schemas.rewards import RewardItem, RewardItemCreate

CODE = "BENCHREDEEM"
FLAT_CODE = "BENCHFLAT"
FILL_BATCH = 1000
OPEN_FIRST = 1_000_000  # the open loop's user numbers, after the closed runs'
WARMUP = 64
STANDARD_SERVER = {"PHOENIX_API_EVENT_LOOP": "asyncio", "PHOENIX_API_HTTP_PARSER": "h11"}


@dataclass(frozen=True)
class Plan:
    calls: int = 2000  # per closed-loop run
    concurrency: int = 32
    rate: float = 100.0  # open loop, calls per s
    open_seconds: float = 10.0
    flat_sizes: tuple[int, ...] = (0, 10_000, 100_000)
    flat_calls: int = 1000
    profile_dir: Path | None = None
    # The API's MongoDB commands timed (bench.command_log); those of this many ms or more
    # during the open loop are printed.
    command_log_ms: float | None = None
    # The API process's server settings (PHOENIX_API_*), e.g. the standard loop and h11.
    api_env: dict[str, str] = field(default_factory=dict)
    # A second API process, redeem and validate only: the standard loop and parser.
    compare_env: dict[str, str] | None = field(default_factory=lambda: dict(STANDARD_SERVER))


@dataclass
class Load(CallRun):
    """A load generator's answer, and the CPU seconds of the processes watched meanwhile."""

    statuses: dict[str, int]
    loadgen_cpu_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    series: list[tuple[float, float]] = field(default_factory=list)  # open loop: (due s, ms)
    started_at: float = 0.0  # open loop: epoch s of the first call's due time

    def cpu_ms_per_call(self, who: str) -> float:
        seconds = self.loadgen_cpu_s if who == "load generator" else self.cpu_s[who]
        return seconds * 1000 / self.calls

    def slowest(self, n: int) -> str:
        """The open loop's `n` slowest calls, in time order: when each was due (s) and its
        latency (ms): stalls that recur at an interval show here."""
        worst = sorted(sorted(self.series, key=lambda c: -c[1])[:n])
        listed = ", ".join(f"{t:.1f}s {ms:.0f}" for t, ms in worst)
        return f"{listed} (started at epoch {self.started_at:.3f})"

    def failed(self) -> int:
        """Calls answered with an error status (an open loop over capacity: 503s)."""
        return sum(n for status, n in self.statuses.items() if int(status) >= 400)

    def line(self) -> str:
        text = (
            f"  {self.name:<34} {self.calls:>6} calls in {self.seconds:6.2f} s = "
            f"{self.rate:>7,.0f}/s  p50 {self.percentile(50):6.1f} ms  "
            f"p99 {self.percentile(99):6.1f} ms"
        )
        return text + (f"  answers {self.statuses}" if self.failed() else "")


@dataclass
class Figures:
    loadgen_alone: Load
    hello: Load
    reference: Load
    redeem: Load
    validate: Load
    open_reference: Load
    open_redeem: Load
    flat: list[tuple[int, Load]]
    profiles: dict[str, Summary] = field(default_factory=dict)
    api_settings: str = ""
    compared: list[Load] = field(default_factory=list)  # validate, redeem: compare_env
    round_trips: Counts | None = None
    slow_commands: list[str] = field(default_factory=list)  # Plan.command_log_ms


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _load(
    name: str,
    url: str,
    *,
    calls: int,
    concurrency: int = 32,
    rate: float | None = None,
    body: str | None = None,
    headers: tuple[str, ...] = (),
    first: int = 0,
    watch: dict[str, int | None] | None = None,
    expect: str | None = None,
    wrap: list[str] | None = None,
) -> Load:
    """One run of the load generator (its own process); `watch`: processes whose CPU time
    is read before and after; `expect`: the status every timed call must answer."""
    argv = [sys.executable, "-m", "bench.loadgen", url, "--calls", str(calls)]
    argv += ["--concurrency", str(concurrency), "--first", str(first), "--warmup", str(WARMUP)]
    if rate is not None:
        argv += ["--rate", str(rate)]
    if body is not None:
        argv += ["--body", body]
    for h in headers:
        argv += ["--header", h]
    before = {k: _cpu_seconds(pid) for k, pid in (watch or {}).items() if pid}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "answer.json"
        argv += ["--out", str(out)]
        if wrap:  # a profiler that runs the load generator
            argv = [*wrap, "--", *argv]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=subprocess.DEVNULL if wrap else None,
            stderr=subprocess.DEVNULL if wrap else None,
        )
        await proc.wait()
        if proc.returncode != 0 or not out.exists():
            raise BenchError(f"{name}: the load generator exited {proc.returncode}")
        got = json.loads(out.read_text())
    cpu = {k: _cpu_seconds(pid) - before[k] for k, pid in (watch or {}).items() if pid}
    if expect is not None and set(got["statuses"]) != {expect}:
        raise BenchError(f"{name}: answered {got['statuses']}, expected only {expect}")
    run = Load(
        name,
        got["calls"],
        got["seconds"],
        got["latencies_ms"],
        got["statuses"],
        got["cpu_s"],
        cpu,
        [(t, ms) for t, ms in got.get("series", [])],
    )
    run.started_at = float(got.get("started_at", 0.0))
    print(run.line(), flush=True)
    return run


@contextlib.asynccontextmanager
async def _trivial_server() -> AsyncIterator[str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.trivial_server", str(port)
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        await proc.wait()


def _py_spy_argv(out: Path) -> list[str]:
    """py-spy recording raw collapsed stacks (idle samples left out) without pausing the
    process it samples."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [spy, "record", "--rate", "250", "--nonblocking", "--format", "raw", "-o", str(out)]


@contextlib.asynccontextmanager
async def _py_spy(pid: int, out: Path) -> AsyncIterator[None]:
    """py-spy sampling `pid` until the block ends."""
    spy = await asyncio.create_subprocess_exec(
        *_py_spy_argv(out),
        "--pid",
        str(pid),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(1.0)  # attached before the load starts
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        await spy.wait()


async def _prepare(container: Container, sizes: tuple[int, ...]) -> tuple[str, list[str]]:
    """The main code (per_user limit of 1, as in (d)) in TENANT, an API key of every
    tenant, and per flat size a tenant with one `unlimited` shared code and its earlier
    redemptions written directly. Returns (the key, the flat tenants)."""
    reward = await container.rewards.create(
        TENANT, RewardItemCreate(name="Points", reward_type="points", payload={"n": 1})
    )
    await _shared_code(container, TENANT, reward.item_id, CODE, "per_user")
    _, key = await container.api_keys.create("bench-r", "coupons:redeem", None)
    tenants: list[str] = []
    for size in sizes:
        tenant = f"bench-flat-{size}"
        item = await container.rewards.create(
            tenant, RewardItemCreate(name="Points", reward_type="points", payload={"n": 1})
        )
        await _shared_code(container, tenant, item.item_id, FLAT_CODE, "unlimited")
        started = now()
        await _earlier_redemptions(container, tenant, item, size)
        if size:
            print(f"  {size:,} earlier redemptions written in {now() - started:.1f} s", flush=True)
        tenants.append(tenant)
    return key, tenants


async def _shared_code(
    container: Container, tenant: str, reward_id: str, code: str, limit: str
) -> None:
    max_uses = 1 if limit == "per_user" else None
    await container.definitions.create(
        tenant,
        DefinitionCreate(
            name=f"bench {code}",
            config=CouponConfig(
                reward_item_id=reward_id,
                code_format="custom",
                custom_code=code,
                usage_limit=UsageLimit.model_validate({"limit_type": limit, "max_uses": max_uses}),
            ),
        ),
    )


async def _earlier_redemptions(
    container: Container, tenant: str, reward: RewardItem, count: int
) -> None:
    """What `count` redeems of the flat code leave once their events are sent: the
    redemptions (free slots: unlimited) and the code's timeline steps."""
    coupon = await MongoCouponRepo(container.mongo).by_code(tenant, codes.normalize(FLAT_CODE))
    if coupon is None:
        raise BenchError(f"the shared code of {tenant} is not stored")
    snapshot = coupon_view(coupon)
    actor = Actor("api_key", "bench-fill")
    t0 = datetime.now(UTC) - timedelta(days=1)
    group = f"n:{coupon.definition_id}"
    for start in range(0, count, FILL_BATCH):
        batch = [
            Redemption(
                id=str(uuid.uuid4()),
                tenant_id=tenant,
                user_id=f"earlier-{n}",
                group=group,
                state="redeemed",
                redeemed_at=t0 + timedelta(milliseconds=n),
                coupon=snapshot,
                reward=reward,
            )
            for n in range(start, min(count, start + FILL_BATCH))
        ]
        await container.mongo.redemptions.insert_many(
            [to_doc(r, free_slot(r.id), None) for r in batch], ordered=False
        )
        steps = [redeemed(r, actor).history for r in batch]
        await insert_history(container.mongo, [history_doc(s) for s in steps if s])


async def _reference_docs(settings: Settings, plan: Plan) -> None:
    """The documents the reference's `find_one_and_update` uses: one per user number."""
    col = Container(settings).mongo.db[COLLECTION]
    numbers = [*range(plan.calls), *range(OPEN_FIRST, OPEN_FIRST + _open_calls(plan))]
    ids = [*(f"u-{n}" for n in numbers), *(f"u-w{j}" for j in range(WARMUP))]
    for start in range(0, len(ids), FILL_BATCH):
        chunk = ids[start : start + FILL_BATCH]
        await col.insert_many([{"_id": i, "used": 0} for i in chunk], ordered=False)
    await col.database.client.close()


def _open_calls(plan: Plan) -> int:
    return int(plan.rate * plan.open_seconds)


def _body(code: str) -> str:
    return json.dumps({"code": code, "user_id": "u-{i}"})


async def redeem_latency_run(servers: Servers, plan: Plan, log: Path) -> Figures:
    settings = scenario_settings(servers, "r")
    container = Container(settings)
    await container.start_storage()
    try:
        key, flat_tenants = await _prepare(container, plan.flat_sizes)
        trips = await count_round_trips(container, TENANT, CODE, key)
    finally:
        await container.mongo.close()
    await _reference_docs(settings, plan)
    mongo_pid = _listener_pid(urlsplit(settings.mongodb_uri or "").port or 27017)
    c, n = plan.concurrency, plan.calls
    closed = functools.partial(_load, calls=n, concurrency=c, body=_body(CODE))
    opened = functools.partial(
        _load, calls=_open_calls(plan), rate=plan.rate, body=_body(CODE), first=OPEN_FIRST
    )

    async with _trivial_server() as url:
        alone = await _load("load generator alone (bare server)", url, calls=n * 5, concurrency=c)

    async with api_process(settings, log, module="bench.reference_app") as (base, pid):
        watch = {"server": pid, "mongodb": mongo_pid}
        hello = await closed(
            "reference: constant answer", f"{base}/ref/hello", body=None, watch=watch
        )
        reference = await closed(
            "reference: find_one_and_update", f"{base}/ref/use", watch=watch, expect="201"
        )
        open_reference = await opened(f"reference, open loop {plan.rate:.0f}/s", f"{base}/ref/use")

    env = {"PHOENIX_LOG_LEVEL": "INFO", **plan.api_env}
    auth = (f"X-API-Key: {key}",)
    commands = None if plan.command_log_ms is None else log.with_suffix(".commands.jsonl")
    if commands is not None:
        commands.unlink(missing_ok=True)
    async with api_process(settings, log, env, command_log=commands) as (base, pid):
        watch = {"server": pid, "mongodb": mongo_pid}
        api_url = f"{base}/v1/tenants/{TENANT}/coupons"
        validate = await closed(
            "API validate", f"{api_url}/validate", headers=auth, watch=watch, expect="200"
        )
        redeem = await closed(
            "API redeem", f"{api_url}/redeem", headers=auth, watch=watch, expect="201"
        )
        probe = SchedProbe({"API": pid, **({"MongoDB": mongo_pid} if mongo_pid else {})})
        async with probe.running() if commands is not None else contextlib.nullcontext(probe):
            open_redeem = await opened(
                f"API redeem, open loop {plan.rate:.0f}/s", f"{api_url}/redeem", headers=auth
            )
        flat: list[tuple[int, Load]] = []
        for size, tenant in zip(plan.flat_sizes, flat_tenants, strict=True):
            flat_run = await closed(
                f"API redeem, {size:,} earlier",
                f"{base}/v1/tenants/{tenant}/coupons/redeem",
                calls=plan.flat_calls,
                body=_body(FLAT_CODE),
                headers=auth,
                watch=watch,
                expect="201",
            )
            flat.append((size, flat_run))
        profiles: dict[str, Summary] = {}
        if plan.profile_dir is not None:
            profiles = await _profiles(plan, base, pid, auth)
    figures = Figures(
        alone, hello, reference, redeem, validate, open_reference, open_redeem, flat, profiles
    )
    figures.round_trips = trips
    if commands is not None and plan.command_log_ms is not None:
        figures.slow_commands = _slow_commands(commands, open_redeem, plan, probe)
    figures.api_settings = ", ".join(f"{k}={v}" for k, v in sorted(env.items()))
    if plan.compare_env is not None:
        figures.compared = await _compared(settings, plan, log, auth, mongo_pid)
    return figures


async def _compared(
    settings: Settings, plan: Plan, log: Path, auth: tuple[str, ...], mongo_pid: int | None
) -> list[Load]:
    """Validate and redeem through an API process with `compare_env`'s server settings."""
    assert plan.compare_env is not None
    label = ", ".join(v for _, v in sorted(plan.compare_env.items()))
    env = {"PHOENIX_LOG_LEVEL": "INFO", **plan.api_env, **plan.compare_env}
    runs: list[Load] = []
    async with api_process(settings, log, env) as (base, pid):
        api_url = f"{base}/v1/tenants/{TENANT}/coupons"
        for what, status in (("validate", "200"), ("redeem", "201")):
            run = await _load(
                f"API {what} ({label})",
                f"{api_url}/{what}",
                calls=plan.calls,
                concurrency=plan.concurrency,
                body=_body(CODE),
                headers=auth,
                first=4 * OPEN_FIRST,
                watch={"server": pid, "mongodb": mongo_pid},
                expect=status,
            )
            runs.append(run)
    return runs


async def _profiles(plan: Plan, base: str, pid: int, auth: tuple[str, ...]) -> dict[str, Summary]:
    """One more redeem run with the API process sampled, then one with the load generator
    sampled (each profiler on its own run: py-spy costs CPU on two cores)."""
    assert plan.profile_dir is not None
    plan.profile_dir.mkdir(parents=True, exist_ok=True)
    redeem = functools.partial(
        _load,
        url=f"{base}/v1/tenants/{TENANT}/coupons/redeem",
        calls=plan.calls,
        concurrency=plan.concurrency,
        body=_body(CODE),
        headers=auth,
        expect="201",
    )
    out: dict[str, Summary] = {}
    api_raw = plan.profile_dir / "api-redeem.txt"
    async with _py_spy(pid, api_raw):
        await redeem("API redeem (API profiled)", first=2 * OPEN_FIRST)
    out["API process"] = summarize(api_raw)
    gen_raw = plan.profile_dir / "loadgen-redeem.txt"
    await redeem(
        "API redeem (load generator profiled)", first=3 * OPEN_FIRST, wrap=_py_spy_argv(gen_raw)
    )
    out["load generator"] = summarize(gen_raw)
    return out


def _slow_commands(path: Path, run: Load, plan: Plan, probe: SchedProbe) -> list[str]:
    """The API's slow commands during the open loop (from 1 s before its first due time to
    1 s after its last), against its calls and what `probe` saw of the processes."""
    t0 = run.started_at
    window = command_log.between(command_log.read(path), t0 - 1, t0 + plan.open_seconds + 1)
    head = (
        f"  the API's MongoDB commands of {plan.command_log_ms:g} ms or more during the open "
        f"loop (client side, from its start; {len(window)} commands in all; log {path}):"
    )
    assert plan.command_log_ms is not None
    return [head, *command_log.slow_lines(window, t0, run.series, plan.command_log_ms, probe)]


def flat_ratio(figures: Figures) -> list[tuple[int, float, float]]:
    """Per size: its redeems/s over the rate at the smallest size, and its p50's ratio."""
    _, first = figures.flat[0]
    return [
        (size, run.rate / first.rate, run.percentile(50) / first.percentile(50))
        for size, run in figures.flat
    ]
