"""The one construction of a coupon from its definition, whatever issues it: an event (the
worker), a bulk call (generation) or the definition itself (its shared custom code). What a
coupon takes from its definition is worked out once per definition (`CouponFactory.of`);
each coupon then adds its issue key, code, time and owner."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from phoenix_coupons.domain import codes, expiry, issue_keys
from phoenix_coupons.domain.config_rules import code_spec, remind_before, valid_for
from phoenix_coupons.domain.models import Coupon, CouponKind, CouponSource, Requester
from schemas.coupons import CouponDefinition


@dataclass(frozen=True, slots=True)
class CouponFactory:
    """`spec`: the definition's random codes (None for a custom code); `code_space` names
    their space on each coupon (the capacity check counts them). A definition's shared code
    (`source="definition"`) belongs to no user and carries no validity window: its row
    outlives changes of the definition's window, which redemption reads from the
    definition."""

    source: CouponSource
    tenant_id: str
    definition_id: str
    reward_item_id: str
    spec: codes.CodeSpec | None
    code_space: str | None
    starts_at: datetime | None
    expires_at: datetime | None
    valid_for: timedelta | None = None
    remind_before: tuple[timedelta, ...] = ()

    @classmethod
    def of(cls, defn: CouponDefinition, source: CouponSource) -> "CouponFactory":
        cfg = defn.config
        spec = code_spec(cfg) if cfg.code_format == "random" else None
        windowed = source != "definition"
        return cls(
            source,
            defn.tenant_id,
            defn.id,
            cfg.reward_item_id,
            spec,
            spec.space if spec is not None else None,
            cfg.starts_at if windowed else None,
            cfg.expires_at if windowed else None,
            valid_for(cfg) if windowed else None,
            remind_before(cfg) if windowed else (),
        )

    def coupon(
        self,
        key: str,
        code: str,
        issued_at: datetime,
        user_id: str | None = None,
        trigger_event_id: str | None = None,
        requester: Requester | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Coupon:
        """`key`: the issue key (the coupon's id derives from it); `user_id` None: an
        unassigned code (a bulk or job coupon for no user); `requester`: the API call that
        asked for it."""
        starts_at, expires_at, valid_until = self.window(issued_at)
        kind = self.kind(user_id)
        return Coupon(
            id=issue_keys.coupon_id(key),
            tenant_id=self.tenant_id,
            definition_id=self.definition_id,
            reward_item_id=self.reward_item_id,
            code=code,
            code_norm=codes.normalize(code),
            kind=kind,
            source=self.source,
            issue_key=key,
            issued_at=issued_at,
            user_id=user_id,
            code_space=self.code_space,
            starts_at=starts_at,
            expires_at=expires_at,
            trigger_event_id=trigger_event_id,
            valid_until=valid_until,
            issued_by=None if requester is None else requester.key_id,
            request_id=None if requester is None else requester.request_id,
            metadata=metadata,
            # Only a user's coupon has expiry steps (domain/expiry.eligible): an unassigned
            # code has nobody to remind or tell, so the scheduler never looks at it.
            expiry_due=None
            if kind != "issued"
            else expiry.first_due(issued_at, expires_at, self.remind_before, issued_at),
        )

    def kind(self, user_id: str | None) -> CouponKind:
        if self.source == "definition":
            return "shared"
        return "unassigned" if user_id is None else "issued"

    def window(
        self, issued_at: datetime
    ) -> tuple[datetime | None, datetime | None, datetime | None]:
        """(starts_at, expires_at, valid_until) of a coupon issued at `issued_at`: the
        definition's window, or with `valid_for` its own from issuance, starting no earlier
        than the definition's and capped by its expiry."""
        if self.valid_for is None:
            return self.starts_at, self.expires_at, None
        until = issued_at + self.valid_for
        starts = issued_at if self.starts_at is None else max(issued_at, self.starts_at)
        expires = until if self.expires_at is None else min(until, self.expires_at)
        return starts, expires, until
