"""Read side of issued coupons: a definition's codes, a user's wallet, one code's state and
its timeline; and revoking a code."""

from phoenix_coupons.domain import codes
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.errors import CodeNotFound
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.redemption import remaining, usage_group
from phoenix_coupons.services.definitions import definition_not_found
from phoenix_coupons.services.history import history_body, timeline_page
from phoenix_coupons.services.ports import (
    CodeHistory,
    CouponRepo,
    DefinitionRepo,
    LookupLimiter,
    RedemptionRepo,
)
from phoenix_coupons.services.redemptions import coupon_view, redemption_view
from schemas.history import CodeHistory as CodeHistoryBody
from schemas.redemptions import CodeState, CouponList, Wallet, WalletCoupon


def code_not_found(code: str) -> CodeNotFound:
    return CodeNotFound(f"no code {code!r} in this tenant")


class CouponQueries:
    def __init__(
        self,
        coupons: CouponRepo,
        definitions: DefinitionRepo,
        redemptions: RedemptionRepo,
        clock: Clock,
        lookups: LookupLimiter,
        history: CodeHistory,
    ) -> None:
        self._coupons = coupons
        self._definitions = definitions
        self._redemptions = redemptions
        self._clock = clock
        self._lookups = lookups
        self._history = history

    async def definition_codes(
        self,
        tenant_id: str,
        definition_id: str,
        user_id: str | None,
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> CouponList:
        if await self._definitions.get(tenant_id, definition_id) is None:
            raise definition_not_found(definition_id)
        page = await self._coupons.definition_codes(
            tenant_id, definition_id, user_id, limit, offset, after
        )
        return CouponList(
            coupons=[coupon_view(c) for c in page.items],
            total=page.total,
            next_after=page.next_after,
        )

    async def wallet(
        self, tenant_id: str, user_id: str, limit: int, offset: int, after: str | None = None
    ) -> Wallet:
        """The user's own coupons with the uses left to them now."""
        page = await self._coupons.wallet(tenant_id, user_id, limit, offset, after)
        items = page.items
        definitions = {
            d: await self._definitions.get(tenant_id, d) for d in {c.definition_id for c in items}
        }
        groups = {
            c.id: usage_group(defn, user_id)
            for c in items
            if (defn := definitions.get(c.definition_id)) is not None
        }
        used = await self._redemptions.active_counts(
            sorted({g.key for g in groups.values() if g.limit is not None})
        )
        wallet = [
            WalletCoupon(
                **coupon_view(c).model_dump(),
                remaining_uses=remaining(groups[c.id].limit, used.get(groups[c.id].key, 0))
                if c.id in groups
                else 0,
            )
            for c in items
        ]
        return Wallet(user_id=user_id, coupons=wallet, total=page.total, next_after=page.next_after)

    async def code_state(self, tenant_id: str, code: str, caller: str) -> CodeState:
        return await self._state(await self._lookup(tenant_id, code, caller))

    async def history(
        self,
        tenant_id: str,
        code: str,
        caller: str,
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> CodeHistoryBody:
        """The code's timeline, oldest first (services/history.py)."""
        coupon = await self._lookup(tenant_id, code, caller)
        page = await timeline_page(self._history, coupon, limit, offset, after)
        return history_body(coupon, page)

    async def _lookup(self, tenant_id: str, code: str, caller: str) -> Coupon:
        """A look-up like validate's: counted against `caller`'s failed look-up limit."""
        coupon = await self._coupons.by_code(tenant_id, codes.normalize(code))
        if coupon is None:
            await self._lookups.failed(caller, tenant_id)
            raise code_not_found(code)
        return coupon

    async def _state(self, coupon: Coupon) -> CodeState:
        history = await self._redemptions.for_coupon(coupon.id)
        return CodeState(
            coupon=coupon_view(coupon), redemptions=[redemption_view(r) for r in history]
        )

    async def revoke(self, tenant_id: str, code: str, by: str | None = None) -> CodeState:
        """A revoked code is refused at redemption (`coupon_revoked`); final. `by`: the API
        key's id, shown in the code's timeline."""
        coupon = await self._coupons.revoke(tenant_id, codes.normalize(code), self._clock(), by)
        if coupon is None:
            raise code_not_found(code)
        return await self._state(coupon)
