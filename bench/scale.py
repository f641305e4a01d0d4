"""(scale) What the service's costs do as the store grows: one database is filled to each
size in turn (0, 10,000, 100,000 coupons by default) and, at each size, the p50 of the
hot paths is measured through the services (as the API calls them) with the outbox relay
running, as in the API process:
- one redeem and one validate of a code stored last (a real redeem: a slot taken, a
  redemption stored, its `coupon.redeemed` published by the relay),
- one bulk generation of 100 codes,
- the first page (50) of a 100-code definition's codes and of a 1-coupon user's wallet,
- the event worker's time per event, in rounds of 500 matching events (bench/scale_worker.py),
  the redelivery look-up of a round's events, and one pass of the sweeps and of the expiry
  scheduler with nothing due (what a worker process runs in the background),
- the expiry scheduler's "redeemed?" check of 100 coupons (`ExpirySchedule.redeemed`, asked
  for the coupons about to get a reminder) with a redemption stored per fill coupon,
- the relay while nothing is pending: CPU ms per second of this process (which runs the
  relay and nothing else then) plus the MongoDB server's process.
The target: each p50 at most 1.5 x its value at the smallest size (bench/scale_report.py).

The store is filled through the coupon repository's `insert_unordered` (the worker's own
insert) with coupons built by the domain's `CouponFactory` and codes drawn by
`draw_and_insert`, 1,000 at a time, spread over 4 tenants, 4 definitions each, and users
of 3 coupons each: whatever the documents look like, the fill writes what the service
writes. The coupons measured (the probes) are stored after the fill at each size. Each fill
coupon then gets a redemption (one in four rolled back), written directly: copies of the
last real redemption with the coupon's id, 1,000 an insert."""

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import TENANT, BenchError, Servers, now, scenario_settings
from bench.scale_report import ScaleFigures
from bench.scale_worker import WorkerRounds
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.expiry_schedule import MongoExpirySchedule
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.codes import CodeGenerator, CodeSpec
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.services.drawing import Drawn, draw_and_insert
from phoenix_coupons.services.ports import CouponRepo
from schemas.coupons import (
    CouponConfig,
    CouponDefinition,
    DefinitionCreate,
    GenerateRequest,
    UsageLimit,
)
from schemas.redemptions import RedeemRequest
from schemas.rewards import RewardItemCreate

CHUNK = 1_000
TENANTS = (TENANT, "bench-t2", "bench-t3", "bench-t4")
DEFINITIONS_PER_TENANT = 4
COUPONS_PER_USER = 3
PAGE_CODES = 100
PAGE_LIMIT = 50  # the API's default page size
REMINDED = 100  # coupons of one "redeemed?" check
BULK = 100
CALLER = "bench-scale"
# The relay sweeps every second while idle (the default is 5 s): a window of a few seconds
# then holds several idle passes, whose cost is what grew with the store.
RELAY_POLL_S = 1.0
MIN_REPS = 3
# Calls that scan 100,000 coupons outlast the service's 10 s default (they would answer 503):
# the bench waits for them, to have a figure.
MONGODB_TIMEOUT_MS = 120_000
SETTLE_S = 3.0  # for the relay to publish what the last calls left pending

Item = tuple[CouponFactory, str, str]  # factory, issue key, user id


@dataclass
class Probes:
    """The coupons measured at one size, stored after that size's fill."""

    page_definition: str
    page_coupons: list[str]
    wallet_user: str
    validate: RedeemRequest
    redeems: list[RedeemRequest]


@dataclass
class Store:
    container: Container
    repo: CouponRepo
    fill: list[CouponFactory]  # the fill definitions, all tenants
    rewards: dict[str, str]  # tenant -> reward item id
    redeem_definition: CouponDefinition
    generate_definition: str
    worker: WorkerRounds
    server: int | None  # the MongoDB server's process (None: not ours to see)
    codegen: CodeGenerator = field(default_factory=CodeGenerator)
    filled: int = 0  # fill coupons stored so far (their number keys their issue keys)
    stored: int = 0  # every coupon stored so far
    fill_ids: list[str] = field(default_factory=list)  # the fill coupons' ids, in order
    redeemed: dict[str, bool] = field(default_factory=dict)  # coupon id -> active

    async def redeem_fill(self) -> float:
        """A redemption for each fill coupon without one (every fourth rolled back), copies
        of the last real one; returns the seconds it took."""
        started = now()
        col = self.container.mongo.redemptions
        template = await col.find_one({}, sort=[("redeemed_at", -1)])
        if template is None:
            raise BenchError("no real redemption to copy")
        done = len(self.redeemed)
        todo = self.fill_ids[done:]
        for at in range(0, len(todo), CHUNK):
            docs = []
            for n, coupon_id in enumerate(todo[at : at + CHUNK], start=done + at):
                active = n % 4 != 3
                self.redeemed[coupon_id] = active
                state = "redeemed" if active else "rolled_back"
                docs.append(
                    {**template, "_id": f"fill-{n}", "coupon_id": coupon_id, "state": state}
                )
            await col.insert_many(docs, ordered=False)
        return now() - started

    async def insert(self, items: list[Item]) -> None:
        """Through the worker's draw-insert-retry loop and the repository's insert."""
        at = datetime.now(UTC)
        drawn: Drawn[Item, object] = await draw_and_insert(
            items,
            self.codegen,
            _spec,
            lambda item, code: item[0].coupon(item[1], code, at, item[2]),
            self.repo.insert_unordered,
        )
        if drawn.left:
            raise BenchError(f"{len(drawn.left)} coupons found no free code")
        self.stored += len(drawn.placed)

    async def fill_to(self, size: int) -> float:
        """Fills until `size` coupons are stored; returns the seconds it took."""
        started = now()
        while self.stored < size:
            n = min(CHUNK, size - self.stored)
            items: list[Item] = []
            for i in range(self.filled, self.filled + n):
                factory = self.fill[i % len(self.fill)]
                user = f"fill-{i // (len(self.fill) * COUPONS_PER_USER)}"
                items.append((factory, issue_keys.event(factory.definition_id, user, str(i)), user))
            await self.insert(items)
            self.fill_ids += [issue_keys.coupon_id(key) for _, key, _ in items]
            self.filled += n
        return now() - started


def _spec(item: Item) -> CodeSpec:
    spec = item[0].spec
    if spec is None:
        raise BenchError("fill definitions have random codes")
    return spec


async def _definition(
    container: Container, tenant: str, reward: str, name: str
) -> CouponDefinition:
    """Random 10-character codes with one prefix, so each tenant's definitions share one code
    space (the bulk capacity check counts it); one use per user."""
    return await container.definitions.create(
        tenant,
        DefinitionCreate(
            name=name,
            config=CouponConfig(
                reward_item_id=reward,
                code_format="random",
                code_prefix="S",
                code_length=10,
                usage_limit=UsageLimit(limit_type="per_user", max_uses=1),
            ),
        ),
    )


async def _open_store(container: Container, server: int | None) -> Store:
    rewards: dict[str, str] = {}
    fill: list[CouponFactory] = []
    for tenant in TENANTS:
        item = await container.rewards.create(
            tenant, RewardItemCreate(name="Points", reward_type="points", payload={"n": 1})
        )
        rewards[tenant] = item.item_id
        for d in range(DEFINITIONS_PER_TENANT):
            defn = await _definition(container, tenant, item.item_id, f"fill {d}")
            fill.append(CouponFactory.of(defn, "event"))
    redeem = await _definition(container, TENANT, rewards[TENANT], "redeem")
    generate = await _definition(container, TENANT, rewards[TENANT], "generate")
    # The worker's own repository (the container keeps its repositories to its services).
    repo = MongoCouponRepo(container.mongo)
    worker = await WorkerRounds.open(container)
    return Store(container, repo, fill, rewards, redeem, generate.id, worker, server)


async def _store_probes(store: Store, size: int, redeems: int) -> Probes:
    """A 100-code definition, a 1-coupon wallet, a code to validate and the codes to redeem,
    stored in that order after the fill (the redeemed codes last)."""
    page = await _definition(store.container, TENANT, store.rewards[TENANT], f"page {size}")
    paged = CouponFactory.of(page, "event")
    owned = CouponFactory.of(store.redeem_definition, "event")
    users = [f"page-{size}-{j}" for j in range(PAGE_CODES)]
    items: list[Item] = [(paged, issue_keys.event(page.id, u, "probe"), u) for u in users]
    wallet = f"wallet-{size}"
    probe_users = [wallet, f"validate-{size}", *[f"redeem-{size}-{j}" for j in range(redeems)]]
    items += [(owned, issue_keys.event(owned.definition_id, u, "probe"), u) for u in probe_users]
    await store.insert(items)
    codes = {
        c.user_id: c.code
        for c in (await store.repo.by_issue_keys([k for _, k, _ in items])).values()
    }
    requests = [RedeemRequest(code=codes[u], user_id=u) for u in probe_users[1:]]
    page_ids = [issue_keys.coupon_id(k) for _, k, _ in items[:PAGE_CODES]]
    return Probes(page.id, page_ids, wallet, requests[0], requests[1:])


async def _timed(
    reps: int, budget_s: float, warm_up: bool, call: Callable[[int], Awaitable[None]]
) -> list[float]:
    """Sequential calls, milliseconds: `reps` of them, or fewer once `budget_s` is spent
    (slow calls at large sizes): `MIN_REPS` at least, unless 3 x `budget_s` is spent. A
    warm-up call first, not kept."""
    if warm_up:
        await call(reps)
    samples: list[float] = []
    started = now()
    for i in range(reps):
        spent = now() - started
        if (len(samples) >= MIN_REPS and spent > budget_s) or spent > 3 * budget_s:
            break
        t = now()
        await call(i)
        samples.append((now() - t) * 1000)
    return samples


def _listener_pid(port: int) -> int | None:
    """The process listening on this local TCP port (the embedded MongoDB), if it is ours
    to see; None otherwise (a remote server: its CPU is then not counted)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def _cpu_seconds(pid: int | None) -> float:
    """CPU time of `pid` (this process when None), all its threads. From each thread's
    `schedstat` (nanoseconds): `stat`'s user and system times count clock ticks of 10 ms,
    as coarse as the few milliseconds per second an idle relay costs in a 3 s window."""
    if pid is None:
        return time.process_time()
    if not Path(f"/proc/{pid}/schedstat").exists():  # a kernel without schedstats
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except OSError:  # a thread that ended while it was listed
            continue
    return total / 1e9


@dataclass(frozen=True)
class Plan:
    """How much to measure at each size."""

    sizes: list[int]
    reps: int = 9  # timed calls per operation and size
    budget_s: float = 20.0  # per operation and size: fewer calls (MIN_REPS at least) after
    relay_windows: int = 3
    relay_seconds: float = 3.0


async def _idle_cpu(plan: Plan, server: int | None) -> list[float]:
    """CPU ms per second of this process and the MongoDB server while nothing is pending,
    over `relay_windows` windows of `relay_seconds`."""
    await asyncio.sleep(SETTLE_S)
    samples = []
    for _ in range(plan.relay_windows):
        ours, theirs, started = _cpu_seconds(None), server and _cpu_seconds(server), now()
        await asyncio.sleep(plan.relay_seconds)
        used = _cpu_seconds(None) - ours
        if server is not None:
            used += _cpu_seconds(server) - (theirs or 0.0)
        samples.append(used * 1000 / (now() - started))
    return samples


async def _measure(
    store: Store,
    figures: ScaleFigures,
    plan: Plan,
    size: int,
    probes: Probes,
    say: Callable[[str], None],
) -> None:
    c = store.container

    async def validate(_: int) -> None:
        answer = await c.redemptions.validate(TENANT, probes.validate, CALLER)
        if not answer.valid:
            raise BenchError(f"validate answered {answer.reason}")

    async def definition_page(_: int) -> None:
        page = await c.coupon_queries.definition_codes(
            TENANT, probes.page_definition, None, PAGE_LIMIT, 0
        )
        if page.total != PAGE_CODES or len(page.coupons) != PAGE_LIMIT:
            raise BenchError(f"definition page: {len(page.coupons)} of {page.total}")

    async def wallet_page(_: int) -> None:
        wallet = await c.coupon_queries.wallet(TENANT, probes.wallet_user, PAGE_LIMIT, 0)
        if wallet.total != 1 or len(wallet.coupons) != 1:
            raise BenchError(f"wallet: {len(wallet.coupons)} of {wallet.total}")

    async def generate(i: int) -> None:
        users = [f"gen-{size}-{i}-{k}" for k in range(BULK)]
        answer = await c.generation.generate(
            TENANT, store.generate_definition, GenerateRequest(user_ids=users)
        )
        if answer.generated != BULK:
            raise BenchError(f"generated {answer.generated} of {BULK}")
        store.stored += BULK

    redeemed_probes: set[str] = set()

    async def redeem(i: int) -> None:
        view, new = await c.redemptions.redeem(TENANT, probes.redeems[i], CALLER)
        if not new:
            raise BenchError("a redeem was answered as a replay")
        redeemed_probes.add(view.coupon.id)

    async def sweeps(_: int) -> None:
        await c.sweeper.sweep()

    async def expiry_pass(_: int) -> None:
        swept = await c.expiry.sweep()
        if swept.claimed:
            raise BenchError(f"the expiry scheduler found {swept.claimed} coupons due")

    async def redelivery(_: int) -> None:
        await store.worker.redelivery_lookup()

    wallet_coupon = issue_keys.coupon_id(
        issue_keys.event(store.redeem_definition.id, probes.wallet_user, "probe")
    )

    schedule = MongoExpirySchedule(c.mongo)

    async def expiry_redeemed(i: int) -> None:
        """The coupons redeemed by `redeem` above, fill coupons (a redemption each, some
        rolled back) and the page's coupons (none)."""
        picked = sorted(redeemed_probes)
        step = max(1, len(store.fill_ids) // (REMINDED // 2))
        picked += store.fill_ids[i % step :: step][: REMINDED // 2]
        picked += probes.page_coupons[: REMINDED - len(picked)]
        expected = {p for p in picked if p in redeemed_probes or store.redeemed.get(p)}
        found = await schedule.redeemed(picked)
        if found != expected:
            raise BenchError(f"redeemed? answered {len(found)} coupons, {len(expected)} expected")

    async def by_id(_: int) -> None:  # the floor: what the machine's load alone does
        if await c.mongo.coupons.find_one({"_id": wallet_coupon}, {"_id": 1}) is None:
            raise BenchError("the wallet's coupon is missing")

    warm_up = size == plan.sizes[0]  # the first calls of a path set up its clients
    before = store.worker.issued
    figures.add("worker_event", size, await store.worker.measure(plan.reps))
    store.stored += store.worker.issued - before  # a coupon per event
    for op, call in (
        ("redelivery_lookup", redelivery),
        ("sweeps", sweeps),
        ("expiry_pass", expiry_pass),
        ("validate", validate),
        ("definition_page", definition_page),
        ("wallet_page", wallet_page),
        ("generate", generate),
        ("redeem", redeem),
        ("expiry_redeemed", expiry_redeemed),
        ("by_id", by_id),
    ):
        if op == "expiry_redeemed":
            say(f"    redemptions of the fill written in {await store.redeem_fill():.1f} s")
        figures.add(op, size, await _timed(plan.reps, plan.budget_s, warm_up, call))
    # The relay running, then stopped: the difference is the relay's own.
    figures.add("relay_idle", size, await _idle_cpu(plan, store.server))
    await store.container.relay.stop()
    figures.add("idle_without_relay", size, await _idle_cpu(plan, store.server))
    store.container.relay.start()


async def scale_run(servers: Servers, plan: Plan, say: Callable[[str], None]) -> ScaleFigures:
    settings = scenario_settings(servers, "scale").model_copy(
        update={"outbox_poll_seconds": RELAY_POLL_S, "mongodb_timeout_ms": MONGODB_TIMEOUT_MS}
    )
    port = urlsplit(servers.mongodb.split(",")[0]).port
    server = _listener_pid(port) if port is not None else None
    say(
        f"  MongoDB server process: {server or 'not found (its CPU is not counted)'}; "
        f"{plan.reps} timed calls per operation and size ({MIN_REPS} at least, fewer once "
        f"{plan.budget_s:.0f} s are spent; a warm-up call at {plan.sizes[0]:,}), idle CPU: "
        f"{plan.relay_windows} windows of {plan.relay_seconds:.0f} s, the relay polling every "
        f"{RELAY_POLL_S:.0f} s"
    )
    container = Container(settings)
    await container.start()
    figures = ScaleFigures(sizes=plan.sizes)
    store: Store | None = None
    try:
        store = await _open_store(container, server)
        for size in plan.sizes:
            if size < store.stored:
                raise BenchError(f"sizes must grow: {size} after {store.stored} stored")
            seconds = await store.fill_to(size)
            probes = await _store_probes(store, size, plan.reps + 1)
            figures.stored[size] = store.stored
            say(f"  at {size:,}: {store.stored:,} coupons stored (fill {seconds:.1f} s, not timed)")
            started = now()
            await _measure(store, figures, plan, size, probes, say)
            say(
                "    p50 "
                + ", ".join(
                    f"{op} {figures.p50(op, size):.1f} (x{len(by_size[size])})"
                    for op, by_size in figures.samples.items()
                )
                + f" ({now() - started:.0f} s)"
            )
    finally:
        if store is not None:
            await store.worker.close()
        await container.stop()
    return figures
