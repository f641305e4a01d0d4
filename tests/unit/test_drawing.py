"""The shared draw-insert-retry loop (services/drawing.py) with a scripted RNG and an
in-memory insert: codes drawn distinct per round, collisions drawn again, coupons stored
before found by issue key, and what finds no code reported after the rounds."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from phoenix_coupons.domain.codes import DRAWS_FLOOR, CodeGenerator, CodeSpec
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.drawing import MAX_DRAW_ROUNDS, draw_and_insert
from tests.unit.test_codes import ScriptedRandom

SPEC = CodeSpec("P-", 4, case_sensitive=False)
AT = datetime(2030, 1, 1, tzinfo=UTC)


def build(item: str, code: str) -> Coupon:
    return Coupon(
        id=f"id-{item}",
        tenant_id="t",
        definition_id="d",
        reward_item_id="r",
        code=code,
        code_norm=code.upper(),
        kind="issued",
        source="bulk",
        issue_key=f"key-{item}",
        issued_at=AT,
    )


class Store:
    """Unique codes and issue keys, like the coupons' indexes."""

    def __init__(self, codes: Sequence[str] = (), keys: Mapping[str, str] | None = None) -> None:
        self.codes = set(codes)
        self.keys = dict(keys or {})  # issue key -> what is stored under it
        self.rounds: list[list[str]] = []

    async def insert(self, coupons: Sequence[Coupon]) -> list[int]:
        self.rounds.append([c.code for c in coupons])
        refused = []
        for i, c in enumerate(coupons):
            if c.code_norm in self.codes or c.issue_key in self.keys:
                refused.append(i)
            else:
                self.codes.add(c.code_norm)
                self.keys[c.issue_key] = c.code
        return refused

    async def stored(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: self.keys[k] for k in keys if k in self.keys}


async def test_every_item_gets_a_code_in_one_round_when_nothing_collides() -> None:
    store = Store()
    rng = ScriptedRandom("AAAA", "BBBB")
    drawn = await draw_and_insert(
        ["a", "b"], CodeGenerator(rng), lambda _: SPEC, build, store.insert, store.stored
    )
    assert [(p.item, p.coupon.code) for p in drawn.placed] == [("a", "P-AAAA"), ("b", "P-BBBB")]
    assert (drawn.found, drawn.left, store.rounds) == ([], [], [["P-AAAA", "P-BBBB"]])


async def test_a_code_repeated_within_a_round_is_drawn_again_before_inserting() -> None:
    store = Store()
    rng = ScriptedRandom("AAAA", "aaaa".upper(), "CCCC")
    drawn = await draw_and_insert(
        ["a", "b"], CodeGenerator(rng), lambda _: SPEC, build, store.insert
    )
    assert store.rounds == [["P-AAAA", "P-CCCC"]]
    assert len(drawn.placed) == 2


async def test_a_code_taken_in_storage_is_drawn_again_in_the_next_round() -> None:
    store = Store(codes=["P-AAAA"])
    rng = ScriptedRandom("AAAA", "BBBB", "CCCC")
    drawn = await draw_and_insert(
        ["a", "b"], CodeGenerator(rng), lambda _: SPEC, build, store.insert, store.stored
    )
    assert store.rounds == [["P-AAAA", "P-BBBB"], ["P-CCCC"]]
    assert sorted(p.coupon.code for p in drawn.placed) == ["P-BBBB", "P-CCCC"]


async def test_an_issue_key_stored_before_is_found_not_drawn_again() -> None:
    store = Store(keys={"key-a": "P-OLD1"})
    rng = ScriptedRandom("AAAA", "BBBB")
    drawn = await draw_and_insert(
        ["a", "b"], CodeGenerator(rng), lambda _: SPEC, build, store.insert, store.stored
    )
    assert [(f.item, f.stored) for f in drawn.found] == [("a", "P-OLD1")]
    assert [p.item for p in drawn.placed] == ["b"]
    assert len(store.rounds) == 1


async def test_without_a_look_up_every_refusal_is_a_collision_drawn_again() -> None:
    store = Store(keys={"key-a": "P-OLD1"})  # e.g. unkeyed bulk keys: never stored before
    rng = ScriptedRandom(*["AAAA", "BBBB"] + ["CCCC"] * (MAX_DRAW_ROUNDS - 1))
    drawn = await draw_and_insert(
        ["a", "b"], CodeGenerator(rng), lambda _: SPEC, build, store.insert
    )
    assert drawn.found == [] and drawn.left == ["a"]
    assert len(store.rounds) == MAX_DRAW_ROUNDS


async def test_what_finds_no_free_code_within_the_rounds_is_left() -> None:
    store = Store(codes=["P-AAAA"])
    rng = ScriptedRandom(*["AAAA"] * 3)
    drawn = await draw_and_insert(
        ["a"], CodeGenerator(rng), lambda _: SPEC, build, store.insert, store.stored, rounds=3
    )
    assert (drawn.placed, drawn.left) == ([], ["a"])
    assert store.rounds == [["P-AAAA"]] * 3


def test_a_draw_that_keeps_colliding_gives_up_within_its_budget() -> None:
    rng = ScriptedRandom(*["AAAA"] * (2 * 20 + DRAWS_FLOOR))
    assert CodeGenerator(rng).draw([SPEC, SPEC]) == ["P-AAAA", None]
    assert rng.draws == []


def test_each_item_is_drawn_by_its_own_spec() -> None:
    rng = ScriptedRandom("AAAA", "bbbbbb")
    assert CodeGenerator(rng).draw([SPEC, CodeSpec("x", 6, case_sensitive=True)]) == [
        "P-AAAA",
        "xbbbbbb",
    ]
