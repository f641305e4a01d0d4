"""Holds: reserve a use, then confirm it into a redemption or release it (scope
`coupons:redeem`, as redeem)."""

from fastapi import APIRouter, Response, status

from phoenix_coupons.api.deps import Reservations
from phoenix_coupons.api.errors import ERROR_RESPONSES, documented
from phoenix_coupons.api.params import ReservationId, TenantId
from phoenix_coupons.api.redemption_metrics import REDEMPTIONS, REFUSALS, RESERVATIONS
from phoenix_coupons.api.routes.redemptions import (
    LIMITED,
    REFUSED,
    CodeRedeemer,
    IdempotencyKey,
    Redeemer,
)
from phoenix_coupons.domain.errors import CodeNotFound, Refused
from schemas.redemptions import Redemption, Reservation, ReserveRequest

router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/coupons", tags=["reservations"], responses=ERROR_RESPONSES
)
ENDED = {
    **documented(404, "`reservation_not_found` (also another tenant's)"),
    **documented(
        409,
        "The hold is over: `reservation_expired`, `reservation_released`, "
        "`reservation_confirmed` (release); or the redeem rules refuse it now "
        "(`definition_paused`, `coupon_revoked`, ...)",
    ),
}


@router.post("/reserve", status_code=status.HTTP_201_CREATED, responses={**REFUSED, **LIMITED})
async def reserve(
    tenant_id: TenantId,
    body: ReserveRequest,
    reservations: Reservations,
    caller: CodeRedeemer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Reservation:
    """Hold one use for `ttl_seconds` (refused as a redeem would be); announces
    `coupon.reserved`. A replayed `Idempotency-Key` answers 200."""
    try:
        hold, created = await reservations.reserve(tenant_id, body, caller.key_id, idempotency_key)
    except (Refused, CodeNotFound) as exc:
        REFUSALS.labels(exc.code).inc()
        raise
    RESERVATIONS.labels("reserved" if created else "replayed").inc()
    if not created:
        response.status_code = status.HTTP_200_OK
    return hold


@router.post(
    "/reservations/{reservation_id}/confirm",
    status_code=status.HTTP_201_CREATED,
    responses=ENDED,
)
async def confirm(
    tenant_id: TenantId,
    reservation_id: ReservationId,
    reservations: Reservations,
    caller: Redeemer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Redemption:
    """Turn the hold into its redemption, as redeem answers; announces `coupon.redeemed` and
    `coupon.reservation_released` (reason `confirmed`). A confirmed hold (or a replayed
    `Idempotency-Key`) answers the same redemption with 200."""
    redemption, created = await reservations.confirm(
        tenant_id, reservation_id, caller.key_id, idempotency_key
    )
    REDEMPTIONS.labels("redeemed" if created else "replayed").inc()
    if created:
        RESERVATIONS.labels("confirmed").inc()
    else:
        response.status_code = status.HTTP_200_OK
    return redemption


@router.post("/reservations/{reservation_id}/release", responses=ENDED)
async def release(
    tenant_id: TenantId, reservation_id: ReservationId, reservations: Reservations, caller: Redeemer
) -> Reservation:
    """Give the held use back (again: the same answer); announces
    `coupon.reservation_released` (reason `released`)."""
    hold = await reservations.release(tenant_id, reservation_id, caller.key_id)
    RESERVATIONS.labels("released").inc()
    return hold
