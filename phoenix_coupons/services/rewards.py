"""Reward items: what a coupon grants."""

import json
from typing import Any

from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from phoenix_coupons.services.ports import DefinitionRepo, IdFactory, Page, RewardRepo
from schemas.rewards import RewardItem, RewardItemCreate, RewardItemUpdate


def reward_not_found(item_id: str) -> NotFound:
    return NotFound(message=f"reward item {item_id} not found", code="reward_item_not_found")


def payload_size(payload: dict[str, Any]) -> int:
    """Bytes of the payload as compact UTF-8 JSON."""
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


class RewardService:
    def __init__(
        self,
        repo: RewardRepo,
        definitions: DefinitionRepo,
        clock: Clock,
        new_id: IdFactory,
        payload_max_bytes: int,
    ) -> None:
        self._repo = repo
        self._definitions = definitions
        self._clock = clock
        self._new_id = new_id
        self._payload_max_bytes = payload_max_bytes

    def _check_payload(self, payload: dict[str, Any] | None) -> None:
        """Each redemption copies the payload into its document and its event: a large one
        would make every redemption large (and its event too large for Kafka)."""
        if payload is None:
            return
        size = payload_size(payload)
        if size > self._payload_max_bytes:
            raise ValidationFailed(
                message="the reward payload is too large",
                details=[
                    FieldError(
                        "payload",
                        f"must be at most {self._payload_max_bytes} bytes as compact UTF-8 "
                        f"JSON; it is {size}",
                    )
                ],
            )

    async def create(self, tenant_id: str, body: RewardItemCreate) -> RewardItem:
        self._check_payload(body.payload)
        now = self._clock()
        item = RewardItem(
            item_id=self._new_id(),
            tenant_id=tenant_id,
            created_at=now,
            updated_at=now,
            **body.model_dump(),
        )
        await self._repo.insert(item)
        return item

    async def get(self, tenant_id: str, item_id: str) -> RewardItem:
        item = await self._repo.get(tenant_id, item_id)
        if item is None:
            raise reward_not_found(item_id)
        return item

    async def page(
        self, tenant_id: str, limit: int, offset: int, after: str | None = None
    ) -> Page[RewardItem]:
        return await self._repo.page(tenant_id, limit, offset, after)

    async def update(self, tenant_id: str, item_id: str, body: RewardItemUpdate) -> RewardItem:
        fields = body.model_dump(exclude_unset=True)
        if not fields:
            return await self.get(tenant_id, item_id)
        nulls = [f for f in ("name", "reward_type", "payload") if f in fields and fields[f] is None]
        if nulls:
            raise ValidationFailed(
                message="required fields cannot be null",
                details=[FieldError(f, "must not be null") for f in nulls],
            )
        self._check_payload(fields.get("payload"))
        item = await self._repo.update(tenant_id, item_id, fields, self._clock())
        if item is None:
            raise reward_not_found(item_id)
        return item

    async def delete(self, tenant_id: str, item_id: str) -> None:
        await self.get(tenant_id, item_id)
        users = await self._definitions.references_reward(tenant_id, item_id)
        if users:
            raise Conflict(
                message=f"reward item {item_id} is granted by {len(users)} coupon definition(s) "
                "that are not archived; archive them first",
                code="reward_item_in_use",
                conflicts=[{"definition_id": d} for d in users],
            )
        await self._repo.delete(tenant_id, item_id)
