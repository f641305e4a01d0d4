"""Validate, redeem and roll back coupons; exact usage limits under concurrency. Their events
go through the outbox: prepared before the redemption is written, readied after."""

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace

from phoenix_coupons.domain import codes
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.errors import (
    CodeNotFound,
    Conflict,
    NotFound,
    Refused,
    SlotTaken,
)
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.outbox import redeemed, rolled_back
from phoenix_coupons.domain.redemption import (
    Redemption,
    UsageGroup,
    code_matches,
    free_slot,
    refusal,
    refused,
    usage_group,
)
from phoenix_coupons.services.idempotency import key_reused, request_hash
from phoenix_coupons.services.ports import (
    CouponRepo,
    DefinitionRepo,
    LookupLimiter,
    Outbox,
    RedemptionRepo,
    RewardRepo,
)
from schemas.coupons import CouponDefinition
from schemas.redemptions import Coupon as CouponView
from schemas.redemptions import RedeemRequest, ValidateResponse
from schemas.redemptions import Redemption as RedemptionView
from schemas.rewards import RewardItem

# Usage limits this small are served by trying their slots in order (per_user limits mostly).
SMALL_LIMIT = 4
REDEMPTION_NAMESPACE = uuid.UUID("8d1f2b9e-3c44-4f0a-9b6e-2a7c5e1d0f42")


def coupon_view(coupon: Coupon) -> CouponView:
    data = asdict(coupon)
    return CouponView.model_validate({k: data[k] for k in CouponView.model_fields})


def redemption_view(redemption: Redemption) -> RedemptionView:
    r = redemption
    return RedemptionView(
        redemption_id=r.id,
        status=r.state,
        user_id=r.user_id,
        redeemed_at=r.redeemed_at,
        rolled_back_at=r.rolled_back_at,
        coupon=r.coupon,
        reward=r.reward,
    )


class RedemptionService:
    def __init__(
        self,
        coupons: CouponRepo,
        definitions: DefinitionRepo,
        rewards: RewardRepo,
        redemptions: RedemptionRepo,
        clock: Clock,
        on_redeemed: Callable[[], None],
        lookups: LookupLimiter,
        outbox: Outbox,
    ) -> None:
        self._coupons = coupons
        self._definitions = definitions
        self._rewards = rewards
        self._redemptions = redemptions
        self._clock = clock
        self._on_redeemed = on_redeemed
        self._lookups = lookups
        self._outbox = outbox

    async def _load(
        self, tenant_id: str, body: RedeemRequest, caller: str
    ) -> tuple[Coupon, CouponDefinition, RewardItem]:
        """The coupon, its definition and reward, or the reason a redeem is refused now.
        `caller` (the API key id) is refused while over its failed look-up limit."""
        await self._lookups.check(caller, tenant_id)
        coupon = await self._coupons.by_code(tenant_id, codes.normalize(body.code))
        defn, reward = None, None
        if coupon is not None:
            # Both at once: the coupon names the reward its definition granted when issued.
            defn, reward = await asyncio.gather(
                self._definitions.get(tenant_id, coupon.definition_id),
                self._rewards.get(tenant_id, coupon.reward_item_id),
            )
        if coupon is None or defn is None or not code_matches(coupon, defn, body.code):
            await self._lookups.failed(caller, tenant_id)
            raise CodeNotFound()
        if reward is None or reward.item_id != defn.config.reward_item_id:  # config changed
            reward = await self._rewards.get(tenant_id, defn.config.reward_item_id)
        if reward is None:  # deleting a granted reward is refused; this is a broken state
            raise NotFound(
                message="the coupon's reward item no longer exists", code="reward_item_not_found"
            )
        return coupon, defn, reward

    async def validate(self, tenant_id: str, body: RedeemRequest, caller: str) -> ValidateResponse:
        try:
            coupon, defn, reward = await self._load(tenant_id, body, caller)
        except CodeNotFound as exc:
            return ValidateResponse(valid=False, reason=exc.code, coupon=None, reward=None)
        reason = refusal(coupon, defn, body.user_id, self._clock())
        if reason is None:
            group = usage_group(defn, body.user_id)
            limit = group.limit
            if limit is not None and await self._redemptions.active_count(group.key) >= limit:
                reason = group.refusal
        return ValidateResponse(
            valid=reason is None,
            reason=reason,
            coupon=coupon_view(coupon),
            reward=reward,
        )

    async def redeem(
        self,
        tenant_id: str,
        body: RedeemRequest,
        caller: str,
        idempotency_key: str | None = None,
    ) -> tuple[RedemptionView, bool]:
        """The redemption, and whether it is new (False: the replay of a keyed redeem). A
        replay looks up no code: it is answered even while `caller` is over its limit."""
        if idempotency_key is not None:
            rid = str(uuid.uuid5(REDEMPTION_NAMESPACE, f"{tenant_id}\x1f{idempotency_key}"))
            earlier = await self._redemptions.get(tenant_id, rid)
            if earlier is not None:
                return self._replay(earlier, body), False
        else:
            rid = str(uuid.uuid4())
        coupon, defn, reward = await self._load(tenant_id, body, caller)
        now = self._clock()
        reason = refusal(coupon, defn, body.user_id, now)
        if reason is not None:
            raise refused(reason)
        group = usage_group(defn, body.user_id)
        redemption = Redemption(
            id=rid,
            tenant_id=tenant_id,
            user_id=body.user_id,
            group=group.key,
            state="redeemed",
            redeemed_at=now,
            coupon=coupon_view(coupon),
            reward=reward,
            request_hash=request_hash(body),
        )
        entry = redeemed(redemption)
        await self._outbox.prepare([entry])
        try:
            await self._take_slot(redemption, group, keyed=idempotency_key is not None)
        except (SlotTaken, Refused):
            # Only the redemption id can clash here: a concurrent call with the same key won.
            # Its use may also be the one that filled the limit: replay it, not a refusal.
            earlier = None
            if idempotency_key is not None:
                earlier = await self._redemptions.get(tenant_id, rid)
            if earlier is None:
                if idempotency_key is None:
                    # A keyed entry may be a concurrent call's too (same id): the sweep's.
                    await self._outbox.discard([entry.id])
                raise
            # The entry as the earlier call stored it (ours may have replaced it, prepared).
            await self._outbox.prepare([redeemed(earlier)])
            await self._outbox.ready([redeemed(earlier)])
            return self._replay(earlier, body), False
        await self._outbox.ready([entry])
        self._on_redeemed()
        return redemption_view(redemption), True

    async def _take_slot(self, redemption: Redemption, group: UsageGroup, keyed: bool) -> None:
        """Insert the redemption into a free slot of its group, or refuse at the limit.
        `keyed`: the redemption id comes from an Idempotency-Key, so a clash may be on it."""
        limit, full = group.limit, group.refusal
        if limit is None or full is None:
            await self._redemptions.insert(redemption, free_slot(redemption.id), None)
            return
        if limit <= SMALL_LIMIT:  # a few slots: try them in order, no hint needed
            candidates = list(range(1, limit + 1))
        else:
            hint = await self._redemptions.next_slot_hint(group.key)
            candidates = [hint] if hint <= limit else []
        while True:
            for number in candidates:
                try:
                    await self._redemptions.insert(redemption, group.slot(number), number)
                    return
                except SlotTaken:
                    if keyed and await self._redemptions.get(redemption.tenant_id, redemption.id):
                        raise  # the id itself exists: a keyed replay, handled by the caller
            # Past the hint: slots freed by rollbacks (or left by a crash) are reused.
            used = await self._redemptions.used_slots(group.key)
            holes = [n for n in range(1, limit + 1) if n not in used]
            if not holes:
                raise refused(full)
            random.shuffle(holes)  # concurrent callers spread over the free slots
            candidates = holes

    def _replay(self, earlier: Redemption, body: RedeemRequest) -> RedemptionView:
        if earlier.request_hash != request_hash(body):
            # As for bulk generation: 422, naming the header.
            raise key_reused("this Idempotency-Key was used for another redeem request")
        return redemption_view(earlier)

    async def rollback(self, tenant_id: str, redemption_id: str) -> RedemptionView:
        now = self._clock()
        existing = await self._redemptions.get(tenant_id, redemption_id)
        if existing is None:
            raise NotFound(
                message=f"redemption {redemption_id} not found", code="redemption_not_found"
            )
        already = Conflict(
            message="the redemption has been rolled back already", code="already_rolled_back"
        )
        if existing.state != "redeemed":
            raise already
        entry = rolled_back(replace(existing, state="rolled_back", rolled_back_at=now))
        await self._outbox.prepare([entry])
        redemption = await self._redemptions.roll_back(
            tenant_id, redemption_id, free_slot(redemption_id), now
        )
        if redemption is None:
            # A concurrent rollback won: the entry (same id) is its to ready.
            raise already
        await self._outbox.ready([entry])
        self._on_redeemed()
        return redemption_view(redemption)
