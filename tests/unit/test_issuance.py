"""Issuance's two steps (services/issuance.py), without servers: the plan (matching ->
the coupons wanted, one per issue key) and the store (codes drawn, coupons built by the
domain's factory, each with the record it is stored for)."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.codes import CodeGenerator
from phoenix_coupons.domain.delivery import RecordId
from phoenix_coupons.domain.inbound import AchievementCompleted, AchievementData
from phoenix_coupons.domain.matching import DefinitionIndex
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.issuance import IssuanceService
from phoenix_coupons.services.ports import StoredCoupon
from tests.unit.test_codes import ScriptedRandom
from tests.unit.test_matching import NOW, TENANT, definition


def event(event_id: str, user: str = "u-1", achievement: str = "ach-1") -> AchievementCompleted:
    return AchievementCompleted(
        event_id=event_id,
        tenant_id=TENANT,
        user_id=user,
        occurred_at=NOW,
        data=AchievementData(achievement_id=achievement),
    )


class Coupons:
    """The coupon storage's calls issuance makes, in memory: `taken` issue keys refuse."""

    def __init__(self, taken: Mapping[str, StoredCoupon] | None = None) -> None:
        self.taken = dict(taken or {})
        self.inserted: list[tuple[Coupon, RecordId | None]] = []

    async def insert_unordered(
        self, coupons: Sequence[Coupon], records: Mapping[str, RecordId] | None = None
    ) -> list[int]:
        refused = [i for i, c in enumerate(coupons) if c.issue_key in self.taken]
        self.inserted += [
            (c, (records or {}).get(c.issue_key)) for i, c in enumerate(coupons) if i not in refused
        ]
        return refused

    async def stored_by_issue_keys(self, keys: Sequence[str]) -> dict[str, StoredCoupon]:
        return {k: self.taken[k] for k in keys if k in self.taken}


def service(coupons: Coupons | None = None, *draws: str) -> IssuanceService:
    index = DefinitionIndex(
        [definition(id="def-1"), definition(id="def-2"), definition(id="def-3", enabled=False)]
    )
    rng = ScriptedRandom(*draws) if draws else None
    return IssuanceService(coupons or Coupons(), lambda: index, CodeGenerator(rng), lambda: NOW)  # type: ignore[arg-type]


def test_each_match_wants_one_coupon_per_issue_key() -> None:
    events = [event("e-1"), event("e-2", achievement="other"), event("e-3", user="u-2")]
    plan = service().plan(events)
    assert plan.matched == {0: 2, 2: 2}
    assert [(w.pos, w.definition.id) for w in plan.wanted] == [
        (0, "def-1"),
        (0, "def-2"),
        (2, "def-1"),
        (2, "def-2"),
    ]
    assert plan.wanted[0].key == issue_keys.event("def-1", "u-1", "ach-1")
    assert plan.at == NOW


def test_the_same_occurrence_twice_in_a_batch_wants_one_coupon_asked_by_both() -> None:
    # A new event id, same occurrence (achievement): at most one coupon per definition.
    plan = service().plan([event("e-1"), event("e-1-again")])
    key = issue_keys.event("def-1", "u-1", "ach-1")
    assert [w.pos for w in plan.wanted if w.key == key] == [0]
    assert plan.asked[key] == [0, 1]


def test_keys_an_earlier_attempt_stored_are_not_wanted_again() -> None:
    stored = issue_keys.event("def-1", "u-1", "ach-1")
    plan = service().plan([event("e-1")], skip={stored})
    assert [w.definition.id for w in plan.wanted] == ["def-2"]
    assert plan.asked[stored] == [0]


def test_no_events_no_plan() -> None:
    plan = service().plan([])
    assert (plan.wanted, plan.matched, plan.asked) == ([], {}, {})


async def test_store_builds_event_coupons_with_their_records() -> None:
    coupons = Coupons()
    issuance = service(coupons, "ABCDEFGH", "JKMNPQRS")
    plan = issuance.plan([event("e-1")])
    records = {w.key: RecordId("ach", 0, 7) for w in plan.wanted}
    outcome = await issuance.store(plan, records)
    assert [p.item.definition.id for p in outcome.placed] == ["def-1", "def-2"]
    assert (outcome.found, outcome.failed) == ([], [])
    first, record = coupons.inserted[0]
    assert record == RecordId("ach", 0, 7)
    assert (first.code, first.source, first.kind) == ("WINABCDEFGH", "event", "issued")
    assert (first.user_id, first.trigger_event_id, first.issued_at) == ("u-1", "e-1", NOW)
    assert first.id == issue_keys.coupon_id(first.issue_key)
    assert first.code_space == "WIN:8"


async def test_a_wanted_coupon_stored_before_is_handed_back_found() -> None:
    key = issue_keys.event("def-1", "u-1", "ach-1")
    before = StoredCoupon(Coupon(**_fields(key)), RecordId("ach", 0, 3))  # type: ignore[arg-type]
    coupons = Coupons({key: before})
    issuance = service(coupons, "ABCDEFGH", "JKMNPQRS")
    plan = issuance.plan([event("e-1")])
    outcome = await issuance.store(plan, {})
    assert [(f.item.key, f.stored) for f in outcome.found] == [(key, before)]
    assert [p.item.definition.id for p in outcome.placed] == ["def-2"]


def _fields(key: str) -> dict[str, object]:
    return {
        "id": issue_keys.coupon_id(key),
        "tenant_id": TENANT,
        "definition_id": "def-1",
        "reward_item_id": "reward-1",
        "code": "WINOLD",
        "code_norm": "WINOLD",
        "kind": "issued",
        "source": "event",
        "issue_key": key,
        "issued_at": datetime(2030, 1, 1, tzinfo=UTC),
    }
