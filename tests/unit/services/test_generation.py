"""Bulk generation (services/generation.py) on the fakes, with scripted codes: random and
custom codes, all-or-nothing conflicts, the code space, Idempotency-Key replays and the
definitions that do not generate."""

from typing import Any

import pytest

from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.codes import CodeGenerator
from phoenix_coupons.domain.errors import (
    CodeSpaceExhausted,
    Conflict,
    NotFound,
    ValidationFailed,
)
from phoenix_coupons.services.drawing import MAX_DRAW_ROUNDS
from phoenix_coupons.services.generation import GenerationService
from phoenix_coupons.services.idempotency import request_hash
from schemas.coupons import CouponDefinition, GenerateRequest
from tests.fakes import Fakes, coupon
from tests.unit.services import given
from tests.unit.services.given import TENANT
from tests.unit.test_codes import ScriptedRandom

MAX_USERS = 5


class World:
    def __init__(self, *draws: str, status: str = "active", **config: Any) -> None:
        self.fk = Fakes()
        self.rng = ScriptedRandom(*draws)
        self.reward = given.reward(self.fk)
        self.defn: CouponDefinition = given.definition(
            self.fk, self.reward.item_id, status=status, **config
        )
        self.issued = 0
        self.service = GenerationService(
            self.fk.definitions,
            self.fk.coupons,
            self.fk.outbox,
            self.fk.idempotency,
            CodeGenerator(self.rng),
            self.fk.clock,
            self.fk.ids,
            self._on_issued,
            MAX_USERS,
            self.fk.budget(),
        )

    def _on_issued(self) -> None:
        self.issued += 1

    async def generate(
        self, users: list[str], codes: list[str] | None = None, key: str | None = None
    ) -> list[tuple[str, str]]:
        body = GenerateRequest(user_ids=users, custom_codes=codes)
        answer = await self.service.generate(TENANT, self.defn.id, body, key)
        assert answer.generated == len(answer.coupons)
        return [(c.user_id, c.code) for c in answer.coupons]

    def stored(self) -> list[str]:
        return sorted(s.coupon.code for s in self.fk.coupons.rows.values())


CUSTOM: dict[str, Any] = {"code_format": "custom", "code_prefix": None, "code_length": None}


# --- random codes ---------------------------------------------------------------------------


async def test_random_codes_one_per_user_in_order() -> None:
    w = World("AAAAAAAA", "BBBBBBBB")
    assert await w.generate(["u-1", "u-2"]) == [("u-1", "WIN-AAAAAAAA"), ("u-2", "WIN-BBBBBBBB")]
    made = sorted((s.coupon for s in w.fk.coupons.rows.values()), key=lambda c: c.code)
    assert [(c.source, c.kind, c.code_space, c.issued_at) for c in made] == [
        ("bulk", "issued", "WIN-:8", w.fk.clock())
    ] * 2
    assert w.issued == 1


async def test_a_code_taken_in_the_tenant_is_drawn_again() -> None:
    w = World("AAAAAAAA", "BBBBBBBB", "CCCCCCCC")
    w.fk.coupons.add(coupon("other", "WIN-AAAAAAAA", TENANT))
    assert await w.generate(["u-1", "u-2"]) == [("u-1", "WIN-CCCCCCCC"), ("u-2", "WIN-BBBBBBBB")]


async def test_codes_not_found_within_the_rounds_exhaust_the_request() -> None:
    w = World(*["AAAAAAAA"] * MAX_DRAW_ROUNDS)
    w.fk.coupons.add(coupon("other", "WIN-AAAAAAAA", TENANT))
    with pytest.raises(CodeSpaceExhausted):
        await w.generate(["u-1"])
    assert w.issued == 0


async def test_a_request_that_cannot_fit_in_the_code_space_fails_before_drawing() -> None:
    # One random character: 31 codes, at most half of them used (below the rules' minimum
    # length, stored directly: the capacity check is the service's whatever the config).
    w = World(code_prefix="X", code_length=1)
    w.fk.coupons.add(*(coupon(f"o-{c}", f"X{c}", TENANT, code_space="X:1") for c in "ABCDEFGHJKMN"))
    with pytest.raises(CodeSpaceExhausted) as caught:
        await w.generate(["u-1", "u-2", "u-3", "u-4"])  # 12 + 4 > 31 / 2
    assert [d.field for d in caught.value.details] == ["user_ids"]
    assert w.rng.calls == []


# --- custom codes ---------------------------------------------------------------------------


async def test_custom_codes_are_stored_as_given() -> None:
    w = World(**CUSTOM)
    assert await w.generate(["u-1", "u-2"], ["Alpha-1", "Beta-2"]) == [
        ("u-1", "Alpha-1"),
        ("u-2", "Beta-2"),
    ]
    assert w.stored() == ["Alpha-1", "Beta-2"]


async def test_custom_codes_conflict_all_or_nothing() -> None:
    w = World(**CUSTOM)
    w.fk.coupons.add(coupon("other", "TAKEN", TENANT))
    with pytest.raises(Conflict) as caught:
        await w.generate(["u-1", "u-2", "u-3"], ["free-1", "taken", "FREE-1"])
    assert caught.value.code == "custom_codes_conflict"
    assert caught.value.conflicts == [
        {"code": "FREE-1", "reason": "repeated in the request"},
        {"code": "taken", "user_id": "u-2", "reason": "already used in this tenant"},
    ]
    assert w.stored() == ["TAKEN"]


async def test_a_code_taken_between_the_check_and_the_insert_still_conflicts() -> None:
    w = World(**CUSTOM)
    taken = w.fk.coupons.taken

    async def racing(tenant: str, norms: Any) -> set[str]:
        found = await taken(tenant, norms)
        if not w.fk.coupons.rows:  # a concurrent request stores one code after the check
            w.fk.coupons.add(coupon("racer", "B-2", TENANT))
        return found

    w.fk.coupons.taken = racing  # type: ignore[method-assign]
    with pytest.raises(Conflict) as caught:
        await w.generate(["u-1", "u-2"], ["A-1", "B-2"])
    assert [c["code"] for c in caught.value.conflicts] == ["B-2"]
    assert w.stored() == ["B-2"]  # the racer's, none of this request's


@pytest.mark.parametrize(
    ("codes", "field"),
    [
        (None, "custom_codes"),
        (["only-one"], "custom_codes"),
        (["ok", "bad code"], "custom_codes.1"),
    ],
)
async def test_custom_codes_one_valid_code_per_user(codes: list[str] | None, field: str) -> None:
    w = World(**CUSTOM)
    with pytest.raises(ValidationFailed) as caught:
        await w.generate(["u-1", "u-2"], codes)
    assert [d.field for d in caught.value.details] == [field]


async def test_a_random_definition_takes_no_custom_codes() -> None:
    w = World()
    with pytest.raises(ValidationFailed) as caught:
        await w.generate(["u-1"], ["MINE"])
    assert [d.field for d in caught.value.details] == ["custom_codes"]


# --- the users and the definition -----------------------------------------------------------


@pytest.mark.parametrize(
    ("users", "fields"),
    [
        (["u-1", " "], ["user_ids.1"]),
        (["u-1", "u-2", "u-1"], ["user_ids.2"]),
        ([f"u-{i}" for i in range(MAX_USERS + 1)], ["user_ids"]),
    ],
)
async def test_user_ids_are_checked_by_position(users: list[str], fields: list[str]) -> None:
    w = World()
    with pytest.raises(ValidationFailed) as caught:
        await w.generate(users)
    assert [d.field for d in caught.value.details] == fields
    assert w.stored() == []


@pytest.mark.parametrize("status", ["paused", "archived"])
async def test_only_an_active_definition_generates(status: str) -> None:
    w = World(status=status)
    with pytest.raises(Conflict) as caught:
        await w.generate(["u-1"])
    assert caught.value.code == f"definition_{status}"


async def test_an_unknown_or_another_tenant_s_definition_is_not_found() -> None:
    w = World()
    other = given.definition(w.fk, w.reward.item_id, tenant=given.OTHER_TENANT)
    for defn_id in ("no-such-definition", other.id):
        with pytest.raises(NotFound) as caught:
            await w.service.generate(TENANT, defn_id, GenerateRequest(user_ids=["u-1"]))
        assert caught.value.code == "definition_not_found"


# --- Idempotency-Key ------------------------------------------------------------------------


async def test_a_keyed_request_replays_its_answer_without_drawing_again() -> None:
    w = World("AAAAAAAA", "BBBBBBBB")
    first = await w.generate(["u-1", "u-2"], key="idem-1")
    assert await w.generate(["u-1", "u-2"], key="idem-1") == first
    assert len(w.fk.coupons.rows) == 2 and w.issued == 1


async def test_a_key_reused_with_another_body_is_refused_naming_the_header() -> None:
    w = World("AAAAAAAA")
    await w.generate(["u-1"], key="idem-1")
    with pytest.raises(ValidationFailed) as caught:
        await w.generate(["u-2"], key="idem-1")
    assert caught.value.code == "idempotency_key_reused"
    assert [d.field for d in caught.value.details] == ["Idempotency-Key"]


async def test_a_key_whose_request_is_still_running_conflicts() -> None:
    w = World()
    body = GenerateRequest(user_ids=["u-1"])
    key = f"generate:{TENANT}:{w.defn.id}:idem-1"
    await w.fk.idempotency.claim(key, request_hash(body), w.fk.clock())
    with pytest.raises(Conflict) as caught:
        await w.generate(["u-1"], key="idem-1")
    assert caught.value.code == "idempotency_key_in_progress"


async def test_a_failed_keyed_request_frees_its_key_for_a_retry() -> None:
    w = World(**CUSTOM)
    w.fk.coupons.add(coupon("other", "TAKEN", TENANT))
    with pytest.raises(Conflict):
        await w.generate(["u-1"], ["TAKEN"], key="idem-1")
    w.fk.coupons.delete_by_issue_key("other")
    assert await w.generate(["u-1"], ["TAKEN"], key="idem-1") == [("u-1", "TAKEN")]


async def test_a_keyed_retry_after_a_crash_keeps_the_coupons_stored_before() -> None:
    # The first attempt stored position 0's coupon and died before answering.
    w = World("BBBBBBBB")
    key = issue_keys.bulk(w.defn.id, "idem-1", 0, "")
    w.fk.coupons.add(coupon(key, "WIN-AAAAAAAA", TENANT, definition_id=w.defn.id, user_id="u-1"))
    assert await w.generate(["u-1", "u-2"], key="idem-1") == [
        ("u-1", "WIN-AAAAAAAA"),
        ("u-2", "WIN-BBBBBBBB"),
    ]
    assert len(w.fk.coupons.rows) == 2


# --- the outbox -----------------------------------------------------------------------------


def entries(w: World, state: str) -> list[tuple[str, str]]:
    return sorted((e.subject.id, e.event.code) for e in w.fk.announced(state))  # type: ignore[union-attr]


async def test_bulk_coupons_are_announced_through_the_outbox() -> None:
    """Each stored coupon's coupon.issued is ready (the relay sends it); the entries of codes
    that collided and of positions never placed are gone."""
    w = World("AAAAAAAA", "BBBBBBBB", "CCCCCCCC")
    w.fk.coupons.add(coupon("other", "WIN-AAAAAAAA", TENANT))
    await w.generate(["u-1", "u-2"])
    stored = sorted(
        (s.coupon.id, s.coupon.code) for s in w.fk.coupons.rows.values() if s.coupon.user_id
    )
    assert entries(w, "ready") == stored
    assert entries(w, "prepared") == []


async def test_an_exhausted_request_leaves_no_outbox_entry() -> None:
    w = World(*["AAAAAAAA"] * MAX_DRAW_ROUNDS)
    w.fk.coupons.add(coupon("other", "WIN-AAAAAAAA", TENANT))
    with pytest.raises(CodeSpaceExhausted):
        await w.generate(["u-1"])
    assert w.fk.outbox.entries == {} and w.fk.outbox.bundles == {}


async def test_custom_codes_are_announced_and_a_conflict_leaves_no_entry() -> None:
    w = World(**CUSTOM)
    await w.generate(["u-1"], ["Alpha-1"])
    assert [code for _, code in entries(w, "ready")] == ["Alpha-1"]
    taken = w.fk.coupons.taken

    async def racing(tenant: str, norms: Any) -> set[str]:
        w.fk.coupons.taken = taken  # type: ignore[method-assign]
        w.fk.coupons.add(coupon("racer", "BETA-2", TENANT))
        return set()

    w.fk.coupons.taken = racing  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        await w.generate(["u-2"], ["Beta-2"])
    assert [code for _, code in entries(w, "ready")] == ["Alpha-1"]
    assert entries(w, "prepared") == []
