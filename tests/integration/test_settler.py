"""The settler's crash rules on the real MongoDB: a redeem whose settle never came (the
process died after the answer) is settled by the sweeps after the grace (its slot confirmed,
its event readied and sent, its timeline step stored); a late confirm never takes a slot
out of question once a rollback put it there."""

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from phoenix_coupons.adapters import redemption_repo
from phoenix_coupons.adapters.code_history import history_doc
from phoenix_coupons.adapters.mongo_schema import CODE_HISTORY, OUTBOX, REDEMPTION_SLOTS
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.adapters.outbox import MongoOutbox, sweep_outbox
from phoenix_coupons.adapters.redemption_repo import MongoRedemptionRepo, sweep_slots
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.outbox import OutboxEntry
from phoenix_coupons.domain.redemption import Redemption
from phoenix_coupons.services.ports import SlotClaim
from phoenix_coupons.services.settler import Settler
from phoenix_coupons.settings import Settings
from tests.integration.test_redemption import PER_USER_1, Json, Tenant, events_to_end
from tests.integration.test_redemption_repo import AT, redemption
from tests.integration.test_reservations import Holds
from tests.support import wait_until

GRACE = timedelta(minutes=2)


class Crashed(Settler):
    """The process dies after the answer: what it was given is never settled."""

    def __init__(self, container: Container) -> None:
        super().__init__(
            MongoRedemptionRepo(container.mongo), MongoOutbox(container.mongo), lambda: None
        )
        self.given: list[tuple[SlotClaim | None, list[OutboxEntry]]] = []

    def add(self, claim: SlotClaim | None, entries: Sequence[OutboxEntry]) -> None:
        self.given.append((claim, list(entries)))


def fresh(tenant: str) -> tuple[Redemption, str]:
    """A redemption at AT of a group of its own, and that group's slot 1."""
    group = f"g:{uuid.uuid4().hex}"
    return replace(redemption(tenant, "coupon-1"), group=group), f"{group}#1"


async def redeemed_then_crashed(
    container: Container, api: Tenant, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Json, tuple[SlotClaim | None, OutboxEntry]]:
    """A shared code (one use per user) redeemed by alice through a process that dies right
    after its answer: the code, the answer, what its settle would have had."""
    code = f"SETTLE-{uuid.uuid4().hex[:8]}".upper()
    await api.define(code, PER_USER_1)
    crashed = Crashed(container)
    monkeypatch.setattr(container.redemptions, "_settler", crashed)
    made = await api.redeemed(code, "alice")
    [(claim, [entry])] = crashed.given
    return code, made, (claim, entry)


@pytest.fixture
def api(client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str) -> Tenant:
    return Tenant(client, tenant, admin["headers"], reward)


async def test_a_crash_before_the_flush_is_settled_by_the_sweeps(
    container: Container, api: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, made, (claim, entry) = await redeemed_then_crashed(container, api, monkeypatch)
    assert claim is not None and claim.redemption_id == made["redemption_id"]
    db = container.mongo.db
    [slot] = claim.slots
    assert (await db[REDEMPTION_SLOTS.name].find_one({"_id": slot}) or {}).get("unconfirmed")
    stored = await db[OUTBOX.name].find_one({"_id": entry.id})
    assert stored is not None and stored["state"] == "prepared"
    assert entry.history is not None
    assert await db[CODE_HISTORY.name].find_one({"_id": entry.history.id}) is None
    # The limit holds meanwhile: the unconfirmed slot is held.
    refused = await api.redeem(code, "alice")
    assert refused.status_code == 409, refused.text

    later = container.clock() + GRACE * 2
    assert await sweep_slots(container.mongo, later, GRACE) >= 1
    assert await sweep_outbox(container.mongo, later, GRACE) >= 1
    held = await db[REDEMPTION_SLOTS.name].find_one({"_id": slot})
    assert held is not None and "unconfirmed" not in held
    step = await db[CODE_HISTORY.name].find_one({"_id": entry.history.id})
    assert step is not None and step == history_doc(entry.history) | {"_id": step["_id"]}
    # Readied, then sent by the relay (and deleted): late, not lost.
    container.relay.wake()

    async def sent() -> bool:
        return await db[OUTBOX.name].find_one({"_id": entry.id}) is None

    await wait_until(sent)


async def test_a_late_confirm_leaves_a_slot_a_rollback_put_in_question(
    container: Container, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback runs in the redemption's very millisecond and dies before it deletes the
    slot; the settler's confirm comes after: the slot stays in question, and the sweep gives
    the use back (a confirm that cleared the mark would hold the use for ever)."""
    repo = MongoRedemptionRepo(container.mongo)
    made, slot = fresh(tenant)
    await repo.insert(made, slot, 1, confirm=False)

    async def dies(*_: object, **__: object) -> None:
        raise ConnectionError("the process died")

    monkeypatch.setattr(redemption_repo, "release_slots", dies)
    with pytest.raises(ConnectionError):
        await repo.roll_back(tenant, made.id, AT)
    monkeypatch.undo()
    await repo.confirm_claims([SlotClaim(made.id, (slot,), AT)])
    slots = container.mongo.db[REDEMPTION_SLOTS.name]
    held = await slots.find_one({"_id": slot})
    assert held is not None and held["unconfirmed"] > epoch_ms(AT)
    assert await repo.active_count(made.group) == 1
    await sweep_slots(container.mongo, AT + GRACE * 2, GRACE)
    assert await slots.find_one({"_id": slot}) is None
    assert await repo.active_count(made.group) == 0


async def test_a_confirm_in_time_confirms(container: Container, tenant: str) -> None:
    repo = MongoRedemptionRepo(container.mongo)
    made, slot = fresh(tenant)
    await repo.insert(made, slot, 1, confirm=False)
    slots = container.mongo.db[REDEMPTION_SLOTS.name]
    assert "unconfirmed" in (await slots.find_one({"_id": slot}) or {})
    await repo.confirm_claims([SlotClaim(made.id, (slot,), AT)])
    held = await slots.find_one({"_id": slot})
    assert held is not None and "unconfirmed" not in held


async def test_a_rollback_before_the_settle_is_announced_after_its_redemption(
    container: Container, api: Tenant, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The redeeming process died before its settle; the rollback (another process, or this
    one) is readied at once, yet the relay holds it until the sweep has readied and sent the
    redemption's event (`after`)."""
    code, made, (_, entry) = await redeemed_then_crashed(container, api, monkeypatch)
    rolled = await api.rollback(made["redemption_id"])
    assert rolled.status_code == 200, rolled.text
    await container.relay.publish_pending()
    outbox = container.mongo.db[OUTBOX.name]
    waiting = await outbox.find({"tenant_id": api.id}, {"state": 1, "after": 1}).to_list(None)
    assert {(d["_id"] == entry.id, d["state"]) for d in waiting} == {
        (True, "prepared"),
        (False, "ready"),
    }
    assert await events_to_end(settings, api.id) == []  # nothing sent out of order

    later = container.clock() + GRACE * 2
    await sweep_outbox(container.mongo, later, GRACE)
    container.relay.wake()

    async def both_sent() -> bool:
        return await outbox.find_one({"tenant_id": api.id}) is None

    await wait_until(both_sent)
    events = await events_to_end(settings, api.id)
    assert [e["event_type"] for e in events] == ["coupon.redeemed", "coupon.redemption_rolled_back"]
    # The slot: given back by the rollback (the late settle never came); the code redeems again.
    monkeypatch.undo()
    again = await api.redeem(code, "alice")
    assert again.status_code == 201, again.text


async def test_a_hold_whose_settle_never_came_is_announced_by_the_sweep(
    container: Container,
    client: httpx.AsyncClient,
    admin: Json,
    reward: Json,
    tenant: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reserve, confirm and release through a process that dies after each answer: their
    entries stay prepared (no timeline step yet), and the outbox sweep readies them once
    the grace is over, and the relay sends every one."""
    holds = Holds(client, tenant, admin["headers"])
    code = f"HOLD-{uuid.uuid4().hex[:8]}".upper()
    await holds.define(code, {"limit_type": "global", "max_uses": 5}, reward)
    crashed = Crashed(container)
    monkeypatch.setattr(container.reservations, "_settler", crashed)
    kept = await holds.held(code, "alice")
    confirmed = await holds.confirm(kept["reservation_id"])
    assert confirmed.status_code == 200 or confirmed.status_code == 201, confirmed.text
    dropped = await holds.held(code, "bob")
    released = await holds.release(dropped["reservation_id"])
    assert released.status_code == 200, released.text
    entries = [e for _, given in crashed.given for e in given]
    assert len(entries) == 5  # reserved x2, redeemed, released (confirmed), released
    outbox, history = container.mongo.db[OUTBOX.name], container.mongo.db[CODE_HISTORY.name]
    for entry in entries:
        assert (await outbox.find_one({"_id": entry.id}) or {}).get("state") == "prepared"
        assert entry.history is not None
        assert await history.find_one({"_id": entry.history.id}) is None

    later = container.clock() + GRACE * 2
    assert await sweep_outbox(container.mongo, later, GRACE) >= 5
    for entry in entries:
        assert entry.history is not None
        assert await history.find_one({"_id": entry.history.id}) is not None
    container.relay.wake()

    async def sent() -> bool:
        return await outbox.find_one({"tenant_id": tenant}) is None

    await wait_until(sent)
    types = [e["event_type"] for e in await events_to_end(settings, tenant)]
    assert sorted(types) == sorted(
        ["coupon.reserved"] * 2 + ["coupon.redeemed"] + ["coupon.reservation_released"] * 2
    )
