"""Coupon definitions (services/definitions.py) on the fakes: create, merge-patch update,
status and archive, the shared custom code (a coupon row, unique in the tenant) and the
reward item checks, with the clock and ids injected."""

from typing import Any

import pytest

from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.errors import Conflict, NotFound, ValidationFailed
from phoenix_coupons.services.definitions import DefinitionService
from schemas.coupons import CouponConfig, CouponDefinition, DefinitionCreate, DefinitionUpdate
from tests.fakes import Fakes, coupon
from tests.unit.services import given
from tests.unit.services.given import OTHER_TENANT, TENANT


class World:
    def __init__(self) -> None:
        self.fk = Fakes()
        self.reward = given.reward(self.fk)
        self.service = DefinitionService(
            self.fk.definitions,
            self.fk.rewards,
            self.fk.coupons,
            self.fk.clock,
            self.fk.ids,
            self.fk.budgets,
        )

    async def create(self, **fields: Any) -> CouponDefinition:
        body = DefinitionCreate(
            name="welcome",
            config=CouponConfig.model_validate(given.config(self.reward.item_id, **fields)),
        )
        return await self.service.create(TENANT, body)

    async def create_custom(self, code: str) -> CouponDefinition:
        return await self.create(
            code_format="custom", code_prefix=None, code_length=None, custom_code=code
        )

    async def update(self, defn: CouponDefinition, **changes: Any) -> CouponDefinition:
        body = DefinitionUpdate.model_validate(changes)
        return await self.service.update(TENANT, defn.id, body)

    def shared_codes(self) -> list[str]:
        return sorted(
            s.coupon.code for s in self.fk.coupons.rows.values() if s.coupon.kind == "shared"
        )


async def test_create_fills_defaults_ids_and_times() -> None:
    w = World()
    defn = await w.create(code_length=None)
    assert (defn.status, defn.config.code_length) == ("active", 8)
    assert defn.created_at == defn.updated_at == w.fk.clock()
    assert await w.service.get(TENANT, defn.id) == defn
    assert w.shared_codes() == []


async def test_a_reward_item_of_another_tenant_is_refused() -> None:
    w = World()
    theirs = given.reward(w.fk, tenant=OTHER_TENANT)
    with pytest.raises(ValidationFailed) as caught:
        await w.service.create(
            TENANT,
            DefinitionCreate(
                name="x", config=CouponConfig.model_validate(given.config(theirs.item_id))
            ),
        )
    assert [d.field for d in caught.value.details] == ["config.reward_item_id"]
    assert w.fk.definitions.rows == {}


async def test_a_broken_config_names_each_field() -> None:
    w = World()
    with pytest.raises(ValidationFailed) as caught:
        await w.create(custom_code="NOPE", usage_limit={"limit_type": "global"})
    assert {d.field for d in caught.value.details} == {
        "config.custom_code",
        "config.usage_limit.max_uses",
    }


# --- the shared custom code -----------------------------------------------------------------


async def test_a_custom_definition_stores_its_code_as_a_shared_coupon() -> None:
    w = World()
    defn = await w.create_custom("Summer-25")
    shared = (await w.fk.coupons.by_issue_keys([issue_keys.shared(defn.id)]))[
        issue_keys.shared(defn.id)
    ]
    assert (shared.code, shared.kind, shared.source, shared.user_id) == (
        "Summer-25",
        "shared",
        "definition",
        None,
    )


async def test_a_custom_code_taken_in_the_tenant_ignoring_case_is_refused() -> None:
    w = World()
    await w.create_custom("Summer-25")
    with pytest.raises(Conflict) as caught:
        await w.create_custom("SUMMER-25")
    assert caught.value.code == "custom_code_taken"
    assert len(w.fk.definitions.rows) == 1
    w.fk.coupons.add(coupon("issued", "WIN-AAAA", TENANT))  # an issued code counts too
    with pytest.raises(Conflict):
        await w.create_custom("win-aaaa")


async def test_a_custom_code_lost_to_a_concurrent_request_is_refused_and_nothing_stored() -> None:
    w = World()
    taken = w.fk.coupons.taken

    async def racing(tenant: str, norms: Any) -> set[str]:
        found = await taken(tenant, norms)
        w.fk.coupons.add(coupon("racer", "SUMMER-25", TENANT))  # after the check
        return found

    w.fk.coupons.taken = racing  # type: ignore[method-assign]
    with pytest.raises(Conflict) as caught:
        await w.create_custom("Summer-25")
    assert caught.value.code == "custom_code_taken"
    assert w.fk.definitions.rows == {}


async def test_changing_the_custom_code_swaps_the_shared_row() -> None:
    w = World()
    defn = await w.create_custom("Summer-25")
    await w.update(defn, config={"custom_code": "Winter-25"})
    assert w.shared_codes() == ["Winter-25"]
    await w.update(defn, config={"custom_code": "WINTER-25"})  # the same code, ignoring case
    assert w.shared_codes() == ["Winter-25"]


async def test_changing_to_a_taken_custom_code_keeps_the_old_one() -> None:
    w = World()
    defn = await w.create_custom("Summer-25")
    await w.create_custom("Winter-25")
    with pytest.raises(Conflict) as caught:
        await w.update(defn, config={"custom_code": "winter-25"})
    assert caught.value.code == "custom_code_taken"
    assert w.shared_codes() == ["Summer-25", "Winter-25"]
    assert (await w.service.get(TENANT, defn.id)).config.custom_code == "Summer-25"


# --- updates --------------------------------------------------------------------------------


async def test_an_update_merge_patches_the_config_and_keeps_the_rest() -> None:
    w = World()
    defn = await w.create(code_prefix="WIN-", usage_limit={"limit_type": "per_user", "max_uses": 1})
    w.fk.clock.advance(minutes=5)
    updated = await w.update(
        defn,
        name="renamed",
        config={"usage_limit": {"max_uses": 3}, "code_prefix": None},
    )
    assert updated.name == "renamed"
    assert updated.config.usage_limit.model_dump() == {"limit_type": "per_user", "max_uses": 3}
    assert updated.config.code_prefix is None  # null resets a key
    assert updated.config.code_length == 8
    assert (updated.created_at, updated.updated_at) == (defn.created_at, w.fk.clock())
    assert await w.service.get(TENANT, defn.id) == updated


async def test_an_update_that_breaks_the_config_names_the_field_and_changes_nothing() -> None:
    w = World()
    defn = await w.create()
    with pytest.raises(ValidationFailed) as caught:
        await w.update(defn, config={"usage_limit": {"limit_type": "sometimes"}})
    assert [d.field for d in caught.value.details] == ["config.usage_limit.limit_type"]
    with pytest.raises(ValidationFailed) as null_name:
        await w.update(defn, name=None)
    assert [d.field for d in null_name.value.details] == ["name"]
    assert await w.service.get(TENANT, defn.id) == defn


async def test_an_update_to_another_tenant_s_reward_item_is_refused() -> None:
    w = World()
    defn = await w.create()
    theirs = given.reward(w.fk, tenant=OTHER_TENANT)
    with pytest.raises(ValidationFailed) as caught:
        await w.update(defn, config={"reward_item_id": theirs.item_id})
    assert [d.field for d in caught.value.details] == ["config.reward_item_id"]


# --- status, archive, lists -----------------------------------------------------------------


async def test_pause_resume_and_archive_which_is_final() -> None:
    w = World()
    defn = await w.create()
    assert (await w.service.set_status(TENANT, defn.id, "paused")).status == "paused"
    assert (await w.service.set_status(TENANT, defn.id, "active")).status == "active"
    await w.service.archive(TENANT, defn.id)
    await w.service.archive(TENANT, defn.id)  # idempotent
    assert (await w.service.get(TENANT, defn.id)).status == "archived"
    for change in (
        w.service.set_status(TENANT, defn.id, "active"),
        w.update(defn, name="again"),
    ):
        with pytest.raises(Conflict) as caught:
            await change
        assert caught.value.code == "definition_archived"


async def test_an_unknown_or_another_tenant_s_definition_is_not_found() -> None:
    w = World()
    defn = await w.create()
    for tenant, defn_id in ((TENANT, "no-such-definition"), (OTHER_TENANT, defn.id)):
        with pytest.raises(NotFound) as caught:
            await w.service.get(tenant, defn_id)
        assert caught.value.code == "definition_not_found"


async def test_lists_are_newest_first_and_leave_archived_out_unless_asked() -> None:
    w = World()
    made = []
    for _ in range(3):
        made.append(await w.create())
        w.fk.clock.advance(minutes=1)
    await w.service.archive(TENANT, made[0].id)
    await w.service.set_status(TENANT, made[1].id, "paused")
    page = await w.service.page(TENANT, None, False, 10, 0)
    assert ([d.id for d in page.items], page.total) == ([made[2].id, made[1].id], 2)
    page = await w.service.page(TENANT, None, True, 1, 2)
    assert ([d.id for d in page.items], page.total) == ([made[0].id], 3)
    page = await w.service.page(TENANT, "paused", False, 10, 0)
    assert [d.id for d in page.items] == [made[1].id]
