"""A code's timeline (services/history.py through CouponQueries.history) on the fakes: the
steps read from the coupon (issued by an event, a bulk request or its definition; revoked)
merged in time order with the stored steps, every offset and cursor page a slice of the whole,
what an earlier holder of the code left kept out, and the look-up rules of the code queries."""

from datetime import datetime, timedelta
from typing import Any

import pytest

from phoenix_coupons.domain.codes import CodeGenerator
from phoenix_coupons.domain.errors import CodeNotFound
from phoenix_coupons.domain.history import CLOCK_SKEW, Actor, HistoryEntry, HistoryKind
from phoenix_coupons.domain.models import Coupon, Requester
from phoenix_coupons.services.coupon_queries import CouponQueries
from phoenix_coupons.services.definitions import DefinitionService
from phoenix_coupons.services.generation import GenerationService
from schemas.coupons import DefinitionCreate, DefinitionUpdate, GenerateRequest
from schemas.history import CodeHistory
from tests.fakes import EPOCH, FakeLookupLimiter, Fakes, coupon
from tests.unit.services import given
from tests.unit.services.given import OTHER_TENANT, TENANT
from tests.unit.test_codes import ScriptedRandom

CALLER = "key-reader"


class World:
    def __init__(self, lookups: FakeLookupLimiter | None = None) -> None:
        self.fk = Fakes()
        if lookups is not None:
            self.fk.lookups = lookups
        self.queries = CouponQueries(
            self.fk.coupons,
            self.fk.definitions,
            self.fk.redemptions,
            self.fk.clock,
            self.fk.lookups,
            self.fk.history,
        )

    def issue(self, code: str = "WIN-AAAA", **fields: Any) -> Coupon:
        made = coupon(f"k-{code}", code, TENANT, user_id="u-1", trigger_event_id="evt-1", **fields)
        self.fk.coupons.add(made)
        return made

    async def step(
        self, c: Coupon, at: datetime, kind: HistoryKind, ref: str, **details: Any
    ) -> HistoryEntry:
        entry = HistoryEntry(
            c.tenant_id, c.code_norm, at, kind, ref, Actor("api_key", "key-x"), details
        )
        await self.fk.history.record([entry])
        return entry

    async def page(
        self, code: str, limit: int = 50, offset: int = 0, after: str | None = None
    ) -> CodeHistory:
        return await self.queries.history(TENANT, code, CALLER, limit, offset, after)


def kinds(body: CodeHistory) -> list[str]:
    return [e.type for e in body.events]


# --- the coupon's own steps -----------------------------------------------------------------


async def test_an_event_coupons_issuance_names_the_event() -> None:
    w = World()
    c = w.issue()
    body = await w.page("win-aaaa")  # case is ignored, as the other code queries ignore it
    assert (body.code, body.coupon_id, body.next_after) == ("WIN-AAAA", c.id, None)
    [issued] = body.events
    assert (issued.at, issued.type) == (EPOCH, "issued")
    assert issued.actor is not None
    assert (issued.actor.type, issued.actor.id) == ("event", "evt-1")
    assert issued.details == {
        "source": "event",
        "kind": "issued",
        "definition_id": "def-1",
        "user_id": "u-1",
    }


async def test_a_bulk_coupons_issuance_names_the_key_and_the_request() -> None:
    w = World()
    reward = given.reward(w.fk)
    defn = given.definition(w.fk, reward.item_id)
    generation = GenerationService(
        w.fk.definitions,
        w.fk.coupons,
        w.fk.outbox,
        w.fk.idempotency,
        CodeGenerator(ScriptedRandom("BYKEYABC")),
        w.fk.clock,
        w.fk.ids,
        lambda: None,
        10,
        w.fk.budget(),
    )
    body = GenerateRequest(user_ids=["u-7"])
    answer = await generation.generate(TENANT, defn.id, body, None, Requester("key-w", "req-9"))
    [issued] = (await w.page(answer.coupons[0].code)).events
    assert issued.actor is not None
    assert (issued.type, issued.actor.type, issued.actor.id) == ("issued", "api_key", "key-w")
    assert issued.details == {
        "source": "bulk",
        "kind": "issued",
        "definition_id": defn.id,
        "user_id": "u-7",
        "request_id": "req-9",
    }


async def test_a_shared_codes_issuance_is_by_the_key_that_set_it_on_its_definition() -> None:
    w = World()
    reward = given.reward(w.fk)
    definitions = DefinitionService(
        w.fk.definitions, w.fk.rewards, w.fk.coupons, w.fk.clock, w.fk.ids, w.fk.budgets
    )
    config = given.config(reward.item_id, code_format="custom", custom_code="SUMMER")
    config.update(code_prefix=None, code_length=None)
    body = DefinitionCreate.model_validate({"name": "summer", "config": config})
    defn = await definitions.create(TENANT, body, Requester("key-w", "req-1"))
    [issued] = (await w.page("summer")).events
    assert issued.actor is not None
    assert (issued.type, issued.at, issued.actor.id) == ("issued", defn.created_at, "key-w")
    assert issued.details == {
        "source": "definition",
        "kind": "shared",
        "definition_id": defn.id,
        "request_id": "req-1",
    }
    # The code changed: the new code's story starts then, by the key that changed it.
    w.fk.clock.advance(hours=1)
    change = DefinitionUpdate.model_validate({"config": {"custom_code": "WINTER"}})
    await definitions.update(TENANT, defn.id, change, Requester("key-v", None))
    [winter] = (await w.page("WINTER")).events
    assert winter.actor is not None
    assert (winter.at, winter.actor.id) == (w.fk.clock(), "key-v")
    with pytest.raises(CodeNotFound):
        await w.page("SUMMER")


async def test_a_coupon_stored_before_actors_were_kept_has_none() -> None:
    w = World()
    w.fk.coupons.add(coupon("shared:d", "OLDCODE", TENANT, kind="shared", source="definition"))
    w.fk.coupons.add(coupon("k-bulk", "OLD-BULK", TENANT, source="bulk", user_id="u-1"))
    for code in ("OLDCODE", "OLD-BULK"):
        [issued] = (await w.page(code)).events
        assert (issued.type, issued.actor) == ("issued", None)


async def test_a_revocation_is_the_last_step_with_the_key_that_revoked() -> None:
    w = World()
    c = w.issue()
    redeemed = await w.step(c, EPOCH + timedelta(minutes=1), "redeemed", "r-1")
    w.fk.clock.advance(minutes=2)
    await w.queries.revoke(TENANT, "win-aaaa", "key-admin")
    await w.step(c, EPOCH + timedelta(minutes=3), "expired", "x-1")  # after, in time order
    body = await w.page("WIN-AAAA")
    assert kinds(body) == ["issued", "redeemed", "revoked", "expired"]
    revoked = body.events[2]
    assert revoked.at == EPOCH + timedelta(minutes=2)
    assert revoked.actor is not None and (revoked.actor.type, revoked.actor.id) == (
        "api_key",
        "key-admin",
    )
    assert body.events[1].at == redeemed.at
    # Revoking again keeps the first revocation, and its actor.
    w.fk.clock.advance(minutes=5)
    await w.queries.revoke(TENANT, "win-aaaa", "key-other")
    again = (await w.page("WIN-AAAA")).events[2]
    assert again.actor is not None and (again.at, again.actor.id) == (revoked.at, "key-admin")


async def test_a_stored_step_carries_its_actor_and_details() -> None:
    w = World()
    c = w.issue()
    await w.step(c, EPOCH + timedelta(seconds=1), "rolled_back", "r-1", reason="order cancelled")
    rolled = (await w.page("WIN-AAAA")).events[1]
    assert rolled.type == "rolled_back"
    assert rolled.actor is not None and (rolled.actor.type, rolled.actor.id) == ("api_key", "key-x")
    assert rolled.details == {"reason": "order cancelled"}


# --- what belongs to the code's coupon ------------------------------------------------------


async def test_steps_before_the_coupons_issuance_are_an_earlier_holders() -> None:
    w = World()
    c = w.issue()
    await w.step(c, EPOCH - CLOCK_SKEW - timedelta(milliseconds=1), "redeemed", "old")
    skewed = await w.step(c, EPOCH - CLOCK_SKEW + timedelta(milliseconds=1), "redeemed", "r-1")
    body = await w.page("WIN-AAAA")
    assert [(e.type, e.at) for e in body.events] == [("redeemed", skewed.at), ("issued", EPOCH)]


async def test_a_longer_code_and_another_tenant_keep_their_steps() -> None:
    w = World()
    c = w.issue("WIN-AAAA")
    longer = w.issue("WIN-AAAAB")
    await w.step(longer, EPOCH + timedelta(seconds=1), "redeemed", "r-longer")
    elsewhere = coupon("k-other", "WIN-AAAA", OTHER_TENANT, user_id="u-1")
    w.fk.coupons.add(elsewhere)
    await w.step(elsewhere, EPOCH + timedelta(seconds=1), "redeemed", "r-other")
    assert kinds(await w.page(c.code)) == ["issued"]
    assert kinds(await w.page(longer.code)) == ["issued", "redeemed"]


async def test_an_unknown_code_or_another_tenants_is_not_found_and_counted() -> None:
    w = World(FakeLookupLimiter())
    other = coupon("k-o", "THEIRS-1", OTHER_TENANT, user_id="u-1")
    w.fk.coupons.add(other)
    for code in ("NOPE-1", "THEIRS-1"):
        with pytest.raises(CodeNotFound):
            await w.page(code)
    assert w.fk.lookups.failures == {(CALLER, TENANT): 2}
    w.issue()
    await w.page("WIN-AAAA")  # a hit is not counted (the refusal at the limit: the API's)
    assert w.fk.lookups.failures == {(CALLER, TENANT): 2}


# --- pages -----------------------------------------------------------------------------------


async def timeline_of_twelve(w: World) -> list[tuple[str, datetime]]:
    """A revoked coupon with ten stored steps around its own two (some in the same ms):
    the whole timeline, as (type, at)."""
    c = w.issue()
    for i in range(10):
        at = EPOCH + timedelta(seconds=i // 2)  # pairs share a millisecond
        await w.step(c, at, "redeemed" if i % 2 else "rolled_back", f"r-{i:02d}")
    w.fk.clock.now = EPOCH + timedelta(seconds=2)  # revoked amid the stored steps
    await w.queries.revoke(TENANT, c.code, "key-admin")
    whole = await w.page(c.code, limit=500)
    assert len(whole.events) == 12 and whole.next_after is None
    ats = [e.at for e in whole.events]
    assert ats == sorted(ats) and kinds(whole)[0] == "issued"
    return [(e.type, e.at) for e in whole.events]


async def test_every_offset_page_is_the_slice_of_the_whole_timeline() -> None:
    w = World()
    whole = await timeline_of_twelve(w)
    for limit in range(1, 14):
        for offset in range(14):
            page = await w.page("WIN-AAAA", limit, offset)
            assert [(e.type, e.at) for e in page.events] == whole[offset : offset + limit], (
                limit,
                offset,
            )
            assert (page.next_after is not None) == (offset + limit < len(whole))


async def test_cursor_pages_walk_the_whole_timeline_once() -> None:
    w = World()
    whole = await timeline_of_twelve(w)
    for limit in (1, 2, 5, 11, 12):
        walked: list[tuple[str, datetime]] = []
        after: str | None = None
        while True:
            page = await w.page("WIN-AAAA", limit, after=after)
            walked += [(e.type, e.at) for e in page.events]
            if page.next_after is None:
                break
            after = page.next_after
        assert walked == whole, limit


async def test_a_first_page_reads_one_range() -> None:
    w = World()
    await timeline_of_twelve(w)
    w.fk.history.reads = 0
    await w.page("WIN-AAAA", limit=3)
    assert w.fk.history.reads == 1  # no counts at offset 0
