"""Holds through the HTTP API on the embedded servers: exact limits under 200 concurrent
reserves and after their expiry (no sweep needed), confirm and release and their refusals
(expired, released, paused, revoked, another tenant's), keyed reserves and confirms, the
sweep's `expired` release announced once, the timeline steps, `rollback_restores_use`
false with a rollback's reason, and the bounds of `metadata`, `ttl_seconds` and `reason`."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from phoenix_coupons.adapters.mongo_schema import CODE_HISTORY, COUNTERS, REDEMPTION_SLOTS
from phoenix_coupons.adapters.redemption_repo import MongoRedemptionRepo
from phoenix_coupons.adapters.reservation_repo import MongoReservationRepo, sweep_holds
from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.redemption import Redemption
from phoenix_coupons.settings import Settings
from tests.conftest import KeyFactory
from tests.integration.test_redemption import at, events_to_end, refused, topic_reader
from tests.support import wait_until

Json = dict[str, Any]
GLOBAL_10 = {"limit_type": "global", "max_uses": 10}


class Holds:
    """One test's tenant, driven through the API with an all-scopes key."""

    def __init__(
        self, client: httpx.AsyncClient, tenant: str, headers: dict[str, str], key_id: str = ""
    ) -> None:
        self.client, self.id, self.headers, self.key_id = client, tenant, headers, key_id
        self.base = f"/v1/tenants/{tenant}/coupons"

    async def define(self, code: str, limit: Json, reward: Json, **config: Any) -> Json:
        body = {
            "name": f"promo {code}",
            "config": {
                "reward_item_id": reward["item_id"],
                "code_format": "custom",
                "custom_code": code,
                "usage_limit": limit,
                **config,
            },
        }
        response = await self.client.post(self.base, json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        defined: Json = response.json()
        return defined

    async def post(
        self, path: str, body: Json | None = None, key: str | None = None
    ) -> httpx.Response:
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.post(f"{self.base}/{path}", json=body, headers=headers)

    async def reserve(
        self, code: str, user: str, key: str | None = None, **extra: Any
    ) -> httpx.Response:
        return await self.post("reserve", {"code": code, "user_id": user, **extra}, key)

    async def held(self, code: str, user: str, **extra: Any) -> Json:
        response = await self.reserve(code, user, **extra)
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    async def confirm(self, reservation_id: str, key: str | None = None) -> httpx.Response:
        return await self.post(f"reservations/{reservation_id}/confirm", key=key)

    async def release(self, reservation_id: str) -> httpx.Response:
        return await self.post(f"reservations/{reservation_id}/release")

    async def valid(self, code: str, user: str) -> bool:
        response = await self.post("validate", {"code": code, "user_id": user})
        assert response.status_code == 200, response.text
        return bool(response.json()["valid"])


@pytest.fixture
def api(client: httpx.AsyncClient, admin: Json, tenant: str) -> Holds:
    return Holds(client, tenant, admin["headers"], admin["id"])


async def held_slots(container: Container, group: str) -> tuple[int, int]:
    """The group's slot documents and its kept count."""
    slots = await container.mongo.db[REDEMPTION_SLOTS.name].find({"group": group}).to_list(None)
    count = await container.mongo.db[COUNTERS.name].find_one({"_id": f"uses:{group}"})
    return len(slots), int(count["n"]) if count else 0


HOLD_S = 600  # longer than the test takes in real time, under any load


class MovableClock:
    """A time that stands still until the test moves it: 200 concurrent requests take longer
    than a short hold on the embedded server, so expiry is a step of this clock. (The holds
    must outlive the test in real time too: the session's container sweeps expired holds by
    the real clock.)"""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def moved(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, MovableClock]]:
    """An API process of its own over the same servers, on a clock the test moves."""
    clock = MovableClock()
    own = Container(settings, clock=clock)
    await own.start_storage()
    app = create_app(own, manage_lifecycle=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        yield http, clock
    await own.mongo.close()


async def test_holds_are_exact_under_200_concurrent_reserves_and_free_their_uses_on_expiry(
    moved: tuple[httpx.AsyncClient, MovableClock],
    admin: Json,
    tenant: str,
    reward: Json,
    container: Container,
) -> None:
    http, clock = moved
    api = Holds(http, tenant, admin["headers"])
    defn = await api.define("HOLD-10", GLOBAL_10, reward)
    group = f"g:{defn['id']}"
    answers = await asyncio.gather(
        *[api.reserve("hold-10", f"u{i}", ttl_seconds=HOLD_S) for i in range(200)]
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 10, statuses
    assert {a.json()["error"] for a in answers if a.status_code != 201} == {"global_limit_reached"}
    assert await held_slots(container, group) == (10, 10)
    assert not await api.valid("HOLD-10", "late")
    # At their expires_at the uses are free, with no sweep: exactly 10 more of any kind.
    clock.now += timedelta(seconds=HOLD_S)
    assert await api.valid("HOLD-10", "late")
    more = await asyncio.gather(
        *[
            api.reserve("HOLD-10", f"v{i}")
            if i % 2
            else api.post("redeem", {"code": "HOLD-10", "user_id": f"v{i}"})
            for i in range(200)
        ]
    )
    statuses = [a.status_code for a in more]
    assert statuses.count(201) == 10, statuses
    assert {a.json()["error"] for a in more if a.status_code != 201} == {"global_limit_reached"}
    assert await held_slots(container, group) == (10, 10)
    assert not await api.valid("HOLD-10", "later")


async def test_confirm_answers_as_redeem_and_a_hold_ends_once(
    api: Holds, reward: Json, settings: Settings
) -> None:
    await api.define("CHECKOUT", {"limit_type": "per_user", "max_uses": 1}, reward)
    before = datetime.now(UTC)
    hold = await api.held("checkout", "alice", ttl_seconds=120, metadata={"cart": "c-1"})
    uuid.UUID(hold["reservation_id"])
    assert (hold["status"], hold["user_id"], hold["coupon"]["code"]) == (
        "held",
        "alice",
        "CHECKOUT",
    )
    assert hold["reward"] == reward and hold["metadata"] == {"cart": "c-1"}
    assert at(hold["expires_at"]) - at(hold["reserved_at"]) == timedelta(seconds=120)
    assert before - timedelta(seconds=1) <= at(hold["reserved_at"])
    refused(await api.reserve("CHECKOUT", "alice"), 409, "per_user_limit_reached")
    made = await api.confirm(hold["reservation_id"])
    assert made.status_code == 201, made.text
    redemption = made.json()
    assert (redemption["status"], redemption["user_id"]) == ("redeemed", "alice")
    assert redemption["metadata"] == {"cart": "c-1"}
    assert redemption["coupon"] == hold["coupon"] and redemption["reward"] == reward
    again = await api.confirm(hold["reservation_id"])
    assert (again.status_code, again.json()) == (200, redemption)
    refused(await api.release(hold["reservation_id"]), 409, "reservation_confirmed")
    refused(
        await api.post("redeem", {"code": "CHECKOUT", "user_id": "alice"}),
        409,
        "per_user_limit_reached",
    )
    # Another hold, released: its use is free at once, and a second release answers it again.
    other = await api.held("CHECKOUT", "bob")
    gone = await api.release(other["reservation_id"])
    assert (gone.status_code, gone.json()["status"]) == (200, "released")
    assert (await api.release(other["reservation_id"])).json() == gone.json()
    refused(await api.confirm(other["reservation_id"]), 409, "reservation_released")
    assert await api.valid("CHECKOUT", "bob")
    # The events: each hold reserved, each ended once, the redemption with its metadata.
    events = await topic_reader(settings, api.id)(5)
    kinds = sorted((e["event_type"], e.get("reason") or "") for e in events)
    assert kinds == [
        ("coupon.redeemed", ""),
        ("coupon.reservation_released", "confirmed"),
        ("coupon.reservation_released", "released"),
        ("coupon.reserved", ""),
        ("coupon.reserved", ""),
    ]
    reserved = next(
        e
        for e in events
        if e["reservation_id"] == hold["reservation_id"] and e["event_type"] == "coupon.reserved"
    )
    assert reserved["event_id"] == event_id("coupon.reserved", hold["reservation_id"])
    assert (reserved["_key"], reserved["metadata"]) == ("alice", {"cart": "c-1"})
    assert at(reserved["expires_at"]) == at(hold["expires_at"])
    confirmed = next(e for e in events if e.get("reason") == "confirmed")
    assert confirmed["redemption_id"] == redemption["redemption_id"]
    redeemed = next(e for e in events if e["event_type"] == "coupon.redeemed")
    assert redeemed["metadata"] == {"cart": "c-1"}
    assert len(await events_to_end(settings, api.id)) == 5


async def test_confirm_is_refused_once_the_hold_is_over_or_the_rules_refuse_it(
    api: Holds, reward: Json, make_key: KeyFactory, client: httpx.AsyncClient
) -> None:
    paused = await api.define("PAUSED", GLOBAL_10, reward)
    await api.define("REVOKED", GLOBAL_10, reward)
    await api.define("SHORT", GLOBAL_10, reward)
    on_paused = await api.held("PAUSED", "alice")
    on_revoked = await api.held("REVOKED", "alice")
    short = await api.held("SHORT", "alice", ttl_seconds=1)
    status = await client.put(
        f"{api.base}/{paused['id']}/status", json={"status": "paused"}, headers=api.headers
    )
    assert status.status_code == 200, status.text
    revoke = await client.post(f"/v1/tenants/{api.id}/codes/REVOKED/revoke", headers=api.headers)
    assert revoke.status_code == 200, revoke.text
    refused(await api.confirm(on_paused["reservation_id"]), 409, "definition_paused")
    refused(await api.confirm(on_revoked["reservation_id"]), 409, "coupon_revoked")
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = Holds(client, other_tenant, (await make_key(tenant=other_tenant))["headers"])
    refused(await other.confirm(short["reservation_id"]), 404, "reservation_not_found")
    refused(await other.release(short["reservation_id"]), 404, "reservation_not_found")
    ends = at(short["expires_at"])
    await wait_until(lambda: datetime.now(UTC) > ends)
    refused(await api.confirm(short["reservation_id"]), 409, "reservation_expired")
    refused(await api.release(short["reservation_id"]), 409, "reservation_expired")
    refused(await api.confirm(str(uuid.uuid4())), 404, "reservation_not_found")


async def test_keyed_reserve_and_confirm_replay_and_concurrent_confirms_make_one_redemption(
    api: Holds, reward: Json
) -> None:
    await api.define("KEYED-HOLD", GLOBAL_10, reward)
    first = await api.reserve("KEYED-HOLD", "alice", key="hold-1", metadata={"a": 1})
    assert first.status_code == 201, first.text
    again = await api.reserve("KEYED-HOLD", "alice", key="hold-1", metadata={"a": 1})
    assert (again.status_code, again.json()) == (200, first.json())
    reused = await api.reserve("KEYED-HOLD", "bob", key="hold-1")
    refused_field = reused.json()
    assert (reused.status_code, refused_field["error"]) == (422, "idempotency_key_reused")
    assert [d["field"] for d in refused_field["details"]] == ["Idempotency-Key"]
    hid = first.json()["reservation_id"]
    answers = await asyncio.gather(*[api.confirm(hid, key=f"c-{i % 3}") for i in range(12)])
    assert sorted(a.status_code for a in answers) == [200] * 11 + [201], [a.text for a in answers]
    assert len({a.json()["redemption_id"] for a in answers}) == 1
    for key in ("c-0", "c-1", None):  # replays, whatever the key
        assert (await api.confirm(hid, key=key)).json() == answers[0].json()
    # The key whose confirm made a redemption is bound to that request.
    second = await api.held("KEYED-HOLD", "bob")
    made_by = await api.confirm(second["reservation_id"], key="c-bob")
    assert made_by.status_code == 201, made_by.text
    third = await api.held("KEYED-HOLD", "carol")
    reused = await api.confirm(third["reservation_id"], key="c-bob")
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")


async def test_an_expired_hold_is_released_once_by_the_sweep_and_in_the_timeline(
    api: Holds, reward: Json, container: Container, settings: Settings
) -> None:
    """Two holds expire: one taken over by a redeem (its slot now the redemption's), one
    not (its slot freed by the sweep). Each is announced released, reason `expired`, once,
    however many sweeps run."""
    taken = await api.define("SWEPT", {"limit_type": "global", "max_uses": 1}, reward)
    left = await api.define("LEFT", {"limit_type": "global", "max_uses": 1}, reward)
    lapsed = await api.held("SWEPT", "alice", ttl_seconds=1, metadata={"order": 1})
    alone = await api.held("LEFT", "alice", ttl_seconds=1)
    ends = max(at(lapsed["expires_at"]), at(alone["expires_at"]))
    await wait_until(lambda: datetime.now(UTC) > ends)
    made = await api.post("redeem", {"code": "SWEPT", "user_id": "carol"})
    assert made.status_code == 201, made.text
    assert await held_slots(container, f"g:{taken['id']}") == (1, 1)
    grace = timedelta(seconds=settings.sweep_grace_seconds)
    await asyncio.gather(
        *[sweep_holds(container.mongo, datetime.now(UTC), grace) for _ in range(3)],
        container.sweeper.sweep(),
    )
    assert await held_slots(container, f"g:{taken['id']}") == (1, 1)  # carol's
    assert await held_slots(container, f"g:{left['id']}") == (0, 0)
    assert await api.valid("LEFT", "dave")
    ids = {lapsed["reservation_id"], alone["reservation_id"]}
    released = await topic_reader(settings, api.id)(
        2, lambda e: e["event_type"] == "coupon.reservation_released"
    )
    assert {(e["reservation_id"], e["reason"]) for e in released} == {(i, "expired") for i in ids}
    assert all(at(e["occurred_at"]) == at(e["expires_at"]) for e in released)
    await container.sweeper.sweep()
    everything = await events_to_end(settings, api.id)
    ends_announced = [e for e in everything if e["event_type"] == "coupon.reservation_released"]
    assert len(ends_announced) == 2
    steps = (
        await container.mongo.db[CODE_HISTORY.name]
        .find({"tenant_id": api.id, "code_norm": "SWEPT"})
        .sort("_id")
        .to_list(None)
    )
    assert [(s["kind"], s["actor"]) for s in steps] == [
        ("reserved", {"kind": "api_key", "id": api.key_id}),
        ("released", None),
        ("redeemed", {"kind": "api_key", "id": api.key_id}),
    ]
    assert steps[0]["details"]["metadata"] == {"order": 1}
    assert steps[1]["details"] == {"reason": "expired"}


async def test_a_rollback_keeps_the_use_when_the_definition_says_so_and_carries_its_reason(
    api: Holds, reward: Json, settings: Settings
) -> None:
    await api.define(
        "FINAL-SALE", {"limit_type": "global", "max_uses": 1}, reward, rollback_restores_use=False
    )
    made = await api.post("redeem", {"code": "FINAL-SALE", "user_id": "alice"})
    assert made.status_code == 201, made.text
    rid = made.json()["redemption_id"]
    back = await api.post(f"redemptions/{rid}/rollback", {"reason": "order cancelled"})
    assert back.status_code == 200, back.text
    assert (back.json()["use_kept"], back.json()["rollback_reason"]) == (True, "order cancelled")
    refused(
        await api.post("redeem", {"code": "FINAL-SALE", "user_id": "bob"}),
        409,
        "global_limit_reached",
    )
    [event] = await topic_reader(settings, api.id)(
        1, lambda e: e["event_type"] == "coupon.redemption_rolled_back"
    )
    assert (event["reason"], event["use_kept"], event["redemption_id"]) == (
        "order cancelled",
        True,
        rid,
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("reserve", {"code": "B", "user_id": "a", "ttl_seconds": 0}, "ttl_seconds"),
        ("reserve", {"code": "B", "user_id": "a", "ttl_seconds": 3601}, "ttl_seconds"),
        ("reserve", {"code": "B", "user_id": "a", "metadata": {"x": "y" * 4100}}, "metadata"),
        ("redeem", {"code": "B", "user_id": "a", "metadata": [1]}, "metadata"),
        ("redeem", {"code": "B", "user_id": "a", "metadata": {"$set": 1}}, "metadata"),
        ("redemptions/r-1/rollback", {"reason": "x" * 501}, "reason"),
        ("redemptions/r-1/rollback", {"reason": "x", "extra": 1}, "extra"),
    ],
)
async def test_bad_hold_and_rollback_bodies_are_422_naming_the_field(
    api: Holds, path: str, body: Json, field: str
) -> None:
    response = await api.post(path, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert [d["field"] for d in response.json()["details"]] == [field]


async def test_the_sweep_finishes_what_a_crash_left_of_a_release_and_of_a_confirm(
    api: Holds, reward: Json, container: Container, settings: Settings
) -> None:
    """A release stopped after its state write (slot still held, nothing announced), and a
    confirm stopped after storing its redemption (the hold still `held`): once past the
    grace, the sweep frees the one's slot and announces both ends, and the confirmed one's
    redemption, once."""
    released_defn = await api.define("CRASH-REL", {"limit_type": "global", "max_uses": 1}, reward)
    confirmed_defn = await api.define("CRASH-CONF", {"limit_type": "global", "max_uses": 1}, reward)
    repo, redemptions = MongoReservationRepo(container.mongo), MongoRedemptionRepo(container.mongo)
    first = await api.held("CRASH-REL", "alice")
    second = await api.held("CRASH-CONF", "bob")
    now = datetime.now(UTC)
    hold = await repo.get(api.id, first["reservation_id"])
    assert hold is not None
    assert await repo.settle(hold, "released", now) is not None  # ... and the process died
    other = await repo.get(api.id, second["reservation_id"])
    assert other is not None
    rid = str(uuid.uuid4())
    claimed = await repo.claim_confirm(api.id, other.id, rid, now)
    assert claimed is not None and claimed.redemption_id == rid
    made = Redemption(
        id=rid,
        tenant_id=api.id,
        user_id="bob",
        group=claimed.group,
        state="redeemed",
        redeemed_at=now,
        coupon=claimed.coupon,
        reward=claimed.reward,
        reservation_id=claimed.id,
    )
    assert await redemptions.insert_held(made, claimed, now) == "turned"  # ... and it died
    grace = timedelta(seconds=settings.sweep_grace_seconds)
    await sweep_holds(container.mongo, now, grace)  # within the grace: left to their writers
    assert await held_slots(container, f"g:{released_defn['id']}") == (1, 1)
    still = await repo.get(api.id, other.id)
    assert still is not None and still.state == "held"
    later = at(second["expires_at"]) + grace + timedelta(seconds=1)
    await asyncio.gather(*[sweep_holds(container.mongo, later, grace) for _ in range(2)])
    assert await held_slots(container, f"g:{released_defn['id']}") == (0, 0)
    assert await held_slots(container, f"g:{confirmed_defn['id']}") == (1, 1)  # the redemption's
    settled = await repo.get(api.id, other.id)
    assert settled is not None and (settled.state, settled.redemption_id) == ("confirmed", rid)
    events = await topic_reader(settings, api.id)(5)
    ends = {
        (e["event_type"], e.get("reason")) for e in events if e["event_type"] != "coupon.reserved"
    }
    assert ends == {
        ("coupon.reservation_released", "released"),
        ("coupon.reservation_released", "confirmed"),
        ("coupon.redeemed", None),
    }
    assert len(await events_to_end(settings, api.id)) == 5  # each once, however many sweeps
    replay = await api.confirm(other.id)
    assert (replay.status_code, replay.json()["redemption_id"]) == (200, rid)
