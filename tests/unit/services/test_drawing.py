"""The shared draw-insert-retry loop (services/drawing.py) with a scripted RNG and an
in-memory insert: codes drawn distinct per round, collisions drawn again, coupons stored
before found by issue key, and what finds no code reported after the rounds."""

from collections.abc import Sequence

from phoenix_coupons.domain.codes import DRAWS_FLOOR, CodeGenerator, CodeSpec
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.drawing import MAX_DRAW_ROUNDS, Drawn, draw_and_insert
from phoenix_coupons.services.ports import StoredCoupon
from tests.fakes import FakeCouponRepo, coupon
from tests.unit.test_codes import ScriptedRandom

SPEC = CodeSpec.random("P-", 4, case_sensitive=False)


def build(item: str, code: str) -> Coupon:
    return coupon(f"key-{item}", code, source="bulk")


def store(*codes: str, stored: Sequence[str] = ()) -> FakeCouponRepo:
    """`codes`: taken by other coupons; `stored`: items whose coupon is stored already."""
    coupons = FakeCouponRepo()
    coupons.add(*(build(f"other-{code}", code) for code in codes))
    coupons.add(*(build(item, f"P-OLD{i}") for i, item in enumerate(stored)))
    return coupons


async def draw(
    coupons: FakeCouponRepo,
    rng: ScriptedRandom,
    items: list[str],
    look_up: bool = True,
    rounds: int = MAX_DRAW_ROUNDS,
) -> Drawn[str, StoredCoupon]:
    return await draw_and_insert(
        items,
        CodeGenerator(rng),
        lambda _: SPEC,
        build,
        coupons.insert_unordered,
        coupons.stored_by_issue_keys if look_up else None,
        rounds,
    )


async def test_every_item_gets_a_code_in_one_round_when_nothing_collides() -> None:
    coupons = store()
    rng = ScriptedRandom("AAAA", "BBBB")
    drawn = await draw(coupons, rng, ["a", "b"])
    assert [(p.item, p.coupon.code) for p in drawn.placed] == [("a", "P-AAAA"), ("b", "P-BBBB")]
    assert (drawn.found, drawn.left, coupons.attempts) == ([], [], [["P-AAAA", "P-BBBB"]])


async def test_a_code_repeated_within_a_round_is_drawn_again_before_inserting() -> None:
    coupons = store()
    rng = ScriptedRandom("AAAA", "aaaa".upper(), "CCCC")
    drawn = await draw(coupons, rng, ["a", "b"], look_up=False)
    assert coupons.attempts == [["P-AAAA", "P-CCCC"]]
    assert len(drawn.placed) == 2


async def test_a_code_taken_in_storage_is_drawn_again_in_the_next_round() -> None:
    coupons = store("P-AAAA")
    rng = ScriptedRandom("AAAA", "BBBB", "CCCC")
    drawn = await draw(coupons, rng, ["a", "b"])
    assert coupons.attempts == [["P-AAAA", "P-BBBB"], ["P-CCCC"]]
    assert sorted(p.coupon.code for p in drawn.placed) == ["P-BBBB", "P-CCCC"]


async def test_an_issue_key_stored_before_is_found_not_drawn_again() -> None:
    coupons = store(stored=["a"])
    rng = ScriptedRandom("AAAA", "BBBB")
    drawn = await draw(coupons, rng, ["a", "b"])
    assert [(f.item, f.stored.coupon.code) for f in drawn.found] == [("a", "P-OLD0")]
    assert [p.item for p in drawn.placed] == ["b"]
    assert len(coupons.attempts) == 1


async def test_without_a_look_up_every_refusal_is_a_collision_drawn_again() -> None:
    coupons = store(stored=["a"])  # e.g. unkeyed bulk keys: never stored before
    rng = ScriptedRandom(*["AAAA", "BBBB"] + ["CCCC"] * (MAX_DRAW_ROUNDS - 1))
    drawn = await draw(coupons, rng, ["a", "b"], look_up=False)
    assert drawn.found == [] and drawn.left == ["a"]
    assert len(coupons.attempts) == MAX_DRAW_ROUNDS


async def test_what_finds_no_free_code_within_the_rounds_is_left() -> None:
    coupons = store("P-AAAA")
    rng = ScriptedRandom(*["AAAA"] * 3)
    drawn = await draw(coupons, rng, ["a"], rounds=3)
    assert (drawn.placed, drawn.left) == ([], ["a"])
    assert coupons.attempts == [["P-AAAA"]] * 3


def test_a_draw_that_keeps_colliding_gives_up_within_its_budget() -> None:
    rng = ScriptedRandom(*["AAAA"] * (2 * 20 + DRAWS_FLOOR))
    assert CodeGenerator(rng).draw([SPEC, SPEC]) == ["P-AAAA", None]
    assert rng.draws == []


def test_each_item_is_drawn_by_its_own_spec() -> None:
    rng = ScriptedRandom("AAAA", "bbbbbb")
    assert CodeGenerator(rng).draw([SPEC, CodeSpec.random("x", 6, case_sensitive=True)]) == [
        "P-AAAA",
        "xbbbbbb",
    ]
