"""Holds (services/reservations.py) on the fakes, with the clock set: a hold takes a use as a
redemption does and frees it when its time is over (taken over, no sweep); confirm and
release and what they answer once the hold is over; the redeem rules at confirm; keyed
reserves and confirms; events and timeline steps; rollback's reason and
`rollback_restores_use`; `metadata` on redeem and reserve."""

import hashlib
from datetime import timedelta
from typing import Any

import pytest

from phoenix_coupons.domain.errors import (
    CodeNotFound,
    Conflict,
    NotFound,
    Refused,
    ValidationFailed,
)
from phoenix_coupons.domain.history import Actor
from phoenix_coupons.domain.reservation import ending, hold_end
from phoenix_coupons.services.idempotency import request_hash
from phoenix_coupons.services.reservations import ReservationService
from schemas.redemptions import RedeemRequest, ReserveRequest
from tests.fakes import Fakes
from tests.unit.services.given import OTHER_TENANT, TENANT
from tests.unit.services.test_redemptions import CALLER, World

GLOBAL_2 = {"limit_type": "global", "max_uses": 2}


class Holds(World):
    """The redemption world, with the reservation service over the same fakes."""

    def __init__(self, status: str = "active", **config: Any) -> None:
        super().__init__(status, **config)
        self.holds = ReservationService(
            self.service,
            self.fk.reservations,
            self.fk.redemptions,
            self.fk.outbox,
            self.fk.clock,
            self._redeemed,
        )

    async def reserve(
        self, code: str, user: str = "u-1", ttl: int = 60, key: str | None = None, **extra: Any
    ) -> str:
        body = ReserveRequest(code=code, user_id=user, ttl_seconds=ttl, **extra)
        view, _ = await self.holds.reserve(TENANT, body, CALLER, key)
        return view.reservation_id

    async def refusal(self, code: str, user: str, reserve: bool = True) -> str:
        with pytest.raises((Refused, Conflict, CodeNotFound)) as refused:
            if reserve:
                await self.reserve(code, user)
            else:
                await self.redeem(code, user)
        return refused.value.code

    def events(self, state: str = "ready") -> list[tuple[str, Any]]:
        return [
            (e.event.event_type, getattr(e.event, "reason", None))
            for e in self.fk.outbox.in_state(state)
        ]


async def test_a_hold_takes_a_use_and_frees_it_when_its_time_is_over_without_a_sweep() -> None:
    w = Holds(usage_limit=GLOBAL_2)
    w.issue("SUMMER", user=None)
    await w.reserve("SUMMER", "u-1", ttl=30)
    await w.redeem("SUMMER", "u-2")
    assert await w.reason("SUMMER", "u-3") == "global_limit_reached"
    assert await w.refusal("SUMMER", "u-3") == "global_limit_reached"
    w.fk.clock.advance(seconds=30)  # the hold's end: its use is free again
    assert await w.reason("SUMMER", "u-3") is None
    await w.reserve("SUMMER", "u-3")  # takes the expired hold's slot over
    assert await w.refusal("SUMMER", "u-4", reserve=False) == "global_limit_reached"
    assert await w.fk.redemptions.active_count(f"g:{w.defn.id}") == 2
    # A redeem takes an expired hold over as well.
    w.fk.clock.advance(seconds=60)
    await w.redeem("SUMMER", "u-4")
    assert await w.reason("SUMMER", "u-5") == "global_limit_reached"


@pytest.mark.parametrize("limit", [3, 6])  # slots tried in order; past SMALL_LIMIT, a hint
async def test_holds_and_redeems_share_an_exact_limit(limit: int) -> None:
    w = Holds(usage_limit={"limit_type": "global", "max_uses": limit})
    w.issue("SUMMER", user=None)
    for i in range(limit):
        await w.reserve("SUMMER", f"u-{i}", ttl=10)
    assert await w.refusal("SUMMER", "late") == "global_limit_reached"
    w.fk.clock.advance(seconds=10)
    for i in range(limit):  # every expired hold frees exactly one use
        await (w.reserve if i % 2 else w.redeem)("SUMMER", f"v-{i}")
    assert await w.refusal("SUMMER", "later", reserve=False) == "global_limit_reached"


async def test_a_hold_never_outlives_its_coupon() -> None:
    fk = Fakes()
    now = fk.clock()
    w = Holds(expires_at=now + timedelta(seconds=90))
    w.issue("WIN-AAAA", valid_until=now + timedelta(seconds=40))
    coupon = await w.fk.coupons.by_code(TENANT, "WIN-AAAA")
    assert coupon is not None
    assert hold_end(coupon, w.defn, now, 300) == now + timedelta(seconds=40)
    assert hold_end(coupon, w.defn, now, 10) == now + timedelta(seconds=10)
    view, _ = await w.holds.reserve(TENANT, ReserveRequest(code="WIN-AAAA", user_id="u-1"), CALLER)
    assert (view.status, view.expires_at) == ("held", now + timedelta(seconds=40))


async def test_confirm_turns_the_hold_into_its_redemption_once() -> None:
    w = Holds(usage_limit={"limit_type": "global", "max_uses": 1})
    w.issue("SUMMER", user=None)
    hid = await w.reserve("SUMMER", "u-1", metadata={"order": "o-1"})
    w.fk.clock.advance(seconds=5)
    first, new = await w.holds.confirm(TENANT, hid, CALLER)
    assert (new, first.status, first.user_id, first.redeemed_at) == (
        True,
        "redeemed",
        "u-1",
        w.fk.clock(),
    )
    assert first.metadata == {"order": "o-1"}
    again, new_again = await w.holds.confirm(TENANT, hid, "key-2")  # a retry: the same
    assert (again, new_again) == (first, False)
    assert await w.reason("SUMMER", "u-2") == "global_limit_reached"  # one use, still taken
    assert await w.fk.redemptions.active_count(f"g:{w.defn.id}") == 1
    stored = w.fk.reservations.rows[hid]
    assert (stored.state, stored.redemption_id) == ("confirmed", first.redemption_id)
    assert sorted(w.events()) == [
        ("coupon.redeemed", None),
        ("coupon.reservation_released", "confirmed"),
        ("coupon.reserved", None),
    ]
    assert w.fk.outbox.in_state("prepared") == []
    # The hold's end is announced after the redemption it became.
    end = next(e for e in w.fk.outbox.in_state("ready") if e.event.event_type.endswith("released"))
    grant = next(e for e in w.fk.outbox.in_state("ready") if e.subject.kind == "redemption")
    assert (end.event.event_type, end.after) == ("coupon.reservation_released", grant.id)
    # Past the hold's time, the confirmed use stays taken.
    w.fk.clock.advance(hours=2)
    assert await w.reason("SUMMER", "u-2") == "global_limit_reached"
    with pytest.raises(Conflict) as released:
        await w.holds.release(TENANT, hid, CALLER)
    assert released.value.code == "reservation_confirmed"


async def test_an_unlimited_hold_needs_no_slot() -> None:
    w = Holds(usage_limit={"limit_type": "unlimited"})
    w.issue("SUMMER", user=None)
    hid = await w.reserve("SUMMER")
    assert w.fk.redemptions.slots == {}
    view, _ = await w.holds.confirm(TENANT, hid, CALLER)
    assert view.status == "redeemed"


async def test_confirm_of_a_hold_that_is_over_is_refused_with_why() -> None:
    w = Holds(usage_limit=GLOBAL_2)
    w.issue("SUMMER", user=None)
    expired, gone = await w.reserve("SUMMER", ttl=10), await w.reserve("SUMMER", "u-2", ttl=60)
    view = await w.holds.release(TENANT, gone, CALLER)
    assert view.status == "released"
    assert await w.holds.release(TENANT, gone, CALLER) == view  # again: the same answer
    w.fk.clock.advance(seconds=10)
    for hid, code in ((expired, "reservation_expired"), (gone, "reservation_released")):
        with pytest.raises(Conflict) as refused:
            await w.holds.confirm(TENANT, hid, CALLER)
        assert refused.value.code == code
    with pytest.raises(Conflict) as late:
        await w.holds.release(TENANT, expired, CALLER)
    assert late.value.code == "reservation_expired"
    for tenant, hid in ((OTHER_TENANT, expired), (TENANT, "no-such-hold")):
        with pytest.raises(NotFound) as missing:
            await w.holds.confirm(tenant, hid, CALLER)
        assert missing.value.code == "reservation_not_found"
    # The released hold's use is free, and the expired one's.
    await w.redeem("SUMMER", "u-3")
    await w.redeem("SUMMER", "u-4")


async def test_a_release_frees_the_use_at_once() -> None:
    w = Holds(usage_limit={"limit_type": "global", "max_uses": 1})
    w.issue("SUMMER", user=None)
    hid = await w.reserve("SUMMER")
    assert await w.reason("SUMMER", "u-2") == "global_limit_reached"
    await w.holds.release(TENANT, hid, CALLER)
    assert await w.reason("SUMMER", "u-2") is None
    assert ("coupon.reservation_released", "released") in w.events()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("pause", "definition_paused"),
        ("archive", "definition_archived"),
        ("revoke", "coupon_revoked"),
    ],
)
async def test_confirm_applies_the_redeem_rules_as_they_are_now(change: str, reason: str) -> None:
    w = Holds()
    w.issue("WIN-AAAA")
    hid = await w.reserve("WIN-AAAA")
    if change == "revoke":
        await w.fk.coupons.revoke(TENANT, "WIN-AAAA", w.fk.clock())
    else:
        status = {"pause": "paused", "archive": "archived"}[change]
        await w.fk.definitions.set_status(TENANT, w.defn.id, status, w.fk.clock())
    with pytest.raises(Refused) as refused:
        await w.holds.confirm(TENANT, hid, CALLER)
    assert refused.value.code == reason
    assert w.fk.reservations.rows[hid].state == "held"  # still held: released or expiring


async def test_reserve_is_refused_as_redeem_is() -> None:
    w = Holds()
    w.issue("WIN-AAAA", user="u-1")
    assert await w.refusal("WIN-AAAA", "u-2") == "not_owner"
    assert await w.refusal("WIN-ZZZZ", "u-1") == "code_not_found"
    await w.reserve("WIN-AAAA", "u-1")
    assert await w.refusal("WIN-AAAA", "u-1") == "per_user_limit_reached"


async def test_keyed_reserves_and_confirms_replay_and_refuse_another_body() -> None:
    w = Holds(usage_limit=GLOBAL_2)
    w.issue("SUMMER", user=None)
    body = ReserveRequest(code="SUMMER", user_id="u-1", metadata={"cart": 7})
    first, new = await w.holds.reserve(TENANT, body, CALLER, "res-1")
    again, new_again = await w.holds.reserve(TENANT, body, CALLER, "res-1")
    assert (new, new_again, again) == (True, False, first)
    assert await w.fk.redemptions.active_count(f"g:{w.defn.id}") == 1
    other = ReserveRequest(code="SUMMER", user_id="u-2")
    with pytest.raises(ValidationFailed) as reused:
        await w.holds.reserve(TENANT, other, CALLER, "res-1")
    assert reused.value.code == "idempotency_key_reused"
    made, new = await w.holds.confirm(TENANT, first.reservation_id, CALLER, "conf-1")
    replayed, new_again = await w.holds.confirm(TENANT, first.reservation_id, CALLER, "conf-1")
    assert (new, new_again, replayed) == (True, False, made)
    second = await w.reserve("SUMMER", "u-2")
    with pytest.raises(ValidationFailed):  # the key made another confirm's redemption
        await w.holds.confirm(TENANT, second, CALLER, "conf-1")
    with pytest.raises(ValidationFailed):  # nor may a redeem reuse it
        await w.service.redeem(
            TENANT, RedeemRequest(code="SUMMER", user_id="u-1"), CALLER, "conf-1"
        )


async def test_holds_and_their_ends_are_steps_of_the_code_s_timeline() -> None:
    w = Holds(usage_limit=GLOBAL_2)
    w.issue("SUMMER", user=None)
    kept = await w.reserve("SUMMER", "u-1", metadata={"order": "o-9"})
    dropped = await w.reserve("SUMMER", "u-2")
    await w.holds.release(TENANT, dropped, CALLER)
    made, _ = await w.holds.confirm(TENANT, kept, CALLER)
    steps = sorted(w.fk.outbox.history.values(), key=lambda h: (h.ref, h.kind))
    assert {(h.kind, h.ref) for h in steps} == {
        ("reserved", kept),
        ("reserved", dropped),
        ("released", dropped),
        ("released", kept),
        ("redeemed", made.redemption_id),
    }
    assert all(h.actor == Actor("api_key", CALLER) and h.code_norm == "SUMMER" for h in steps)
    by = {(h.kind, h.ref): h.details for h in steps}
    assert by[("reserved", kept)]["metadata"] == {"order": "o-9"}
    assert by[("released", dropped)] == {"reason": "released"}
    assert by[("released", kept)] == {"reason": "confirmed", "redemption_id": made.redemption_id}
    assert by[("redeemed", made.redemption_id)]["reservation_id"] == kept


async def test_ending_tells_how_and_when_a_hold_ended() -> None:
    w = Holds()
    w.issue("WIN-AAAA")
    hid = await w.reserve("WIN-AAAA", ttl=20)
    hold = w.fk.reservations.rows[hid]
    assert ending(hold) is None
    w.fk.clock.advance(seconds=25)
    expired = await w.fk.reservations.settle(hold, "expired", w.fk.clock())
    assert expired is not None and ending(expired) == ("expired", hold.expires_at)
    assert await w.fk.reservations.settle(hold, "released", w.fk.clock()) is None  # once


# --- rollback: reason and rollback_restores_use ----------------------------------------------


async def test_a_rollback_keeps_the_use_when_the_definition_says_so() -> None:
    w = Holds(usage_limit={"limit_type": "global", "max_uses": 1}, rollback_restores_use=False)
    w.issue("SUMMER", user=None)
    rid = await w.redeem("SUMMER", "u-1")
    view = await w.service.rollback(TENANT, rid, CALLER, "order cancelled")
    assert (view.status, view.rollback_reason, view.use_kept) == (
        "rolled_back",
        "order cancelled",
        True,
    )
    assert await w.reason("SUMMER", "u-2") == "global_limit_reached"
    [back] = [e for e in w.fk.outbox.in_state("ready") if e.event.event_type.endswith("back")]
    assert back.event.model_dump()["reason"] == "order cancelled"
    assert back.event.model_dump()["use_kept"] is True
    assert back.history is not None
    assert back.history.details == {"reason": "order cancelled", "use_kept": True}


async def test_a_rollback_gives_the_use_back_by_default_and_carries_its_reason() -> None:
    w = Holds(usage_limit={"limit_type": "global", "max_uses": 1})
    w.issue("SUMMER", user=None)
    rid = await w.redeem("SUMMER", "u-1")
    view = await w.service.rollback(TENANT, rid, CALLER, "duplicate order")
    assert (view.use_kept, view.rollback_reason) == (False, "duplicate order")
    assert await w.reason("SUMMER", "u-2") is None


async def test_metadata_of_a_redeem_is_stored_announced_and_in_the_timeline() -> None:
    w = Holds()
    w.issue("WIN-AAAA")
    body = RedeemRequest(code="WIN-AAAA", user_id="u-1", metadata={"order": {"id": 5}})
    view, _ = await w.service.redeem(TENANT, body, CALLER)
    assert view.metadata == {"order": {"id": 5}}
    [entry] = w.fk.outbox.in_state("ready")
    assert entry.event.model_dump()["metadata"] == {"order": {"id": 5}}
    assert entry.history is not None and entry.history.details["metadata"] == {"order": {"id": 5}}


def test_a_body_without_metadata_hashes_as_it_did_before_metadata_existed() -> None:
    """Keyed redeems stored before `metadata` existed still replay (their stored hash)."""
    before = hashlib.sha256(b'{"code":"WIN-AAAA","user_id":"u-1"}').hexdigest()
    assert request_hash(RedeemRequest(code="WIN-AAAA", user_id="u-1")) == before
    with_metadata = RedeemRequest(code="WIN-AAAA", user_id="u-1", metadata={"a": 1})
    assert request_hash(with_metadata) != before
