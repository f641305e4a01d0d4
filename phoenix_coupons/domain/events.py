"""Outbound events built from domain records: deterministic, so a retry yields the same event."""

import uuid

from phoenix_coupons.domain.models import Coupon
from schemas.events import CouponIssued

EVENT_NAMESPACE = uuid.UUID("5b0f4e6e-2f43-4c5c-9d0a-6f0c0b7a3c11")


def event_id(kind: str, subject_id: str) -> str:
    """Stable event id: the same subject always yields the same id (consumers dedupe on it)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{kind}:{subject_id}"))


def coupon_issued(coupon: Coupon) -> CouponIssued:
    if coupon.user_id is None or coupon.source == "definition":
        raise ValueError("a shared definition code is not issued to a user")
    return CouponIssued(
        event_id=event_id("coupon.issued", coupon.id),
        occurred_at=coupon.issued_at,
        tenant_id=coupon.tenant_id,
        user_id=coupon.user_id,
        coupon_id=coupon.id,
        code=coupon.code,
        definition_id=coupon.definition_id,
        reward_item_id=coupon.reward_item_id,
        source=coupon.source,
        trigger_event_id=coupon.trigger_event_id,
        starts_at=coupon.starts_at,
        expires_at=coupon.expires_at,
    )
