"""Validate, redeem and roll back coupons; exact usage limits under concurrency. Their events
go through the outbox: prepared before the redemption is written, readied after. Holds
(services/reservations.py) take their uses through the same slots (`take_slot`). Given a
settler (services/settler.py), a redeem answers once its redemption is stored: the slots'
confirm and the entry's ready follow, batched with other redeems'.

An unassigned code's use takes two slots: one of the code's own group (`uses_per_code`)
first, then one of its definition's group; refused the second, it gives the first back."""

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from phoenix_coupons.domain import codes
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.config_rules import rollback_restores_use
from phoenix_coupons.domain.errors import (
    CodeNotFound,
    Conflict,
    NotFound,
    Refused,
    SlotTaken,
)
from phoenix_coupons.domain.history import Actor
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.name_ids import name_id
from phoenix_coupons.domain.outbox import redeemed, rolled_back
from phoenix_coupons.domain.redemption import (
    Redemption,
    UsageGroup,
    code_group,
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
    SlotClaim,
)
from phoenix_coupons.services.settler import Settler
from schemas.coupons import CouponDefinition
from schemas.redemptions import Coupon as CouponView
from schemas.redemptions import RedeemRequest, ValidateResponse
from schemas.redemptions import Redemption as RedemptionView
from schemas.rewards import RewardItem

# Usage limits this small are served by trying their slots in order (per_user limits mostly).
SMALL_LIMIT = 4
REDEMPTION_NAMESPACE = uuid.UUID("8d1f2b9e-3c44-4f0a-9b6e-2a7c5e1d0f42")

# Claims one slot (number; `replaces`: the expired hold it takes over) or raises SlotTaken.
ClaimSlot = Callable[[str, int, str | None], Awaitable[None]]


@dataclass(frozen=True)
class Admitted:
    coupon: Coupon
    defn: CouponDefinition
    reward: RewardItem
    group: UsageGroup
    now: datetime
    own: UsageGroup | None = None  # an unassigned code's own group (domain/redemption.py)


def keyed_id(namespace: uuid.UUID, tenant_id: str, idempotency_key: str) -> str:
    """The id of what a keyed request makes: the same for the same tenant and key."""
    return name_id(namespace, f"{tenant_id}\x1f{idempotency_key}")


def caller_actor(caller: str | None) -> Actor | None:
    return None if caller is None else Actor("api_key", caller)


async def take_slot(
    redemptions: RedemptionRepo,
    group: UsageGroup,
    now: datetime,
    claim: ClaimSlot,
    clash: Callable[[], Awaitable[bool]],
) -> None:
    """Claim a free slot of a limited group for a redemption or a hold, or refuse at the limit.
    No slot free: the slots of holds whose time is over at `now` are taken over. `clash`:
    whether a SlotTaken was about the id itself (a keyed request stored before), then raised."""
    limit, full = group.limit, group.refusal
    if limit is None or full is None:
        raise ValueError(f"the group {group.key} has no limit: it needs no numbered slot")
    if limit <= SMALL_LIMIT:  # a few slots: try them in order, no hint needed
        candidates: list[tuple[int, str | None]] = [(n, None) for n in range(1, limit + 1)]
    else:
        hint = await redemptions.next_slot_hint(group.key)
        candidates = [(hint, None)] if hint <= limit else []
    while True:
        for number, holder in candidates:
            try:
                await claim(group.slot(number), number, holder)
                return
            except SlotTaken:
                if await clash():
                    raise  # the id itself exists: a keyed replay, handled by the caller
        # Past the hint: slots freed by rollbacks (or left by a crash) are reused.
        used = await redemptions.used_slots(group.key)
        holes: list[tuple[int, str | None]] = [
            (n, None) for n in range(1, limit + 1) if n not in used
        ]
        if not holes:
            # Every slot held: those of holds whose time is over are free all the same.
            expired = await redemptions.expired_holds(group.key, now)
            holes = [(n, holder) for n, holder in expired.items() if n <= limit]
        if not holes:
            raise refused(full)
        random.shuffle(holes)  # concurrent callers spread over the free slots
        candidates = list(holes)


async def take_own_slot(
    redemptions: RedemptionRepo,
    own: UsageGroup | None,
    now: datetime,
    claim: ClaimSlot,
    clash: Callable[[], Awaitable[bool]],
) -> str | None:
    """Claim a slot of an unassigned code's own group (None: the code has none), ahead of
    its definition's group; the slot taken, or `own`'s refusal (code_limit_reached)."""
    if own is None:
        return None
    taken: list[str] = []

    async def claim_one(slot: str, number: int, replaces: str | None) -> None:
        await claim(slot, number, replaces)
        taken.append(slot)

    await take_slot(redemptions, own, now, claim_one, clash)
    return taken[-1]


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
        metadata=None if r.metadata is None else dict(r.metadata),
        rollback_reason=r.rollback_reason,
        use_kept=r.use_kept,
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
        settler: Settler | None = None,
    ) -> None:
        self._coupons = coupons
        self._definitions = definitions
        self._rewards = rewards
        self._redemptions = redemptions
        self._clock = clock
        self._on_redeemed = on_redeemed
        self._lookups = lookups
        self._outbox = outbox
        self._settler = settler  # None: a redeem settles its writes before it answers

    async def load(
        self, tenant_id: str, body: RedeemRequest, caller: str
    ) -> tuple[Coupon, CouponDefinition, RewardItem]:
        """The coupon, its definition and reward, or the reason a redeem is refused now. A
        code not found counts against `caller`'s (the API key id's) failed look-up limit."""
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
            coupon, defn, reward = await self.load(tenant_id, body, caller)
        except CodeNotFound as exc:
            return ValidateResponse(valid=False, reason=exc.code, coupon=None, reward=None)
        now = self._clock()
        reason = refusal(coupon, defn, body.user_id, now)
        if reason is None:
            for group in (code_group(coupon, defn), usage_group(defn, body.user_id)):
                if group is not None and not await self.has_room(group, now):
                    reason = group.refusal
                    break
        return ValidateResponse(
            valid=reason is None,
            reason=reason,
            coupon=coupon_view(coupon),
            reward=reward,
        )

    async def admit(self, tenant_id: str, body: RedeemRequest, caller: str) -> Admitted:
        """What a redeem or a reserve goes on with once the rules let it, limits aside."""
        coupon, defn, reward = await self.load(tenant_id, body, caller)
        now = self._clock()
        reason = refusal(coupon, defn, body.user_id, now)
        if reason is not None:
            raise refused(reason)
        group = usage_group(defn, body.user_id)
        return Admitted(coupon, defn, reward, group, now, code_group(coupon, defn))

    async def has_room(self, group: UsageGroup, now: datetime) -> bool:
        """Whether a use of the group is free at `now`: its kept count under the limit, or,
        at the limit, some holds' time over (their uses are free)."""
        limit = group.limit
        if limit is None:
            return True
        used = await self._redemptions.active_count(group.key)
        if used < limit:
            return True
        return used - len(await self._redemptions.expired_holds(group.key, now)) < limit

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
            rid = keyed_id(REDEMPTION_NAMESPACE, tenant_id, idempotency_key)
            earlier = await self._redemptions.get(tenant_id, rid)
            if earlier is not None:
                return self._replay(earlier, body), False
        else:
            rid = str(uuid.uuid4())
        ok = await self.admit(tenant_id, body, caller)
        group = ok.group
        redemption = Redemption(
            id=rid,
            tenant_id=tenant_id,
            user_id=body.user_id,
            group=group.key,
            state="redeemed",
            redeemed_at=ok.now,
            coupon=coupon_view(ok.coupon),
            reward=ok.reward,
            request_hash=request_hash(body),
            metadata=body.metadata,
        )
        actor = caller_actor(caller)
        entry = redeemed(redemption, actor)
        await self._outbox.prepare([entry])
        try:
            claim = await self._take_slot(redemption, ok, keyed=idempotency_key is not None)
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
            await self._outbox.prepare([redeemed(earlier, actor)])
            await self._outbox.ready([redeemed(earlier, actor)])
            return self._replay(earlier, body), False
        if self._settler is not None:
            self._settler.add(claim, [entry])
        else:
            await self._outbox.ready([entry])
            self._on_redeemed()
        return redemption_view(redemption), True

    async def _take_slot(self, redemption: Redemption, ok: Admitted, keyed: bool) -> SlotClaim:
        """Insert the redemption into a free slot of its group (an unassigned code's: after
        one of the code's own), or refuse at the limit. `keyed`: the redemption id comes from
        an Idempotency-Key, so a clash may be on it. Its numbered slots are confirmed unless
        a settler will: then they are returned to it."""
        r, repo, group = redemption, self._redemptions, ok.group
        confirm = self._settler is None
        numbered: list[str] = []

        async def clash() -> bool:
            return keyed and await repo.get(r.tenant_id, r.id) is not None

        async def claim_own(slot: str, number: int, replaces: str | None) -> None:
            assert ok.own is not None
            await repo.claim_code_slot(r, ok.own.key, slot, number, replaces)

        own = await take_own_slot(repo, ok.own, r.redeemed_at, claim_own, clash)
        r = replace(r, code_slot=own)

        async def claim(slot: str, number: int, replaces: str | None) -> None:
            await repo.insert(r, slot, number, replaces, confirm=confirm)
            numbered.append(slot)

        try:
            if group.limit is None:
                await repo.insert(r, free_slot(r.id), None, confirm=confirm)
            else:
                await take_slot(repo, group, r.redeemed_at, claim, clash)
        except BaseException:
            await repo.release_code_slot(r)  # cut short (cancelled): the sweep's
            raise
        slots = numbered + ([own] if own is not None else [])
        return SlotClaim(r.id, tuple(slots), r.redeemed_at)

    def _replay(self, earlier: Redemption, body: RedeemRequest) -> RedemptionView:
        if earlier.request_hash != request_hash(body):
            # As for bulk generation: 422, naming the header.
            raise key_reused("this Idempotency-Key was used for another redeem request")
        return redemption_view(earlier)

    async def rollback(
        self,
        tenant_id: str,
        redemption_id: str,
        caller: str | None = None,
        reason: str | None = None,
    ) -> RedemptionView:
        """Roll back once; the use is given back unless the definition's
        `config.rollback_restores_use` is false (then the redemption keeps its slot)."""
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
        defn = await self._definitions.get(tenant_id, existing.coupon.definition_id)
        keep = defn is not None and not rollback_restores_use(defn.config)
        undone = replace(
            existing,
            state="rolled_back",
            rolled_back_at=now,
            rollback_reason=reason,
            use_kept=keep,
        )
        entry = rolled_back(undone, caller_actor(caller))
        await self._outbox.prepare([entry])
        redemption = await self._redemptions.roll_back(
            tenant_id, redemption_id, now, reason, keep_use=keep
        )
        if redemption is None:
            # A concurrent rollback won: the entry (same id) is its to ready.
            raise already
        await self._outbox.ready([entry])
        self._on_redeemed()
        return redemption_view(redemption)
