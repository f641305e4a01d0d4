"""Records the services work with that are not wire contracts themselves."""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# issued: to one user; shared: a definition's one custom code; unassigned: owned by no
# user, redeemed by whoever presents it first (a generation job's `count`).
CouponKind = Literal["issued", "shared", "unassigned"]
CouponSource = Literal["bulk", "event", "definition"]


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    tenant_id: str | None
    key_hash: str
    secret_enc: str
    created_at: datetime
    revoked_at: datetime | None = None
    # Tenants whose code look-ups this key may not make (its failed look-ups reached the
    # limit): `lookup_block_key(tenant)` -> until, epoch ms. Read with the key on every
    # request, so the check costs no read of its own.
    lookup_blocks: dict[str, int] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def lookup_block_key(tenant_id: str) -> str:
    """A tenant's key in `ApiKey.lookup_blocks`: a digest, since a tenant id may hold dots
    (a path in a MongoDB update)."""
    return hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked for coupons through the API (a bulk generation; a definition write that
    sets its shared code): the API key's id and the request's X-Request-Id."""

    key_id: str | None = None
    request_id: str | None = None


@dataclass
class Coupon:
    id: str
    tenant_id: str
    definition_id: str
    reward_item_id: str
    code: str
    code_norm: str
    kind: CouponKind
    source: CouponSource
    issue_key: str
    issued_at: datetime
    user_id: str | None = None
    code_space: str | None = None
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    trigger_event_id: str | None = None
    status: Literal["active", "revoked"] = "active"
    revoked_at: datetime | None = None
    # The end of the coupon's own validity (issued_at + the definition's valid_for), kept
    # apart from `expires_at` (which also caps it by the definition's window as it was at
    # issuance): redemption reads this and the definition's window as it is now.
    valid_until: datetime | None = None
    # Who asked for it through the API (a bulk coupon, a shared code: Requester) and who
    # revoked it (an API key's id): the code's timeline shows them.
    issued_by: str | None = None
    request_id: str | None = None
    revoked_by: str | None = None
    # The client's `metadata` of the bulk call that issued it (schemas/metadata.py).
    metadata: dict[str, Any] | None = None
    # When its next expiry step (a reminder, the expiry) falls due: the scheduler's
    # (domain/expiry.py); None for coupons without steps.
    expiry_due: datetime | None = None
