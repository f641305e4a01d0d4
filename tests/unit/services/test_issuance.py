"""Issuance's two steps (services/issuance.py), without servers: the plan (matching ->
the coupons wanted, one per issue key) and the store (codes drawn, coupons built by the
domain's factory, each with the record it is stored for)."""

from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.codes import CodeGenerator
from phoenix_coupons.domain.delivery import RecordId
from phoenix_coupons.domain.inbound import AchievementCompleted, AchievementData
from phoenix_coupons.domain.matching import DefinitionIndex
from phoenix_coupons.services.drawing import MAX_DRAW_ROUNDS
from phoenix_coupons.services.issuance import IssuanceService
from phoenix_coupons.services.ports import StoredCoupon
from tests.fakes import FakeClock, FakeCouponRepo, Fakes, coupon
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


def service(coupons: FakeCouponRepo | None = None, *draws: str) -> IssuanceService:
    index = DefinitionIndex(
        [definition(id="def-1"), definition(id="def-2"), definition(id="def-3", enabled=False)]
    )
    rng = ScriptedRandom(*draws) if draws else None
    return IssuanceService(
        coupons or FakeCouponRepo(),
        lambda: index,
        CodeGenerator(rng),
        FakeClock(NOW),
        Fakes().budget(),
    )


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
    coupons = FakeCouponRepo()
    issuance = service(coupons, "ABCDEFGH", "JKMNPQRS")
    plan = issuance.plan([event("e-1")])
    records = {w.key: RecordId("ach", 0, 7) for w in plan.wanted}
    outcome = await issuance.store(plan, records)
    assert [p.item.definition.id for p in outcome.placed] == ["def-1", "def-2"]
    assert (outcome.found, outcome.failed) == ([], [])
    stored = coupons.rows[outcome.placed[0].coupon.id]
    first = stored.coupon
    assert stored.record == RecordId("ach", 0, 7)
    assert (first.code, first.source, first.kind) == ("WINABCDEFGH", "event", "issued")
    assert (first.user_id, first.trigger_event_id, first.issued_at) == ("u-1", "e-1", NOW)
    assert first.id == issue_keys.coupon_id(first.issue_key)
    assert first.code_space == "WIN:8"


async def test_a_wanted_coupon_stored_before_is_handed_back_found() -> None:
    key = issue_keys.event("def-1", "u-1", "ach-1")
    before = StoredCoupon(coupon(key, "WINOLD", TENANT), RecordId("ach", 0, 3))
    coupons = FakeCouponRepo()
    coupons.add(before.coupon, record=before.record)
    issuance = service(coupons, "ABCDEFGH", "JKMNPQRS")
    plan = issuance.plan([event("e-1")])
    outcome = await issuance.store(plan, {})
    assert [(f.item.key, f.stored) for f in outcome.found] == [(key, before)]
    assert [p.item.definition.id for p in outcome.placed] == ["def-2"]


async def test_a_code_taken_in_the_tenant_is_drawn_again_another_tenant_s_is_not() -> None:
    coupons = FakeCouponRepo()
    coupons.add(coupon("mine", "WINABCDEFGH", TENANT))
    coupons.add(coupon("theirs", "WINJKMNPQRS", "tenant-2"))
    issuance = service(coupons, "ABCDEFGH", "JKMNPQRS", "TUVWXYZ2")
    outcome = await issuance.store(issuance.plan([event("e-1")]), {})
    assert sorted(p.coupon.code for p in outcome.placed) == ["WINJKMNPQRS", "WINTUVWXYZ2"]
    assert coupons.attempts == [["WINABCDEFGH", "WINJKMNPQRS"], ["WINTUVWXYZ2"]]


async def test_an_event_left_without_a_free_code_is_reported_failed() -> None:
    coupons = FakeCouponRepo()
    coupons.add(coupon("mine", "WINABCDEFGH", TENANT))
    # def-1 draws the taken code every round; def-2 gets its code in the first.
    issuance = service(coupons, "ABCDEFGH", "JKMNPQRS", *["ABCDEFGH"] * (MAX_DRAW_ROUNDS - 1))
    outcome = await issuance.store(issuance.plan([event("e-1")]), {})
    assert [p.item.definition.id for p in outcome.placed] == ["def-2"]
    assert outcome.failed == [0]
