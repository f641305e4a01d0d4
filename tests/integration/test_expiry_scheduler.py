"""The expiry scheduler on the embedded servers, with a settable clock: reminders and expiry
events published once each (read back from the topic) with their timeline steps, none for
revoked, fully used or paused coupons, and each event once with two schedulers racing and
schedulers crashing between their writes."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from phoenix_coupons.adapters.coupon_repo import DUE, MongoCouponRepo
from phoenix_coupons.adapters.definition_repo import MongoDefinitionRepo
from phoenix_coupons.adapters.expiry_schedule import MongoExpirySchedule
from phoenix_coupons.adapters.expiry_scheduler import ExpiryMetrics, ExpiryScheduler
from phoenix_coupons.adapters.mongo_schema import CODE_HISTORY, OUTBOX
from phoenix_coupons.adapters.outbox import MongoOutbox, sweep_outbox
from phoenix_coupons.adapters.redemption_repo import MongoRedemptionRepo
from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.outbox import OutboxEntry
from phoenix_coupons.services.expiry import ExpiryService
from phoenix_coupons.settings import Settings
from tests.conftest import ALL
from tests.fakes import FakeClock
from tests.support import records_to_end, wait_until

Json = dict[str, Any]
T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
LEASE = timedelta(seconds=60)
GRACE = timedelta(seconds=120)
WEEK_3D_1D: Json = {"valid_for": "P7D", "remind_before": ["PT24H", "P3D"]}


@dataclass
class Env:
    container: Container
    client: httpx.AsyncClient
    clock: FakeClock
    settings: Settings
    tenant: str
    headers: dict[str, str]
    reward_id: str

    @property
    def base(self) -> str:
        return f"/v1/tenants/{self.tenant}"

    async def define(self, limit: Json | None = None, **config: Any) -> str:
        body = {
            "name": "expiring promo",
            "config": {
                "reward_item_id": self.reward_id,
                "code_format": "random",
                "code_prefix": "X-",
                "usage_limit": limit or {"limit_type": "per_user", "max_uses": 1},
                **config,
            },
        }
        response = await self.client.post(f"{self.base}/coupons", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def generate(self, definition_id: str, users: list[str]) -> dict[str, str]:
        response = await self.client.post(
            f"{self.base}/coupons/{definition_id}/generate",
            json={"user_ids": users},
            headers=self.headers,
        )
        assert response.status_code == 201, response.text
        return {c["user_id"]: c["code"] for c in response.json()["coupons"]}

    async def call(self, method: str, path: str, body: Json | None = None) -> Json:
        response = await self.client.request(
            method, self.base + path, json=body, headers=self.headers
        )
        assert response.status_code < 300, response.text
        return response.json() if response.content else {}

    def service(self, **overrides: Any) -> ExpiryService:
        """A scheduler of its own (a replica) on the same storage and clock."""
        c = self.container
        args: dict[str, Any] = {
            "schedule": MongoExpirySchedule(c.mongo),
            "definitions": MongoDefinitionRepo(c.mongo, MongoCouponRepo(c.mongo)),
            "redemptions": MongoRedemptionRepo(c.mongo),
            "outbox": MongoOutbox(c.mongo),
            "clock": self.clock,
            "on_ready": c.relay.wake,
            "batch_size": c.settings.expiry_batch_size,
            "lease": LEASE,
        }
        args.update(overrides)
        return ExpiryService(**args)

    async def drain(self, service: ExpiryService | None = None) -> int:
        """Passes until nothing is due: how many coupons were claimed."""
        claimed = 0
        while True:
            result = await (service or self.container.expiry).sweep()
            claimed += result.claimed
            if result.due < (service or self.container.expiry).batch_size:
                return claimed

    async def published(self) -> list[Json]:
        """Every expiry event of the tenant on the topic, once the outbox sent them all."""
        outbox = self.container.mongo.db[OUTBOX.name]
        await wait_until(lambda: _none_left(outbox, self.tenant))
        assert self.settings.kafka_bootstrap_servers
        return await records_to_end(
            self.settings.kafka_bootstrap_servers,
            self.settings.topic_coupons_expiry,
            lambda e: e.get("tenant_id") == self.tenant,
        )


async def _none_left(outbox: Any, tenant: str) -> bool:
    return await outbox.find_one({"tenant_id": tenant}) is None


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    """A container of its own (own database: the scheduler's query spans every tenant) on a
    settable clock; the sweeper left to the tests (they run the outbox sweep themselves)."""
    clock = FakeClock(T0)
    own = settings.model_copy(
        update={
            "mongodb_database": f"expiry_{uuid.uuid4().hex[:8]}",
            "sweep_seconds": 3600.0,
            "expiry_batch_size": 40,
        }
    )
    container = Container(own, clock=clock)
    await container.start()
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    _, plaintext = await container.api_keys.create("expiry", ALL, tenant)
    headers = {"X-API-Key": plaintext}
    app = create_app(container, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            reward = await client.post(
                f"/v1/tenants/{tenant}/rewards",
                headers=headers,
                json={"name": "Bonus", "reward_type": "points", "payload": {"amount": 5}},
            )
            assert reward.status_code == 201, reward.text
            yield Env(container, client, clock, own, tenant, headers, reward.json()["item_id"])
    finally:
        await container.mongo.client.drop_database(own.mongodb_database)
        await container.stop()


def by_kind(events: list[Json]) -> dict[tuple[str, str | None], list[str]]:
    """(event_type, remind_before) -> user ids, sorted."""
    out: dict[tuple[str, str | None], list[str]] = {}
    for e in events:
        out.setdefault((e["event_type"], e.get("remind_before")), []).append(e["user_id"])
    return {k: sorted(v) for k, v in out.items()}


async def test_reminders_then_the_expiry_each_published_once_with_their_timeline(
    env: Env,
) -> None:
    definition = await env.define(**WEEK_3D_1D)
    codes = await env.generate(definition, ["ann", "bob"])
    stored = await env.container.mongo.coupons.find_one({"code": codes["ann"]})
    assert stored is not None
    # valid_for coupons: the first step at issued_at + valid_for - the longest lead.
    assert stored[DUE] == int((T0 + 4 * DAY).timestamp() * 1000)

    env.clock.now = T0 + 4 * DAY - timedelta(seconds=1)
    assert await env.drain() == 0  # nothing before its time
    env.clock.now = T0 + 4 * DAY + timedelta(seconds=10)
    assert await env.drain() == 2
    assert await env.drain() == 0  # claimed and advanced: not due again
    env.clock.now = T0 + 6 * DAY
    assert await env.drain() == 2
    env.clock.now = T0 + 7 * DAY
    assert await env.drain() == 2
    env.clock.now = T0 + 30 * DAY
    assert await env.drain() == 0  # no steps left: no due time

    events = await env.published()
    assert by_kind(events) == {
        ("coupon.expiring", "P3D"): ["ann", "bob"],
        ("coupon.expiring", "PT24H"): ["ann", "bob"],
        ("coupon.expired", None): ["ann", "bob"],
    }
    ann = [e for e in events if e["user_id"] == "ann"]
    coupon_id = stored["_id"]
    assert {e["event_id"] for e in ann} == {
        event_id("coupon.expiring", f"{coupon_id}:P3D"),
        event_id("coupon.expiring", f"{coupon_id}:PT24H"),
        event_id("coupon.expired", coupon_id),
    }
    for e in ann:
        assert e["_key"] == "ann"
        assert (e["coupon_id"], e["code"], e["definition_id"]) == (
            coupon_id,
            codes["ann"],
            definition,
        )
        assert datetime.fromisoformat(e["expires_at"]) == T0 + 7 * DAY
    after = await env.container.mongo.coupons.find_one({"_id": coupon_id})
    assert after is not None and DUE not in after

    history = env.container.mongo.db[CODE_HISTORY.name]
    steps = [
        (d["kind"], d["details"].get("remind_before"), d["actor"])
        async for d in history.find({"code_norm": codes["ann"].upper()}).sort("_id", 1)
    ]
    scheduler = {"kind": "scheduler", "id": None}
    assert steps == [
        ("expiring", "P3D", scheduler),
        ("expiring", "PT24H", scheduler),
        ("expired", None, scheduler),
    ]


async def test_none_for_revoked_fully_used_or_paused_coupons_reminders_once_rolled_back(
    env: Env,
) -> None:
    active = await env.define(**WEEK_3D_1D)
    codes = await env.generate(active, ["kept", "revoked", "used", "twice"])
    two_uses = await env.define({"limit_type": "per_user", "max_uses": 2}, **WEEK_3D_1D)
    codes.update(await env.generate(two_uses, ["half", "back"]))
    kept = await env.define(
        {"limit_type": "per_user", "max_uses": 2}, rollback_restores_use=False, **WEEK_3D_1D
    )
    codes.update(await env.generate(kept, ["kept_use"]))
    paused = await env.define(**WEEK_3D_1D)
    codes.update(await env.generate(paused, ["paused"]))
    await env.call("POST", f"/codes/{codes['revoked']}/revoke")
    redeemed = {}
    for user in ("used", "half", "back", "kept_use"):
        body = {"code": codes[user], "user_id": user}
        redeemed[user] = await env.call("POST", "/coupons/redeem", body)
    # Rolled back (the use given back, or kept): no longer redeemed, so reminded again.
    for user in ("back", "kept_use"):
        await env.call("POST", f"/coupons/redemptions/{redeemed[user]['redemption_id']}/rollback")
    await env.call("PUT", f"/coupons/{paused}/status", {"status": "paused"})

    for at in (4, 6, 7):
        env.clock.now = T0 + at * DAY
        await env.drain()
    events = await env.published()
    assert by_kind(events) == {
        ("coupon.expiring", "P3D"): ["back", "kept", "kept_use", "twice"],
        ("coupon.expiring", "PT24H"): ["back", "kept", "kept_use", "twice"],
        # Redeemed once of two uses: no reminders, but it expired with a use left.
        ("coupon.expired", None): ["back", "half", "kept", "kept_use", "twice"],
    }
    left = await env.container.mongo.coupons.find_one({DUE: {"$gte": 0}})
    assert left is None  # every coupon's schedule ended


class Crash(Exception):
    pass


class CrashingOutbox(MongoOutbox):
    """Dies before readying what it prepared: a scheduler killed after its advance."""

    async def ready(self, entries: Any) -> None:
        raise Crash("killed before ready")


class CrashingSchedule(MongoExpirySchedule):
    """Dies before advancing the coupons it claimed: a scheduler killed after its prepare."""

    async def advance(self, attempt: str, changes: Any) -> set[str]:
        raise Crash("killed before advance")


async def test_each_event_once_with_schedulers_racing_and_crashing(env: Env) -> None:
    """Two schedulers race over the same due coupons; two more die mid-pass, one after
    preparing its entries (before marking the coupons), one after marking them (before
    readying the entries). Once the leases end and the outbox sweep has run, every step of
    every coupon is on the topic exactly once."""
    users = [f"u{i:03d}" for i in range(120)]
    definition = await env.define(**WEEK_3D_1D)
    await env.generate(definition, users)
    mongo = env.container.mongo
    for day in (4, 6, 7):
        env.clock.now = T0 + day * DAY
        killed_early = env.service(schedule=CrashingSchedule(mongo), batch_size=25)
        killed_late = env.service(outbox=CrashingOutbox(mongo), batch_size=25)
        for dying in (killed_early, killed_late):
            with pytest.raises(Crash):
                await dying.sweep()
        # Two replicas race over what is left; the dead ones' coupons wait for their lease.
        first, second = env.service(batch_size=15), env.service(batch_size=10)
        raced = await asyncio.gather(env.drain(first), env.drain(second))
        assert sum(raced) == len(users) - 50  # each coupon claimed by one of them
        # The sweep: the 25 entries of the coupons marked readied, the 25 others dropped ...
        env.clock.advance(seconds=(GRACE + timedelta(seconds=1)).total_seconds())
        assert await sweep_outbox(mongo, env.clock(), GRACE) == 50
        # ... and the 25 coupons whose claims died are taken over once their lease ends.
        env.clock.advance(seconds=LEASE.total_seconds())
        assert sum(await asyncio.gather(env.drain(first), env.drain(second))) == 25
        assert await sweep_outbox(mongo, env.clock() + GRACE * 2, GRACE) == 0

    events = await env.published()
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event published twice"
    found = by_kind(events)
    assert found == {
        ("coupon.expiring", "P3D"): users,
        ("coupon.expiring", "PT24H"): users,
        ("coupon.expired", None): users,
    }


async def test_an_attempt_that_lost_its_claim_publishes_nothing(env: Env) -> None:
    """An attempt stalled past its lease before preparing its entries: another scheduler took
    the coupon over, published the event and the relay deleted its entry. The late attempt's
    entry (the same id) is then prepared anew, its advance finds the claim gone, and the
    sweep drops the entry (the coupon records the winner's mark, not its own): the event is
    not published a second time."""
    definition = await env.define(expires_at=(T0 + 10 * DAY).isoformat())
    await env.generate(definition, ["slow"])
    env.clock.now = T0 + 10 * DAY
    mongo = env.container.mongo
    stalled_at, go_on = asyncio.Event(), asyncio.Event()

    class Stalling(MongoOutbox):
        async def prepare(self, entries: Sequence[OutboxEntry]) -> None:
            stalled_at.set()
            await go_on.wait()
            await super().prepare(entries)

    stalled = env.service(outbox=Stalling(mongo))
    task = asyncio.create_task(stalled.sweep())
    await stalled_at.wait()
    env.clock.advance(seconds=LEASE.total_seconds() + 1)
    assert (await env.container.expiry.sweep()).sent == {"coupon.expired": 1}
    assert len(await env.published()) == 1  # sent, and its entry deleted
    go_on.set()
    assert (await task).sent == {}  # lost its claim: readied nothing
    assert await mongo.db[OUTBOX.name].count_documents({"tenant_id": env.tenant}) == 1
    env.clock.advance(seconds=(GRACE * 2).total_seconds())
    assert await sweep_outbox(mongo, env.clock(), GRACE) == 1
    events = await env.published()
    assert [e["event_type"] for e in events] == ["coupon.expired"]


async def test_an_expiry_moved_earlier_or_set_later_brings_the_steps_forward(env: Env) -> None:
    """A definition update that moves its expiry earlier, or gives it one, plans its coupons
    again at once: their reminders and expiry follow the new expiry, not the old due time."""
    moved = await env.define(expires_at=(T0 + 10 * DAY).isoformat(), remind_before=["P1D"])
    codes = await env.generate(moved, ["moved"])
    endless = await env.define()
    codes.update(await env.generate(endless, ["endless"]))
    coupons = env.container.mongo.coupons
    assert (await coupons.find_one({"code": codes["endless"]}) or {}).get(DUE) is None

    env.clock.now = T0 + DAY
    new_end = (T0 + 5 * DAY).isoformat()
    await env.call("PUT", f"/coupons/{moved}", {"config": {"expires_at": new_end}})
    config = {"expires_at": new_end, "remind_before": ["P1D"]}
    await env.call("PUT", f"/coupons/{endless}", {"config": config})
    assert await env.drain() == 2  # planned again now: nothing due yet, rescheduled
    for day in (4, 5):
        env.clock.now = T0 + day * DAY
        assert await env.drain() == 2
    events = await env.published()
    assert by_kind(events) == {
        ("coupon.expiring", "P1D"): ["endless", "moved"],
        ("coupon.expired", None): ["endless", "moved"],
    }
    assert {datetime.fromisoformat(e["expires_at"]) for e in events} == {T0 + 5 * DAY}


async def test_the_scheduler_loop_publishes_within_its_interval_and_reports_its_lag(
    env: Env,
) -> None:
    definition = await env.define(expires_at=(T0 + DAY).isoformat())
    await env.generate(definition, [f"u{i}" for i in range(45)])  # more than one batch
    metrics = ExpiryMetrics(CollectorRegistry())
    loop = ExpiryScheduler(env.container.expiry, 0.05, metrics)
    loop.start()
    try:
        env.clock.now = T0 + DAY + timedelta(seconds=90)
        expired = metrics.events.labels("coupon.expired")
        await wait_until(lambda: expired._value.get() == 45)
        assert metrics.claimed._value.get() == 45
        await wait_until(lambda: metrics.lag._value.get() == 0)
    finally:
        await loop.stop()
    assert not loop.running
    assert len(await env.published()) == 45


@pytest.mark.parametrize("enabled", [True, False])
async def test_worker_processes_run_the_scheduler_unless_turned_off(
    settings: Settings, enabled: bool
) -> None:
    own = settings.model_copy(update={"expiry_scheduler": enabled})
    container = Container(own)
    app = create_app(container, worker=container.worker())  # as `phoenix-coupons run`
    async with app.router.lifespan_context(app):
        assert container.scheduler.running is enabled
    assert not container.scheduler.running
    api_only = Container(settings)  # `phoenix-coupons api`
    api = create_app(api_only)
    async with api.router.lifespan_context(api):
        assert not api_only.scheduler.running
