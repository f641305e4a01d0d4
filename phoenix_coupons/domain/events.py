"""Outbound events built from domain records: deterministic, so a retry yields the same event."""

import uuid
from datetime import datetime
from typing import Any, TypeVar

from phoenix_coupons.domain.expiry import Step
from phoenix_coupons.domain.jobs import Job
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.name_ids import name_id
from phoenix_coupons.domain.redemption import Redemption
from phoenix_coupons.domain.reservation import Reservation
from schemas.events import (
    CouponExpired,
    CouponExpiring,
    CouponIssued,
    CouponRedeemed,
    CouponReserved,
    DefinitionExhausted,
    GenerationJobCompleted,
    RedemptionRolledBack,
    ReleaseReason,
    ReservationReleased,
)

OutboundEvent = (
    CouponIssued
    | CouponRedeemed
    | RedemptionRolledBack
    | CouponReserved
    | ReservationReleased
    | DefinitionExhausted
    | GenerationJobCompleted
    | CouponExpiring
    | CouponExpired
)

EVENT_NAMESPACE = uuid.UUID("5b0f4e6e-2f43-4c5c-9d0a-6f0c0b7a3c11")


def event_id(kind: str, subject_id: str) -> str:
    """Stable event id: the same subject always yields the same id (consumers dedupe on it)."""
    return name_id(EVENT_NAMESPACE, f"{kind}:{subject_id}")


def coupon_issued(coupon: Coupon) -> CouponIssued:
    """A user's coupon or an unassigned code (user_id None); never a definition's shared
    code (it is the definition's, announced by nothing)."""
    if coupon.kind == "shared" or coupon.source == "definition":
        raise ValueError("a shared definition code is not issued")
    if (coupon.user_id is None) != (coupon.kind == "unassigned"):
        raise ValueError(f"a coupon of kind {coupon.kind} with user_id {coupon.user_id!r}")
    return CouponIssued(
        event_id=event_id("coupon.issued", coupon.id),
        occurred_at=coupon.issued_at,
        tenant_id=coupon.tenant_id,
        user_id=coupon.user_id,
        kind="unassigned" if coupon.kind == "unassigned" else "issued",
        coupon_id=coupon.id,
        code=coupon.code,
        definition_id=coupon.definition_id,
        reward_item_id=coupon.reward_item_id,
        source=coupon.source,
        trigger_event_id=coupon.trigger_event_id,
        starts_at=coupon.starts_at,
        expires_at=coupon.expires_at,
        metadata=coupon.metadata,
    )


def definition_exhausted(
    tenant_id: str, definition_id: str, max_coupons: int, at: datetime
) -> DefinitionExhausted:
    """One per definition and limit: raising the limit and reaching it again announces the
    new one."""
    return DefinitionExhausted(
        event_id=event_id("coupon.definition_exhausted", f"{definition_id}:{max_coupons}"),
        occurred_at=at,
        tenant_id=tenant_id,
        definition_id=definition_id,
        max_coupons=max_coupons,
    )


def generation_job_completed(job: Job, at: datetime) -> GenerationJobCompleted:
    """One per job and final status: a job ends once, in one status."""
    if job.status not in ("succeeded", "failed", "cancelled"):
        raise ValueError(f"job {job.id} is {job.status}, not over")
    return GenerationJobCompleted(
        event_id=event_id("coupon.generation_job.completed", f"{job.id}:{job.status}"),
        occurred_at=at,
        tenant_id=job.tenant_id,
        definition_id=job.definition_id,
        job_id=job.id,
        status=job.status,
        total=job.total,
        generated=job.generated,
        failed=job.failed,
        reason=job.reason,
    )


def coupon_redeemed(redemption: Redemption) -> CouponRedeemed:
    return _redemption_event(CouponRedeemed, redemption, redemption.redeemed_at)


def redemption_rolled_back(redemption: Redemption) -> RedemptionRolledBack:
    if redemption.rolled_back_at is None:
        raise ValueError("the redemption has not been rolled back")
    event = _redemption_event(RedemptionRolledBack, redemption, redemption.rolled_back_at)
    return event.model_copy(
        update={"reason": redemption.rollback_reason, "use_kept": redemption.use_kept}
    )


def coupon_reserved(reservation: Reservation) -> CouponReserved:
    r = reservation
    return CouponReserved(
        event_id=event_id("coupon.reserved", r.id),
        occurred_at=r.reserved_at,
        metadata=None if r.metadata is None else dict(r.metadata),
        **_reservation_fields(r),
    )


def reservation_released(
    reservation: Reservation, reason: ReleaseReason, at: datetime
) -> ReservationReleased:
    """One per reservation, whatever ended it (the same event id)."""
    r = reservation
    return ReservationReleased(
        event_id=event_id("coupon.reservation_released", r.id),
        occurred_at=at,
        reason=reason,
        redemption_id=r.redemption_id if reason == "confirmed" else None,
        **_reservation_fields(r),
    )


def _reservation_fields(r: Reservation) -> dict[str, Any]:
    return {
        "tenant_id": r.tenant_id,
        "user_id": r.user_id,
        "reservation_id": r.id,
        "coupon_id": r.coupon.id,
        "code": r.coupon.code,
        "definition_id": r.coupon.definition_id,
        "expires_at": r.expires_at,
    }


RedemptionEvent = TypeVar("RedemptionEvent", CouponRedeemed, RedemptionRolledBack)


def _redemption_event(model: type[RedemptionEvent], r: Redemption, at: datetime) -> RedemptionEvent:
    kind = model.model_fields["event_type"].default
    return model(
        event_id=event_id(kind, r.id),
        occurred_at=at,
        tenant_id=r.tenant_id,
        user_id=r.user_id,
        redemption_id=r.id,
        coupon_id=r.coupon.id,
        code=r.coupon.code,
        definition_id=r.coupon.definition_id,
        reward=r.reward.model_dump(),
        metadata=None if r.metadata is None else dict(r.metadata),
    )


def expiry_event(coupon: Coupon, step: Step, at: datetime) -> CouponExpiring | CouponExpired:
    """A reminder (one id per coupon and lead time) or the expiry (one per coupon)."""
    if coupon.user_id is None:
        raise ValueError("only a user's coupon has expiry events")
    common = {
        "occurred_at": at,
        "tenant_id": coupon.tenant_id,
        "user_id": coupon.user_id,
        "coupon_id": coupon.id,
        "code": coupon.code,
        "definition_id": coupon.definition_id,
        "reward_item_id": coupon.reward_item_id,
        "expires_at": step.expires_at,
    }
    if step.lead is None:
        return CouponExpired(event_id=event_id("coupon.expired", coupon.id), **common)
    return CouponExpiring(
        event_id=event_id("coupon.expiring", f"{coupon.id}:{step.lead}"),
        remind_before=step.lead,
        **common,
    )
