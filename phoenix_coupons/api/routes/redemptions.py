"""Redemption: validate, redeem and roll back (scope `coupons:redeem`)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response, status

from phoenix_coupons.api.auth import require
from phoenix_coupons.api.errors import ERROR_RESPONSES, documented
from phoenix_coupons.api.params import RedemptionId, Services, TenantId
from phoenix_coupons.api.redemption_metrics import REDEMPTIONS, REFUSALS
from phoenix_coupons.domain.errors import DomainError
from phoenix_coupons.domain.scopes import COUPONS_REDEEM
from phoenix_coupons.services.api_keys import Principal
from phoenix_coupons.services.redemptions import MESSAGES
from schemas.redemptions import RedeemRequest, Redemption, ValidateResponse

router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/coupons", tags=["redemption"], responses=ERROR_RESPONSES
)
REDEEM = [Depends(require(COUPONS_REDEEM))]
Redeemer = Annotated[Principal, Depends(require(COUPONS_REDEEM))]
LIMITED = documented(
    429,
    "`too_many_failed_lookups`: this API key's look-ups of unknown codes in the tenant are "
    "over the limit (`PHOENIX_CODE_LOOKUP_FAILURE_LIMIT`); wait `Retry-After` seconds",
)
REFUSAL_REASONS = {*MESSAGES, "too_many_failed_lookups"}
REFUSED = {
    **documented(404, "`code_not_found`, `redemption_not_found`"),
    **documented(
        409,
        "Refused, `error` says why: `not_yet_valid`, `expired`, `definition_paused`, "
        "`definition_archived`, `not_owner`, `per_user_limit_reached`, "
        "`global_limit_reached`, `coupon_revoked`, `already_rolled_back`",
    ),
}


@router.post("/validate", responses=LIMITED)
async def validate(
    tenant_id: TenantId, body: RedeemRequest, c: Services, caller: Redeemer
) -> ValidateResponse:
    """Would a redeem of this code by this user succeed now? Consumes nothing."""
    return await c.redemptions.validate(tenant_id, body, caller.key_id)


@router.post("/redeem", status_code=status.HTTP_201_CREATED, responses={**REFUSED, **LIMITED})
async def redeem(
    tenant_id: TenantId,
    body: RedeemRequest,
    c: Services,
    caller: Redeemer,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Same key and body: the first redemption again, no second use.",
        ),
    ] = None,
) -> Redemption:
    """Consume one use; answers the redemption with the reward item's snapshot, and
    announces `coupon.redeemed`. A replayed `Idempotency-Key` answers 200."""
    try:
        redemption, created = await c.redemptions.redeem(
            tenant_id, body, caller.key_id, idempotency_key
        )
    except DomainError as exc:
        if exc.code in REFUSAL_REASONS:
            REFUSALS.labels(exc.code).inc()
        raise
    REDEMPTIONS.labels("redeemed" if created else "replayed").inc()
    if not created:
        response.status_code = status.HTTP_200_OK
    return redemption


@router.post("/redemptions/{redemption_id}/rollback", dependencies=REDEEM, responses=REFUSED)
async def rollback(tenant_id: TenantId, redemption_id: RedemptionId, c: Services) -> Redemption:
    """Give the use back, once; announces `coupon.redemption_rolled_back`."""
    redemption = await c.redemptions.rollback(tenant_id, redemption_id)
    REDEMPTIONS.labels("rolled_back").inc()
    return redemption
