"""Bundles, one outbox entry for the `coupon.issued` of many coupons (a generation job's
chunk), against the real wire servers: the relay announces each coupon stored once, built
from the coupon as stored, as a single entry would; the sweep readies a crashed writer's
bundle naming only the coupons that came; a coupon whose record can never be sent is set
aside alone; a job that dies between its insert and its ready leaves no coupon unannounced,
and its resumed run announces each again under the same event id."""

import contextlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from phoenix_coupons.adapters import outbox_relay
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.kafka import make_producer
from phoenix_coupons.adapters.mongo_schema import OUTBOX
from phoenix_coupons.adapters.outbox import MongoOutbox, entry_doc, sweep_outbox
from phoenix_coupons.adapters.outbox_relay import OutboxRelay
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.domain.delivery import RecordId
from phoenix_coupons.domain.jobs import Row, issue_key
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.outbox import IssuedBundle, issued
from phoenix_coupons.services.job_input import JobInput
from phoenix_coupons.services.job_run import JobRun
from phoenix_coupons.settings import Settings
from tests.integration import test_outbox_relay
from tests.integration.test_generation import create_definition
from tests.integration.test_generation_jobs import small_chunks
from tests.integration.test_outbox_relay import (
    Outbox,
    announced,
    new_coupons,
    oversized,
    small_producer,
)
from tests.support import read_events, wait_until

Json = dict[str, Any]
# The relay tests' fixture, as `relay_outbox`: a database and a topic of its own.
relay_outbox = test_outbox_relay.outbox


def bundle_of(coupons: list[Coupon], extra: tuple[str, ...] = ()) -> IssuedBundle:
    ids = tuple(c.id for c in coupons) + extra
    return IssuedBundle(f"bundle-{ids[0]}", coupons[0].tenant_id, ids, utc_now())


async def test_a_bundle_announces_each_stored_coupon_once_as_its_own_entry_would(
    relay_outbox: Outbox,
) -> None:
    coupons = new_coupons(30)
    never = issue_keys.coupon_id("never-stored")
    bundle = bundle_of(coupons, (never,))
    box = MongoOutbox(relay_outbox.mongo)
    await box.prepare_issued(bundle)
    assert await MongoCouponRepo(relay_outbox.mongo).insert_unordered(coupons) == []
    await box.ready_issued(bundle.stored(coupons))
    [doc] = await relay_outbox.entries.find().to_list()
    assert (doc["state"], doc["size"]) == ("ready", 30), "named: the coupons stored"

    relay_outbox.relay(batch_size=100).start()
    await wait_until(relay_outbox.all_announced, deadline_s=10)
    events = await relay_outbox.events()
    assert announced(events) == Counter({c.id: 1 for c in coupons})
    by_id = {e["coupon_id"]: e for e in events}
    for c in coupons:
        single = issued(c).event
        got = {k: v for k, v in by_id[c.id].items() if not k.startswith("_")}
        assert got == single.model_dump(mode="json"), "the event a single entry sends"
        assert by_id[c.id]["_key"] == c.user_id
    assert relay_outbox.sample("phoenix_outbox_published_total", source="coupon.issued") == 30


async def store_bundles(
    into: Outbox, relay: OutboxRelay, batches: list[list[Coupon]], handed: list[bool]
) -> None:
    """Each batch stored under a bundle of its own, as a job chunk is: readied holding its
    coupons (handed to `relay`, the writer's process's) or naming them only."""
    box, repo = MongoOutbox(into.mongo, relay.hand), MongoCouponRepo(into.mongo)
    for batch, hand in zip(batches, handed, strict=True):
        bundle = bundle_of(batch)
        await box.prepare_issued(bundle)
        await repo.insert_unordered(batch)
        await box.ready_issued(bundle.stored(batch) if hand else bundle)


async def test_a_bundle_handed_to_the_relay_is_announced_without_reading_its_coupons(
    relay_outbox: Outbox,
) -> None:
    """Its writer hands the relay of its process the coupons it stored: the relay sends those,
    as stored, even once they are gone from the collection (it reads none back); a bundle
    handed to another relay is read as any other."""
    coupons, others = new_coupons(12), new_coupons(5)
    relay = relay_outbox.relay(batch_size=100)
    await store_bundles(relay_outbox, relay, [coupons, others], handed=[True, False])
    gone = [c.id for c in coupons]
    await relay_outbox.mongo.coupons.delete_many({"_id": {"$in": gone}})
    relay.start()
    await wait_until(relay_outbox.all_announced, deadline_s=10)
    events = await relay_outbox.events()
    assert announced(events) == Counter({c.id: 1 for c in coupons + others})
    by_id = {e["coupon_id"]: e for e in events}
    for c in coupons:
        got = {k: v for k, v in by_id[c.id].items() if not k.startswith("_")}
        assert got == issued(c).event.model_dump(mode="json")


async def test_a_relay_holds_at_most_so_many_handed_coupons_dropping_the_oldest_first(
    relay_outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound the oldest bundle's coupons are dropped: that bundle is read back (here
    its coupons are gone from the collection: nothing to announce), the newer sent as held."""
    monkeypatch.setattr(outbox_relay, "HANDED_MAX", 10)
    older, newer = new_coupons(6), new_coupons(6)
    relay = relay_outbox.relay(batch_size=100)
    await store_bundles(relay_outbox, relay, [older, newer], handed=[True, True])
    await relay_outbox.mongo.coupons.delete_many({})
    assert await relay.publish_pending() == 6
    assert announced(await relay_outbox.events()) == Counter({c.id: 1 for c in newer})
    assert await relay_outbox.entries.count_documents({}) == 0, "both bundles settled"


async def test_a_relay_batch_takes_bundles_up_to_its_size_in_events(relay_outbox: Outbox) -> None:
    first, second = new_coupons(8), new_coupons(8)
    box, repo = MongoOutbox(relay_outbox.mongo), MongoCouponRepo(relay_outbox.mongo)
    for coupons in (first, second):
        bundle = bundle_of(coupons)
        await box.prepare_issued(bundle)
        await repo.insert_unordered(coupons)
        await box.ready_issued(bundle)
    relay = relay_outbox.relay(batch_size=10)
    assert await relay.publish_pending() == 8, "the second bundle would pass the batch size"
    assert await relay.publish_pending() == 8
    assert await relay.publish_pending() == 0
    assert announced(await relay_outbox.events()) == Counter({c.id: 1 for c in first + second})


async def test_a_batch_cut_short_by_a_bundle_is_followed_at_once(relay_outbox: Outbox) -> None:
    """One entry, then a bundle that would pass the batch size: two rounds, the second
    without waiting for the next poll (30 s here)."""
    [single] = new_coupons(1)
    await relay_outbox.store([single])
    coupons = new_coupons(10)
    bundle = bundle_of(coupons)
    box = MongoOutbox(relay_outbox.mongo)
    await box.prepare_issued(bundle)
    await MongoCouponRepo(relay_outbox.mongo).insert_unordered(coupons)
    await box.ready_issued(bundle)
    relay = OutboxRelay(
        relay_outbox.mongo,
        lambda: make_producer(relay_outbox.bootstrap),
        {"coupon.issued": relay_outbox.topic},
        utc_now,
        batch_size=10,
        poll_seconds=30,
        metrics=relay_outbox.metrics,
    )
    relay_outbox.relays.append(relay)
    relay.start()
    await wait_until(relay_outbox.all_announced, deadline_s=5)
    assert announced(await relay_outbox.events()) == Counter({c.id: 1 for c in [single, *coupons]})


async def test_the_sweep_readies_a_crashed_bundle_naming_the_coupons_that_came(
    relay_outbox: Outbox,
) -> None:
    came, never = new_coupons(3), new_coupons(2)
    box = MongoOutbox(relay_outbox.mongo)
    partly, nothing = bundle_of(came + never), bundle_of(never)
    await box.prepare_issued(partly)
    await box.prepare_issued(nothing)
    await MongoCouponRepo(relay_outbox.mongo).insert_unordered(came)
    now, grace = utc_now(), timedelta(minutes=2)
    assert await sweep_outbox(relay_outbox.mongo, now, grace) == 0, "within the grace: left alone"
    assert await sweep_outbox(relay_outbox.mongo, now + timedelta(minutes=3), grace) == 2
    left = await relay_outbox.entries.find().to_list()
    assert [(d["_id"], d["state"], d["size"]) for d in left] == [(partly.id, "ready", 3)]
    assert left[0]["subject"]["bundle"] == [c.id for c in came]
    relay_outbox.relay().start()
    await wait_until(relay_outbox.all_announced, deadline_s=10)
    assert announced(await relay_outbox.events()) == Counter({c.id: 1 for c in came})


async def test_a_writer_that_outlived_the_grace_announces_its_coupons_again(
    relay_outbox: Outbox,
) -> None:
    """The sweep readied its bundle naming the coupons stored by then; the writer's ready
    finds it settled and announces every coupon it stored in an entry of its own."""
    early, late = new_coupons(3), new_coupons(2)
    box, repo = MongoOutbox(relay_outbox.mongo), MongoCouponRepo(relay_outbox.mongo)
    bundle = bundle_of(early + late)
    await box.prepare_issued(bundle)
    await repo.insert_unordered(early)
    now, grace = utc_now(), timedelta(minutes=2)
    assert await sweep_outbox(relay_outbox.mongo, now + timedelta(minutes=3), grace) == 1
    await repo.insert_unordered(late)
    await box.ready_issued(bundle)
    left = await relay_outbox.entries.find({}, {"state": 1, "size": 1}).sort("_id").to_list()
    assert left == [
        {"_id": bundle.id, "state": "ready", "size": 3},
        {"_id": f"{bundle.id}:late", "state": "ready", "size": 5},
    ]
    relay_outbox.relay().start()
    await wait_until(relay_outbox.all_announced, deadline_s=10)
    counts = announced(await relay_outbox.events())
    assert counts == Counter({**{c.id: 2 for c in early}, **{c.id: 1 for c in late}})


async def test_a_coupon_of_a_bundle_that_can_never_be_sent_is_set_aside_alone(
    relay_outbox: Outbox,
) -> None:
    tenant = f"t-{relay_outbox.topic[-10:]}"
    big = oversized(new_coupons(1, tenant=tenant, prefix="BIG")[0])
    others = new_coupons(20, tenant=tenant)
    bundle = bundle_of([big, *others])
    box = MongoOutbox(relay_outbox.mongo)
    await box.prepare_issued(bundle)
    await MongoCouponRepo(relay_outbox.mongo).insert_unordered([big, *others])
    await box.ready_issued(bundle)
    relay_outbox.relay_with(small_producer(relay_outbox.bootstrap), batch_size=100).start()
    await wait_until(relay_outbox.all_announced, deadline_s=10)
    assert announced(await relay_outbox.events()) == Counter({c.id: 1 for c in others})
    [dead] = await relay_outbox.dead()
    assert (dead["_id"], dead["row_id"], dead["reason"]) == (
        f"coupon.issued:{big.id}",
        big.id,
        "too_large",
    )
    own = entry_doc(issued(big), "ready")
    own["created_at"] = dead["entry"]["created_at"]  # as MongoDB stores it (milliseconds)
    kept = {k: v for k, v in own.items() if k not in ("lease", "owner")}
    assert dead["entry"] == kept, "re-queued, it is the coupon's own entry"
    assert dead["entry"]["subject"] == {"collection": "coupons", "_id": big.id, "code": big.code}


class DiesAfterInsert(MongoCouponRepo):
    """The coupon repository of a runner that is killed once its coupons are in."""

    async def insert_unordered(
        self, coupons: Sequence[Coupon], records: Mapping[str, RecordId] | None = None
    ) -> list[int]:
        await super().insert_unordered(coupons, records)
        raise RuntimeError("killed between the insert and the ready")


async def test_a_job_killed_after_its_insert_leaves_each_coupon_announced_once_per_event_id(
    client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    admin: Json,
    reward: Json,
    tenant: str,
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    jobs = small_chunks(container, 5)
    full = await jobs.definition(tenant, defn["id"])
    rows = [Row(i + 1, f"user-{i}") for i in range(5)]
    job, _ = await jobs.submit(full, JobInput(rows, "h-bundle-crash"))
    dying = JobRun(replace(container.job_context, coupons=DiesAfterInsert(container.mongo)))
    with contextlib.suppress(RuntimeError):
        await dying.run_next()
    ids = [issue_keys.coupon_id(issue_key(job.id, r.line)) for r in rows]
    outbox_col = container.mongo.db[OUTBOX.name]
    [left] = await outbox_col.find({"tenant_id": tenant}).to_list()
    assert (left["state"], left["subject"]["bundle"]) == ("prepared", ids)
    # Past the grace the sweep readies it: the coupons came.
    await sweep_outbox(container.mongo, utc_now() + timedelta(minutes=5), timedelta(minutes=2))

    while (resumed := await container.job_run.run_next()) is not None and resumed.id != job.id:
        pass
    assert resumed is not None and (resumed.status, resumed.generated) == ("succeeded", 5)
    events = await read_events(
        settings.kafka_bootstrap_servers or "",
        settings.topic_coupons_issued,
        lambda e: e["tenant_id"] == tenant,
        count=11,  # each coupon twice (the swept bundle, the resumed run), and the end
    )
    issued_events = [e for e in events if e["event_type"] == "coupon.issued"]
    assert Counter(e["coupon_id"] for e in issued_events) == Counter({i: 2 for i in ids})
    assert len({e["event_id"] for e in issued_events}) == 5, "consumers drop the repeats"
