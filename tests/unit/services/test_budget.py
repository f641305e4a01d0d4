"""The issuance budget (services/budget.py) and its use by the worker's issuance and bulk
generation, on the fakes: never past the limit, all or nothing for bulk calls and in event
order for the worker, units given back for coupons not stored, coupons stored before taking
no budget, and `coupon.definition_exhausted` announced once per definition and limit."""

from dataclasses import replace
from typing import Any

import pytest

from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.codes import CodeGenerator
from phoenix_coupons.domain.delivery import RecordId
from phoenix_coupons.domain.errors import Conflict, DuplicateCodes, ValidationFailed
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.matching import DefinitionIndex
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.budget import IssuanceBudget
from phoenix_coupons.services.generation import GenerationService
from phoenix_coupons.services.issuance import IssuanceService
from schemas.coupons import CouponDefinition, GenerateRequest
from tests.fakes import Fakes, coupon
from tests.unit.services import given
from tests.unit.services.given import TENANT
from tests.unit.services.test_definitions import World
from tests.unit.services.test_issuance import event
from tests.unit.test_matching import definition


def limited(max_coupons: int, **fields: Any) -> CouponDefinition:
    """An auto-generating definition (tests/unit/test_matching.py) with an issuance limit."""
    data = definition(**fields).model_dump()
    data["config"]["issuance_limit"] = {"max_coupons": max_coupons}
    return CouponDefinition.model_validate(data)


def exhausted_id(defn: CouponDefinition, limit: int) -> str:
    return event_id("coupon.definition_exhausted", f"{defn.id}:{limit}")


# --- the rule -------------------------------------------------------------------------------


async def test_takes_never_pass_the_limit_all_or_nothing_or_partial() -> None:
    fk = Fakes()
    budget, defn = fk.budget(), limited(5)
    assert await budget.take(defn, 3, partial=False) == (3, 2)
    assert await budget.take(defn, 3, partial=False) == (0, 2), "all or nothing: none"
    assert await budget.take(defn, 3, partial=True) == (2, 0), "partial: what is left"
    assert await budget.take(defn, 1, partial=True) == (0, 0)
    assert await budget.issued(defn) == 5
    await budget.give_back(defn, 2)
    assert await budget.take(defn, 4, partial=True) == (2, 0)


async def test_a_definition_without_limit_takes_no_budget() -> None:
    fk = Fakes()
    budget, defn = fk.budget(), definition()
    assert await budget.take(defn, 10_000, partial=False) == (10_000, None)
    await budget.give_back(defn, 3)
    assert fk.budgets.counts == {} and fk.outbox.entries == {}


async def test_exhaustion_is_announced_once_by_whoever_takes_the_last_unit() -> None:
    fk = Fakes()
    budget, defn = fk.budget(), limited(2)
    await budget.take(defn, 1, partial=True)
    assert fk.outbox.entries == {}
    await budget.take(defn, 1, partial=True)
    entry_id = exhausted_id(defn, 2)
    assert fk.outbox.states == {entry_id: "ready"}
    entry = fk.outbox.entries[entry_id]
    assert entry.event.model_dump(exclude={"event_id"}) == {
        "event_type": "coupon.definition_exhausted",
        "occurred_at": fk.clock(),
        "tenant_id": defn.tenant_id,
        "definition_id": defn.id,
        "max_coupons": 2,
    }
    fk.outbox.sent(entry_id)  # the relay sent it: the entry is gone
    for _ in range(3):  # later refusals do not announce again
        assert await budget.take(defn, 1, partial=True) == (0, 0)
    assert fk.outbox.entries == {}


async def test_a_raised_limit_reached_again_is_announced_again() -> None:
    fk = Fakes()
    budget, defn = fk.budget(), limited(1)
    await budget.take(defn, 1, partial=True)
    raised = limited(3)
    assert await budget.take(raised, 5, partial=True) == (2, 0)
    assert set(fk.outbox.states) == {exhausted_id(defn, 1), exhausted_id(raised, 3)}


async def test_an_entry_left_by_a_crashed_announcer_is_not_doubled() -> None:
    fk = Fakes()
    budget, defn = fk.budget(), limited(1)
    await budget.take(defn, 1, partial=True)
    entry_id = exhausted_id(defn, 1)
    # Another writer's entry, prepared, its claim never made (it crashed in between):
    fk.budgets.claims.clear()
    fk.outbox.states[entry_id] = "prepared"
    await budget.take(defn, 1, partial=True)
    assert fk.outbox.states == {entry_id: "prepared"}, "left to the sweep: no second entry"
    await fk.outbox.discard([entry_id])  # the sweep drops it: no claim holds
    await budget.take(defn, 1, partial=True)
    assert fk.outbox.states == {entry_id: "ready"}, "the next refusal announces"


async def test_a_claim_lost_to_an_earlier_announcement_discards_its_entry() -> None:
    fk = Fakes()
    budget, defn = fk.budget(), limited(1)
    await budget.take(defn, 1, partial=True)
    fk.outbox.sent(exhausted_id(defn, 1))
    # A writer that read the budget before the claim was made: its entry goes, unsent.
    stale = IssuanceBudget(_Unclaimed(fk), fk.outbox, fk.clock, fk.ids)
    await stale.take(defn, 1, partial=True)
    assert fk.outbox.entries == {}


class _Unclaimed:
    """The fake budgets as a writer saw them before the claim (a stale read)."""

    def __init__(self, fk: Fakes) -> None:
        self._fk = fk

    async def reserve(self, *args: Any) -> Any:
        got = await self._fk.budgets.reserve(*args)
        return replace(got, exhausted=None)

    async def mark_exhausted(self, *args: Any) -> bool:
        return await self._fk.budgets.mark_exhausted(*args)


# --- the worker's issuance ------------------------------------------------------------------


def issuance(fk: Fakes, *definitions: CouponDefinition) -> IssuanceService:
    index = DefinitionIndex(list(definitions))
    return IssuanceService(fk.coupons, lambda: index, CodeGenerator(), fk.clock, fk.budget())


def records(plan: Any) -> dict[str, RecordId]:
    return {w.key: RecordId("ach", 0, w.pos) for w in plan.wanted}


async def test_the_worker_issues_up_to_the_limit_in_event_order() -> None:
    fk = Fakes()
    capped, free = limited(2, id="def-1"), definition(id="def-2")
    service = issuance(fk, capped, free)
    plan = service.plan([event(f"e-{i}", user=f"u-{i}") for i in range(4)])
    out = await service.store(plan, records(plan))
    placed = sorted((p.item.definition.id, p.item.pos) for p in out.placed)
    assert placed == [("def-1", 0), ("def-1", 1)] + [("def-2", i) for i in range(4)]
    assert [(w.definition.id, w.pos) for w in out.over_budget] == [("def-1", 2), ("def-1", 3)]
    assert out.failed == [], "over budget is no dead letter"
    assert await fk.budgets.issued(capped.tenant_id, "def-1") == 2
    assert fk.outbox.states == {exhausted_id(capped, 2): "ready"}


async def test_coupons_stored_before_take_no_budget() -> None:
    fk = Fakes()
    capped = limited(2)
    service = issuance(fk, capped)
    first = service.plan([event("e-1", user="u-1")])
    await service.store(first, records(first))
    # The same event again (another record, or a redelivery nothing looked up): found, and
    # the one unit left is still there for the next user.
    again = service.plan([event("e-1", user="u-1"), event("e-2", user="u-2")])
    out = await service.store(again, records(again))
    assert [f.item.pos for f in out.found] == [0]
    assert [p.item.pos for p in out.placed] == [1]
    assert out.over_budget == []
    assert await fk.budgets.issued(capped.tenant_id, capped.id) == 2


async def test_units_of_coupons_stored_meanwhile_are_given_back() -> None:
    fk = Fakes()
    capped = limited(3)
    service = issuance(fk, capped)
    plan = service.plan([event("e-1", user="u-1")])
    # Another worker stores the coupon between the look-up and the insert: refused on its
    # issue key, found, and its unit given back.
    key = issue_keys.event(capped.id, "u-1", "ach-1")
    look_up = fk.coupons.stored_by_issue_keys
    calls = 0

    async def racing(keys: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            found = await look_up(keys)
            fk.coupons.add(coupon(key, "WIN-OTHER123", capped.tenant_id, definition_id=capped.id))
            return found
        return await look_up(keys)

    fk.coupons.stored_by_issue_keys = racing  # type: ignore[method-assign]
    out = await service.store(plan, records(plan))
    assert [f.item.key for f in out.found] == [key] and out.placed == []
    assert await fk.budgets.issued(capped.tenant_id, capped.id) == 0


# --- bulk generation ------------------------------------------------------------------------


class Bulk:
    def __init__(self, max_coupons: int, **config: Any) -> None:
        self.fk = Fakes()
        self.reward = given.reward(self.fk)
        self.defn = given.definition(
            self.fk, self.reward.item_id, issuance_limit={"max_coupons": max_coupons}, **config
        )
        self.service = GenerationService(
            self.fk.definitions,
            self.fk.coupons,
            self.fk.outbox,
            self.fk.idempotency,
            CodeGenerator(),
            self.fk.clock,
            self.fk.ids,
            lambda: None,
            100,
            self.fk.budget(),
        )

    async def generate(self, users: list[str], key: str | None = None, **body: Any) -> int:
        request = GenerateRequest(user_ids=users, **body)
        return (await self.service.generate(TENANT, self.defn.id, request, key)).generated

    def stored(self) -> list[Coupon]:
        return [s.coupon for s in self.fk.coupons.rows.values()]


async def test_a_bulk_call_that_does_not_fit_is_refused_whole_saying_what_is_left() -> None:
    b = Bulk(5)
    assert await b.generate(["a", "b", "c"]) == 3
    with pytest.raises(Conflict) as refused:
        await b.generate(["d", "e", "f"])
    assert refused.value.code == "issuance_limit_reached"
    assert refused.value.conflicts == [
        {"field": "user_ids", "requested": 3, "remaining": 2, "max_coupons": 5}
    ]
    assert len(b.stored()) == 3 and b.fk.outbox.in_state("prepared") == []
    assert await b.generate(["d", "e"]) == 2
    assert exhausted_id(b.defn, 5) in b.fk.outbox.states


async def test_a_keyed_replay_takes_no_budget_twice() -> None:
    b = Bulk(3)
    assert await b.generate(["a", "b", "c"], key="k-1") == 3
    b.fk.idempotency.rows.clear()  # the key forgotten: the call runs again, same positions
    assert await b.generate(["a", "b", "c"], key="k-1") == 3
    assert len(b.stored()) == 3
    assert await b.fk.budgets.issued(TENANT, b.defn.id) == 3


async def test_custom_codes_refused_on_insert_give_their_units_back() -> None:
    b = Bulk(2, **{"code_format": "custom", "code_prefix": None, "code_length": None})

    async def taken(coupons: Any) -> None:
        raise DuplicateCodes("a concurrent request took them")

    b.fk.coupons.insert_atomic = taken  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        await b.generate(["a", "b"], custom_codes=["VIP-A", "VIP-B"])
    assert await b.fk.budgets.issued(TENANT, b.defn.id) == 0


async def test_bulk_metadata_is_stored_on_each_coupon_and_announced() -> None:
    b = Bulk(10)
    meta = {"campaign": "spring", "wave": 2}
    assert await b.generate(["a", "b"], metadata=meta) == 2
    assert [c.metadata for c in b.stored()] == [meta, meta]
    issued = [e.event for e in b.fk.announced("ready")]
    assert [getattr(e, "metadata", None) for e in issued] == [meta, meta]


# --- a definition's issued and remaining ----------------------------------------------------


async def test_get_shows_issued_and_remaining_only_with_a_limit() -> None:
    w = World()
    plain = await w.create()
    assert "issued" not in (await w.service.view(TENANT, plain.id)).model_dump(mode="json")
    capped = await w.create(issuance_limit={"max_coupons": 10})
    await w.fk.budget().take(capped, 4, partial=False)
    shown = (await w.service.view(TENANT, capped.id)).model_dump(mode="json")
    assert (shown["issued"], shown["remaining"]) == (4, 6)
    await w.update(capped, config={"issuance_limit": {"max_coupons": 3}})
    shown = (await w.service.view(TENANT, capped.id)).model_dump(mode="json")
    assert (shown["issued"], shown["remaining"]) == (4, 0), "a lowered limit leaves none"


async def test_a_limit_set_later_counts_the_coupons_stored_before() -> None:
    w = World()
    defn = await w.create()
    for i in range(3):
        w.fk.coupons.add(coupon(f"k-{i}", f"WIN-AAAA{i}BCD", TENANT, definition_id=defn.id))
    await w.update(defn, config={"issuance_limit": {"max_coupons": 5}})
    shown = (await w.service.view(TENANT, defn.id)).model_dump(mode="json")
    assert (shown["issued"], shown["remaining"]) == (3, 2)


@pytest.mark.parametrize("bad", [0, -1])
async def test_max_coupons_must_be_positive(bad: int) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await World().create(issuance_limit={"max_coupons": bad})
    assert [d.field for d in refused.value.details] == ["config.issuance_limit.max_coupons"]


# --- a write that fails midway ----------------------------------------------------------------


async def test_a_store_failing_midway_gives_back_the_places_of_coupons_not_stored() -> None:
    fk = Fakes()
    capped = limited(10)
    service = issuance(fk, capped)
    plan = service.plan([event(f"e-{i}", user=f"u-{i}") for i in range(4)])
    insert = fk.coupons.insert_unordered

    async def half_then_down(coupons: Any, records: Any = None) -> list[int]:
        await insert(coupons[:2], records)  # the first two land, then MongoDB goes away
        raise ConnectionError("MongoDB unreachable")

    fk.coupons.insert_unordered = half_then_down  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await service.store(plan, records(plan))
    assert await fk.budgets.issued(capped.tenant_id, capped.id) == 2
    fk.coupons.insert_unordered = insert  # type: ignore[method-assign]
    again = service.plan([event(f"e-{i}", user=f"u-{i}") for i in range(4)])
    out = await service.store(again, records(again))
    assert (len(out.placed), len(out.found)) == (2, 2)
    assert await fk.budgets.issued(capped.tenant_id, capped.id) == 4, "exact after the retry"


async def test_a_bulk_call_failing_midway_gives_back_what_it_did_not_store() -> None:
    b = Bulk(10)
    insert = b.fk.coupons.insert_unordered

    async def half_then_down(coupons: Any, records: Any = None) -> list[int]:
        await insert(coupons[:1], records)
        raise ConnectionError("MongoDB unreachable")

    b.fk.coupons.insert_unordered = half_then_down  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await b.generate(["a", "b", "c"], key="k-1")
    assert await b.fk.budgets.issued(TENANT, b.defn.id) == 1
    b.fk.coupons.insert_unordered = insert  # type: ignore[method-assign]
    assert await b.generate(["a", "b", "c"], key="k-1") == 3
    assert await b.fk.budgets.issued(TENANT, b.defn.id) == 3
