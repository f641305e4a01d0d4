"""The settler (services/settler.py) on the fakes: a redeem answers with its entry prepared and
its slots unconfirmed; the settler confirms and readies them after, in one call per kind for
everything that came in while its previous flush ran; a failed flush is left to the sweeps
and the next one still runs."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from phoenix_coupons.domain.outbox import OutboxEntry
from phoenix_coupons.services.ports import SlotClaim
from phoenix_coupons.services.redemptions import RedemptionService
from phoenix_coupons.services.reservations import ReservationService, reservation_view
from phoenix_coupons.services.settler import Settler
from schemas.redemptions import RedeemRequest, ReserveRequest
from tests.fakes import FakeOutbox, FakeRedemptionRepo, Fakes, coupon
from tests.unit.services import given
from tests.unit.services.given import TENANT
from tests.unit.services.test_reservations import Holds

AT = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


class GatedOutbox(FakeOutbox):
    """Each `ready` call is recorded and waits for the gate: a flush held in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls: list[int] = []
        self.fail = False

    async def ready(self, entries: Sequence[OutboxEntry]) -> None:
        self.calls.append(len(entries))
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("MongoDB away")
        await super().ready(entries)


def claim(n: int) -> SlotClaim:
    return SlotClaim(f"r-{n}", (f"g:d#{n}",), AT)


async def test_a_redeem_answers_before_its_entry_is_ready_and_the_settler_readies_it() -> None:
    fk = Fakes()
    reward = given.reward(fk)
    defn = given.definition(fk, reward.item_id)
    fk.coupons.add(
        coupon(
            "k-1",
            "SHARE",
            TENANT,
            definition_id=defn.id,
            reward_item_id=reward.item_id,
            user_id=None,
            kind="shared",
            source="definition",
        )
    )
    woken: list[int] = []
    settler = Settler(fk.redemptions, fk.outbox, lambda: woken.append(1))
    service = RedemptionService(
        fk.coupons,
        fk.definitions,
        fk.rewards,
        fk.redemptions,
        fk.clock,
        lambda: None,
        fk.lookups,
        fk.outbox,
        settler,
    )
    view, new = await service.redeem(TENANT, RedeemRequest(code="SHARE", user_id="u-1"), "key")
    assert new
    [entry] = fk.outbox.in_state("prepared")  # answered: settled after
    await settler.flush()
    assert fk.outbox.in_state("ready") == [entry] and woken == [1]
    assert entry.history is not None and entry.history.id in fk.outbox.history
    [confirmed] = fk.redemptions.confirmed
    assert confirmed.redemption_id == view.redemption_id and len(confirmed.slots) == 1
    assert confirmed.claimed_at == view.redeemed_at


async def test_what_comes_in_during_a_flush_is_settled_in_one_batch_after_it() -> None:
    repo, outbox = FakeRedemptionRepo(), GatedOutbox()
    settler = Settler(repo, outbox, lambda: None)
    settler.add(claim(0), [])
    await asyncio.sleep(0)  # the first flush starts: it waits on the gate
    for n in range(1, 6):
        settler.add(claim(n), [])
    assert settler.pending == 5
    outbox.gate.set()
    await settler.flush()
    assert outbox.calls == [0, 0]  # two flushes: the first, then the five at once
    assert [c.redemption_id for c in repo.confirmed] == [f"r-{n}" for n in range(6)]
    assert settler.pending == 0


async def test_a_failed_flush_is_left_to_the_sweeps_and_the_next_one_runs() -> None:
    repo, outbox = FakeRedemptionRepo(), GatedOutbox()
    settler = Settler(repo, outbox, lambda: None)
    outbox.fail = True
    outbox.gate.set()
    settler.add(claim(1), [])
    await settler.flush()
    assert settler.pending == 0  # dropped: the prepared entries and slots are the sweeps'
    outbox.fail = False
    settler.add(claim(2), [])
    await settler.flush()
    assert outbox.calls == [0, 0]


async def test_holds_answer_before_their_entries_are_ready_and_the_settler_readies_them() -> None:
    """Reserve, confirm and release hand their entries to the settler as a redeem does; what
    a reserve answers is the hold as stored (no read after the insert)."""
    w = Holds(usage_limit={"limit_type": "global", "max_uses": 2})
    woken: list[int] = []
    settler = Settler(w.fk.redemptions, w.fk.outbox, lambda: woken.append(1))
    holds = ReservationService(  # the API's wiring: one settler per process
        w.service,
        w.fk.reservations,
        w.fk.redemptions,
        w.fk.outbox,
        w.fk.clock,
        lambda: None,
        settler,
    )
    w.issue("SUMMER", user=None)
    body = ReserveRequest(code="SUMMER", user_id="u-1", ttl_seconds=60)
    view, new = await holds.reserve(TENANT, body, "key")
    assert new and view == reservation_view(w.fk.reservations.rows[view.reservation_id])
    assert w.events("prepared") == [("coupon.reserved", None)] and w.events() == []
    await settler.flush()
    assert w.events() == [("coupon.reserved", None)] and woken == [1]

    made, _ = await holds.confirm(TENANT, view.reservation_id, "key")
    assert sorted(w.events("prepared")) == [
        ("coupon.redeemed", None),
        ("coupon.reservation_released", "confirmed"),
    ]
    await settler.flush()
    assert w.fk.outbox.in_state("prepared") == [] and len(w.events()) == 3
    assert w.fk.reservations.rows[view.reservation_id].redemption_id == made.redemption_id

    other, _ = await holds.reserve(TENANT, body.model_copy(update={"user_id": "u-2"}), "key")
    await holds.release(TENANT, other.reservation_id, "key")
    await settler.flush()
    assert w.fk.outbox.in_state("prepared") == []
    assert ("coupon.reservation_released", "released") in w.events()
