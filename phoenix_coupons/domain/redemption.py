"""Redemption rules: may this user use this code now, and which usage limit does it count
against; and the redemption record. Pure: the clock is injected, storage is the service's.

Usage limits are exact without multi-document transactions: each active redemption holds a
numbered slot of its usage group (a slot is a document's `_id` in storage), so at most
`max_uses` can exist; the slot is claimed before the redemption is stored and confirmed
after (adapters/redemption_repo.py).
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from phoenix_coupons.domain import codes
from phoenix_coupons.domain.config_rules import uses_per_code
from phoenix_coupons.domain.errors import CodeNotFound, Refused
from phoenix_coupons.domain.models import Coupon
from schemas.coupons import CouponDefinition
from schemas.redemptions import Coupon as CouponSnapshot
from schemas.redemptions import RefusalReason
from schemas.rewards import RewardItem

RedemptionState = Literal["redeemed", "rolled_back"]


@dataclass(frozen=True)
class Redemption:
    """One use of a coupon, with the coupon and the reward item as they were when redeemed.
    `group`: the usage group it counts against while redeemed; `request_hash`: the body of
    the keyed request that made it (a replay with another body is refused); `metadata`: the
    caller's (the redeem's, or its reservation's); `use_kept`: rolled back without giving the
    use back (config.rollback_restores_use false: it still holds its slot)."""

    id: str
    tenant_id: str
    user_id: str
    group: str
    state: RedemptionState
    redeemed_at: datetime
    coupon: CouponSnapshot
    reward: RewardItem
    request_hash: str | None = None
    rolled_back_at: datetime | None = None
    metadata: Mapping[str, Any] | None = None
    rollback_reason: str | None = None
    use_kept: bool = False
    reservation_id: str | None = None  # the hold it confirmed
    # An unassigned code's use: the slot of the code's own group (`code_group`) it holds
    # beside its group's, and gives back with it.
    code_slot: str | None = None


@dataclass(frozen=True)
class UsageGroup:
    """Redemptions that share one limit. `limit` None: unlimited."""

    key: str
    limit: int | None
    refusal: RefusalReason | None  # the reason given when the limit is reached

    def slot(self, number: int) -> str:
        return f"{self.key}#{number}"


def slot_group(slot: str) -> str:
    """The usage group a numbered slot (`UsageGroup.slot`: `<group>#<number>`) belongs to."""
    return slot.rpartition("#")[0]


def usage_group(defn: CouponDefinition, user_id: str) -> UsageGroup:
    limit = defn.config.usage_limit
    if limit.limit_type == "per_user":
        user = hashlib.sha256(user_id.encode()).hexdigest()[:32]
        return UsageGroup(f"u:{defn.id}:{user}", limit.max_uses, "per_user_limit_reached")
    if limit.limit_type == "global":
        return UsageGroup(f"g:{defn.id}", limit.max_uses, "global_limit_reached")
    return UsageGroup(f"n:{defn.id}", None, None)


def code_group(coupon: Coupon, defn: CouponDefinition) -> UsageGroup | None:
    """The code's own limit, held beside its definition's group: only an unassigned code
    has one (`config.uses_per_code` uses, by anyone). Its slot is claimed first, so that
    the many callers of one code contend on the code, not on the definition's slots."""
    if coupon.kind != "unassigned":
        return None
    return UsageGroup(f"c:{coupon.id}", uses_per_code(defn.config), "code_limit_reached")


def free_slot(redemption_id: str) -> str:
    """The slot of a redemption that counts against no limit (unlimited, rolled back)."""
    return f"free:{redemption_id}"


def code_matches(coupon: Coupon, defn: CouponDefinition, code: str) -> bool:
    """Codes are found ignoring case; a case-sensitive definition then wants the exact code."""
    if defn.config.case_sensitive:
        return coupon.code == code
    return coupon.code_norm == codes.normalize(code)


def refusal(
    coupon: Coupon, defn: CouponDefinition, user_id: str, now: datetime
) -> RefusalReason | None:
    """Why `user_id` may not redeem `coupon` now (limits aside), or None."""
    if coupon.status == "revoked":
        return "coupon_revoked"
    if defn.status == "archived":
        return "definition_archived"
    if defn.status == "paused":
        return "definition_paused"
    starts, expires = defn.config.starts_at, defn.config.expires_at
    if starts is not None and now < starts:
        return "not_yet_valid"
    if expires is not None and now >= expires:
        return "expired"
    if coupon.valid_until is not None and now >= coupon.valid_until:
        return "expired"
    if coupon.kind == "issued" and coupon.user_id != user_id:
        return "not_owner"
    return None


def refused(reason: RefusalReason) -> Refused | CodeNotFound:
    """The error of a refusal: an unknown code is not found (404), the others conflict."""
    return CodeNotFound() if reason == "code_not_found" else Refused(reason)


def remaining(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(0, limit - used)
