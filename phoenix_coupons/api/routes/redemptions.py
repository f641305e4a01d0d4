"""Redemption: validate, redeem and roll back (scope `coupons:redeem`)."""

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Header, Response, status

from phoenix_coupons.api.auth import looking_up, require
from phoenix_coupons.api.deps import Redemptions
from phoenix_coupons.api.errors import ERROR_RESPONSES, documented, status_of
from phoenix_coupons.api.params import RedemptionId, TenantId
from phoenix_coupons.api.redemption_metrics import REDEMPTIONS, REFUSALS
from phoenix_coupons.domain.errors import CodeNotFound, Refused
from phoenix_coupons.domain.redemption import refused
from phoenix_coupons.domain.scopes import COUPONS_REDEEM
from phoenix_coupons.services.api_keys import Principal
from schemas.redemptions import (
    RedeemRequest,
    Redemption,
    RefusalReason,
    RollbackRequest,
    ValidateResponse,
)


def _listed(codes: list[str]) -> str:
    return ", ".join(f"`{code}`" for code in codes)


router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/coupons", tags=["redemption"], responses=ERROR_RESPONSES
)
REDEEM = [Depends(require(COUPONS_REDEEM))]
Redeemer = Annotated[Principal, Depends(require(COUPONS_REDEEM))]
# Calls that look a code up: refused first while the key's failed look-ups are over the
# limit (a redeem's or a reserve's refusal counted as such).
Validator = Annotated[Principal, Depends(looking_up(COUPONS_REDEEM))]
CodeRedeemer = Annotated[Principal, Depends(looking_up(COUPONS_REDEEM, REFUSALS))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        description="Same key and body: the first answer again, no second use.",
    ),
]
LIMITED = documented(
    429,
    "`too_many_failed_lookups`: this API key's look-ups of unknown codes in the tenant are "
    "over the limit (`PHOENIX_CODE_LOOKUP_FAILURE_LIMIT`); wait `Retry-After` seconds",
)
# Each refusal reason under the status of its error's class; rollback adds one of each.
_BY_STATUS = {
    answer: [r for r in get_args(RefusalReason) if status_of(refused(r)) == answer]
    for answer in (404, 409)
}
REFUSED = {
    **documented(404, _listed([*_BY_STATUS[404], "redemption_not_found"])),
    **documented(
        409, "Refused, `error` says why: " + _listed([*_BY_STATUS[409], "already_rolled_back"])
    ),
}


@router.post("/validate", responses=LIMITED)
async def validate(
    tenant_id: TenantId, body: RedeemRequest, redemptions: Redemptions, caller: Validator
) -> ValidateResponse:
    """Would a redeem of this code by this user succeed now? Consumes nothing."""
    return await redemptions.validate(tenant_id, body, caller.key_id)


@router.post("/redeem", status_code=status.HTTP_201_CREATED, responses={**REFUSED, **LIMITED})
async def redeem(
    tenant_id: TenantId,
    body: RedeemRequest,
    redemptions: Redemptions,
    caller: CodeRedeemer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Redemption:
    """Consume one use; answers the redemption with the reward item's snapshot, and
    announces `coupon.redeemed`. A replayed `Idempotency-Key` answers 200."""
    try:
        redemption, created = await redemptions.redeem(
            tenant_id, body, caller.key_id, idempotency_key
        )
    except (Refused, CodeNotFound) as exc:
        REFUSALS.labels(exc.code).inc()
        raise
    REDEMPTIONS.labels("redeemed" if created else "replayed").inc()
    if not created:
        response.status_code = status.HTTP_200_OK
    return redemption


@router.post("/redemptions/{redemption_id}/rollback", responses=REFUSED)
async def rollback(
    tenant_id: TenantId,
    redemption_id: RedemptionId,
    redemptions: Redemptions,
    caller: Redeemer,
    body: RollbackRequest | None = None,
) -> Redemption:
    """Roll back once, with an optional `reason`; announces `coupon.redemption_rolled_back`.
    The use is given back unless the definition's `config.rollback_restores_use` is false."""
    reason = None if body is None else body.reason
    redemption = await redemptions.rollback(tenant_id, redemption_id, caller.key_id, reason)
    REDEMPTIONS.labels("rolled_back").inc()
    return redemption
