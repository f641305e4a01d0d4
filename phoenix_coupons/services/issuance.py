"""Issuing coupons for a batch of inbound events, in two steps: `plan` matches the events
against the in-memory definitions and names the coupons wanted (pure), `store` draws their
codes and stores them with unordered bulk inserts. Which records are replays, which coupons
an earlier attempt stored and what is announced (again) is the redelivery's
(services/redelivery.py); the worker raises its inflight mark between the two steps."""

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import structlog

from phoenix_coupons.domain import codes, issue_keys
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.delivery import RecordId
from phoenix_coupons.domain.matching import DefinitionIndex, Event
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.budget import IssuanceBudget, issuance_limit
from phoenix_coupons.services.drawing import Found, Placed, draw_and_insert
from phoenix_coupons.services.ports import CouponRepo, StoredCoupon
from schemas.coupons import CouponDefinition

log = structlog.get_logger(__name__)

# The dead letter of an event whose coupon found no free code (kind, message).
NO_FREE_CODE = ("code_space_exhausted", "no free code left in the definition's code space")


class Wanted(NamedTuple):  # a tuple: one per match, in the worker's hot path
    """A coupon a matched event asks for; `pos`: the event's position in the batch."""

    pos: int
    key: str
    definition: CouponDefinition
    event: Event


@dataclass
class IssuePlan:
    """`wanted`: one per issue key, asked by its first position. `asked`: every position
    asking for each issue key (a batch may hold the same event more than once, in several
    records). `matched`: matches per event position. `at`: the time matched against, and
    the coupons' issue time."""

    at: datetime
    wanted: list[Wanted] = field(default_factory=list)
    asked: dict[str, list[int]] = field(default_factory=dict)
    matched: dict[int, int] = field(default_factory=dict)


@dataclass
class StoreOutcome:
    """`placed`: coupons stored now. `found`: coupons wanted that were stored before under
    the same issue key (by another record or attempt). `failed`: positions left without a
    free code (their records go to the dead-letter topic, `NO_FREE_CODE`). `over_budget`:
    coupons refused by their definition's issuance limit (no coupon, no dead letter)."""

    placed: list[Placed[Wanted]] = field(default_factory=list)
    found: list[Found[Wanted, StoredCoupon]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    over_budget: list[Wanted] = field(default_factory=list)


class IssuanceService:
    def __init__(
        self,
        coupons: CouponRepo,
        index: Callable[[], DefinitionIndex],
        codegen: codes.CodeGenerator,
        clock: Clock,
        budget: IssuanceBudget,
    ) -> None:
        self._coupons = coupons
        self._index = index
        self._codegen = codegen
        self._clock = clock
        self._budget = budget

    def plan(self, events: Sequence[Event], skip: Collection[str] = ()) -> IssuePlan:
        """`skip`: issue keys known to be stored (an earlier attempt's): not wanted again."""
        plan = IssuePlan(self._clock())
        if not events:
            return plan
        seen = set(skip)
        asked: dict[str, list[int]] = defaultdict(list)
        for pos, found in self._index().match_all(events, plan.at).items():
            event = events[pos]
            plan.matched[pos] = len(found)
            for match in found:
                key = issue_keys.event(match.definition.id, event.user_id, match.occurrence)
                asked[key].append(pos)
                if key not in seen:
                    seen.add(key)
                    plan.wanted.append(Wanted(pos, key, match.definition, event))
        plan.asked = asked
        return plan

    async def store(self, plan: IssuePlan, records: Mapping[str, RecordId]) -> StoreOutcome:
        """Stores the plan's coupons. `records`: the inbound record each issue key's coupon
        is stored for (kept with it for redeliveries). Coupons of definitions with an
        issuance limit are reserved first, in event order; those past it are not stored."""
        if not plan.wanted:
            return StoreOutcome()
        wanted, over, before = await self._within_budget(plan.wanted)

        factories: dict[str, CouponFactory] = {}

        def factory(wanted: Wanted) -> CouponFactory:  # once per definition
            found = factories.get(wanted.definition.id)
            if found is None:
                found = factories[wanted.definition.id] = CouponFactory.of(
                    wanted.definition, "event"
                )
            return found

        def spec(wanted: Wanted) -> codes.CodeSpec:
            drawn = factory(wanted).spec
            assert drawn is not None  # auto-generation needs random codes (config_rules.py)
            return drawn

        def build(wanted: Wanted, code: str) -> Coupon:
            made = factory(wanted)
            return made.coupon(
                wanted.key, code, plan.at, wanted.event.user_id, wanted.event.event_id
            )

        try:
            drawn = await draw_and_insert(
                wanted,
                self._codegen,
                spec,
                build,
                lambda coupons: self._coupons.insert_unordered(coupons, records),
                self._coupons.stored_by_issue_keys,
            )
        except Exception:
            await self._settle_failed(wanted)
            raise
        # Reserved, not stored by us: stored meanwhile (that writer reserved it) or no code.
        await self._give_back([f.item for f in drawn.found] + drawn.left)
        found = before + drawn.found
        return StoreOutcome(drawn.placed, found, [w.pos for w in drawn.left], over)

    async def _within_budget(
        self, wanted: list[Wanted]
    ) -> tuple[list[Wanted], list[Wanted], list[Found[Wanted, StoredCoupon]]]:
        """(the coupons to store, those past their definition's issuance limit, those of
        limited definitions stored before). Coupons stored before take no budget: they
        are looked up first (by `_id`; only for definitions with a limit)."""
        limited = [w for w in wanted if issuance_limit(w.definition) is not None]
        if not limited:
            return wanted, [], []
        stored = await self._coupons.stored_by_issue_keys([w.key for w in limited])
        before = [Found(w, stored[w.key]) for w in limited if w.key in stored]
        wanted = [w for w in wanted if w.key not in stored]
        asks = Counter(w.definition.id for w in wanted if issuance_limit(w.definition) is not None)
        left: dict[str, int] = {}
        for w in wanted:  # one reservation per definition, for all its coupons of the batch
            if w.definition.id in asks and w.definition.id not in left:
                taken = await self._budget.take(w.definition, asks[w.definition.id], True)
                left[w.definition.id] = taken.granted
        keep: list[Wanted] = []
        over: list[Wanted] = []
        for w in wanted:  # in event order: the first ones get the units granted
            units = left.get(w.definition.id)
            if units is None or units > 0:
                keep.append(w)
                if units is not None:
                    left[w.definition.id] = units - 1
            else:
                over.append(w)
        return keep, over, before

    async def _settle_failed(self, wanted: Sequence[Wanted]) -> None:
        """An attempt that failed mid-write (MongoDB unreachable, say) gives back the places
        of the coupons it did not store, if MongoDB answers again: the retry reserves
        again for those, not for the ones stored. Else they stay taken: fewer issued, never
        more (a recount mends it)."""
        limited = [w for w in wanted if issuance_limit(w.definition) is not None]
        if not limited:
            return
        try:
            stored = await self._coupons.stored_by_issue_keys([w.key for w in limited])
            await self._give_back([w for w in limited if w.key not in stored])
        except Exception as exc:
            log.warning("issuance_budget_not_settled", coupons=len(limited), error=str(exc))

    async def _give_back(self, unstored: Sequence[Wanted]) -> None:
        definitions = {w.definition.id: w.definition for w in unstored}
        for defn_id, n in Counter(w.definition.id for w in unstored).items():
            await self._budget.give_back(definitions[defn_id], n)
