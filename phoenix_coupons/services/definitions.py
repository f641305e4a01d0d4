"""Coupon definitions: create, read, update (name, description, config), status, archive."""

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from phoenix_coupons.domain import codes, expiry, issue_keys
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.config_rules import merge_patch, validated
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.errors import (
    Conflict,
    DuplicateCodes,
    FieldError,
    NotFound,
    ValidationFailed,
)
from phoenix_coupons.domain.models import Coupon, Requester
from phoenix_coupons.services.ports import (
    CouponRepo,
    DefinitionRepo,
    ExpirySchedule,
    IdFactory,
    IssuanceBudgets,
    Page,
    RewardRepo,
)
from schemas.coupons import (
    CouponConfig,
    CouponDefinition,
    DefinitionCreate,
    DefinitionUpdate,
    DefinitionView,
    SettableStatus,
    Status,
)

LISTED_BY_DEFAULT: tuple[Status, ...] = ("active", "paused")


def definition_not_found(definition_id: str) -> NotFound:
    return NotFound(
        message=f"coupon definition {definition_id} not found", code="definition_not_found"
    )


def require_active(defn: CouponDefinition | None, definition_id: str) -> CouponDefinition:
    """The definition a generation is for: 404 without it, 409 unless it is active."""
    if defn is None:
        raise definition_not_found(definition_id)
    if defn.status != "active":
        raise Conflict(
            message=f"coupon definition {definition_id} is {defn.status}; "
            "only active definitions generate coupons",
            code=f"definition_{defn.status}",
        )
    return defn


def archived_conflict(definition_id: str) -> Conflict:
    return Conflict(
        message=f"coupon definition {definition_id} is archived and cannot change",
        code="definition_archived",
    )


def custom_code_taken(code: str) -> Conflict:
    return Conflict(
        message=f"custom_code {code!r} is already used in this tenant (case is ignored)",
        code="custom_code_taken",
        conflicts=[{"field": "config.custom_code", "code": code}],
    )


class DefinitionService:
    def __init__(
        self,
        repo: DefinitionRepo,
        rewards: RewardRepo,
        coupons: CouponRepo,
        clock: Clock,
        new_id: IdFactory,
        budgets: IssuanceBudgets,
        schedule: ExpirySchedule | None = None,
    ) -> None:
        """`schedule`: the coupons' expiry steps, planned again when a change of the
        definition may bring them earlier."""
        self._schedule = schedule
        self._repo = repo
        self._rewards = rewards
        self._coupons = coupons
        self._clock = clock
        self._new_id = new_id
        self._budgets = budgets

    async def create(
        self, tenant_id: str, body: DefinitionCreate, by: Requester | None = None
    ) -> CouponDefinition:
        """`by`: kept on its shared code (the code's timeline shows who set it)."""
        config = validated(body.config)
        await self._check_reward(tenant_id, config)
        now = self._clock()
        defn = CouponDefinition(
            id=self._new_id(),
            tenant_id=tenant_id,
            name=body.name,
            description=body.description,
            config=config,
            status="active",
            created_at=now,
            updated_at=now,
        )
        shared = self._shared_coupon(defn, by)
        if shared and await self._coupons.taken(tenant_id, [shared.code_norm]):
            raise custom_code_taken(shared.code)
        try:
            await self._repo.insert(defn, shared)
        except DuplicateCodes as exc:  # lost a race for the same code
            raise custom_code_taken(shared.code if shared else "") from exc
        return defn

    async def get(self, tenant_id: str, definition_id: str) -> CouponDefinition:
        defn = await self._repo.get(tenant_id, definition_id)
        if defn is None:
            raise definition_not_found(definition_id)
        return defn

    async def view(self, tenant_id: str, definition_id: str) -> DefinitionView:
        """The definition, with `issued` and `remaining` when it has an issuance limit."""
        defn = await self.get(tenant_id, definition_id)
        view = DefinitionView.model_validate(defn.model_dump())
        if defn.config.issuance_limit is not None:
            issued = await self._budgets.issued(tenant_id, definition_id)
            view.issued = issued
            view.remaining = max(0, defn.config.issuance_limit.max_coupons - issued)
        return view

    async def page(
        self,
        tenant_id: str | None,
        status: Status | None,
        include_archived: bool,
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> Page[CouponDefinition]:
        statuses: Sequence[Status]
        if status is not None:
            statuses = (status,)
        elif include_archived:
            statuses = (*LISTED_BY_DEFAULT, "archived")
        else:
            statuses = LISTED_BY_DEFAULT
        return await self._repo.page(tenant_id, statuses, limit, offset, after)

    async def update(
        self,
        tenant_id: str,
        definition_id: str,
        body: DefinitionUpdate,
        by: Requester | None = None,
    ) -> CouponDefinition:
        current = await self.get(tenant_id, definition_id)
        if current.status == "archived":
            raise archived_conflict(definition_id)
        changes = body.model_dump(exclude_unset=True)
        if "name" in changes and changes["name"] is None:
            raise ValidationFailed(
                message="name cannot be null", details=[FieldError("name", "must not be null")]
            )
        config = current.config
        if body.config is not None:
            config = validated(self._merged_config(current.config, body.config))
            if config.reward_item_id != current.config.reward_item_id:
                await self._check_reward(tenant_id, config)
        updated = current.model_copy(
            update={
                "name": changes.get("name", current.name),
                "description": changes.get("description", current.description),
                "config": config,
                "updated_at": self._clock(),
            }
        )
        old_code = current.config.custom_code if current.config.code_format == "custom" else None
        new_code = config.custom_code if config.code_format == "custom" else None
        shared_changed = (old_code and codes.normalize(old_code)) != (
            new_code and codes.normalize(new_code)
        )
        shared = self._shared_coupon(updated, by) if shared_changed else None
        if shared and await self._coupons.taken(tenant_id, [shared.code_norm]):
            raise custom_code_taken(shared.code)
        if config.issuance_limit is not None and current.config.issuance_limit is None:
            await self._count_issued(current)
        try:
            stored = await self._repo.replace(updated, shared, bool(shared_changed))
        except DuplicateCodes as exc:
            raise custom_code_taken(shared.code if shared else "") from exc
        if stored is None:
            raise archived_conflict(definition_id)
        if self._schedule is not None and expiry.reschedules(current.config, config):
            await self._schedule.recheck(tenant_id, definition_id, updated.updated_at)
        return stored

    async def set_status(
        self, tenant_id: str, definition_id: str, status: SettableStatus
    ) -> CouponDefinition:
        await self.get(tenant_id, definition_id)
        stored = await self._repo.set_status(tenant_id, definition_id, status, self._clock())
        if stored is None:
            raise archived_conflict(definition_id)
        return stored

    async def archive(self, tenant_id: str, definition_id: str) -> None:
        """Final: an archived definition no longer issues, changes or comes back. Idempotent."""
        current = await self.get(tenant_id, definition_id)
        if current.status != "archived":
            await self._repo.set_status(tenant_id, definition_id, "archived", self._clock())

    async def _count_issued(self, defn: CouponDefinition) -> None:
        """A limit set on a definition that issued coupons without one: its budget starts
        from the coupons stored (a kept count; its shared code is not issued)."""
        page = await self._coupons.definition_codes(defn.tenant_id, defn.id, None, 1, 0)
        shared = 1 if defn.config.code_format == "custom" and defn.config.custom_code else 0
        await self._budgets.count_from(defn.tenant_id, defn.id, max(0, page.total - shared))

    @staticmethod
    def _merged_config(current: CouponConfig, patch: dict[str, Any]) -> CouponConfig:
        merged = merge_patch(current.model_dump(mode="json"), patch)
        try:
            return CouponConfig.model_validate(merged)
        except ValidationError as exc:
            raise ValidationFailed(
                message="invalid coupon config",
                details=[
                    FieldError(".".join(["config", *(str(p) for p in err["loc"])]), err["msg"])
                    for err in exc.errors()
                ],
            ) from exc

    async def _check_reward(self, tenant_id: str, config: CouponConfig) -> None:
        if await self._rewards.get(tenant_id, config.reward_item_id) is None:
            raise ValidationFailed(
                message="invalid coupon config",
                details=[
                    FieldError(
                        "config.reward_item_id", "must be the id of a reward item of this tenant"
                    )
                ],
            )

    def _shared_coupon(self, defn: CouponDefinition, by: Requester | None) -> Coupon | None:
        """The definition's custom code as a coupon row any user may redeem."""
        code = defn.config.custom_code
        if defn.config.code_format != "custom" or code is None:
            return None
        factory = CouponFactory.of(defn, "definition")
        return factory.coupon(issue_keys.shared(defn.id), code, defn.updated_at, requester=by)
