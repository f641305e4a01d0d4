"""Bulk generation: coupons for a list of users, announced through the outbox: one entry for
the `coupon.issued` of each insert's coupons (an `IssuedBundle` naming their ids) is prepared
before they are inserted and readied after naming those stored, so a crash in between leaves
nothing the sweep cannot settle (outbox.py)."""

from collections.abc import Callable, Sequence
from typing import Any

import structlog

from phoenix_coupons.domain import codes, issue_keys
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.config_rules import code_reason
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.errors import (
    CodeSpaceExhausted,
    Conflict,
    DuplicateCodes,
    FieldError,
    ValidationFailed,
)
from phoenix_coupons.domain.models import Coupon, Requester
from phoenix_coupons.domain.outbox import IssuedBundle, issued
from phoenix_coupons.services.budget import IssuanceBudget, issuance_limit
from phoenix_coupons.services.definitions import require_active
from phoenix_coupons.services.drawing import draw_and_insert
from phoenix_coupons.services.idempotency import key_reused, request_hash
from phoenix_coupons.services.ports import (
    CouponRepo,
    DefinitionRepo,
    IdempotencyRepo,
    IdFactory,
    Outbox,
)
from schemas.coupons import CouponDefinition, GeneratedCoupon, GenerateRequest, GenerateResponse

log = structlog.get_logger(__name__)


class GenerationService:
    def __init__(
        self,
        definitions: DefinitionRepo,
        coupons: CouponRepo,
        outbox: Outbox,
        idempotency: IdempotencyRepo,
        codegen: codes.CodeGenerator,
        clock: Clock,
        new_id: IdFactory,
        on_issued: Callable[[], None],
        max_users: int,
        budget: IssuanceBudget,
    ) -> None:
        self._definitions = definitions
        self._coupons = coupons
        self._outbox = outbox
        self._idempotency = idempotency
        self._codegen = codegen
        self._clock = clock
        self._new_id = new_id
        self._on_issued = on_issued
        self._max_users = max_users
        self._budget = budget

    async def generate(
        self,
        tenant_id: str,
        definition_id: str,
        body: GenerateRequest,
        idempotency_key: str | None = None,
        requester: Requester | None = None,
    ) -> GenerateResponse:
        """`requester`: stored on the coupons (their timelines show who issued them)."""
        if idempotency_key is None:
            return await self._generate(tenant_id, definition_id, body, None, requester)
        key = f"generate:{tenant_id}:{definition_id}:{idempotency_key}"
        claim = await self._idempotency.claim(key, request_hash(body), self._clock())
        if claim.outcome == "replay" and claim.response is not None:
            return GenerateResponse.model_validate(claim.response)
        if claim.outcome == "mismatch":
            raise key_reused("this Idempotency-Key was used with a different request body")
        if claim.outcome == "in_progress":
            raise Conflict(
                message="a request with this Idempotency-Key is still in progress; retry later",
                code="idempotency_key_in_progress",
            )
        try:
            response = await self._generate(
                tenant_id, definition_id, body, idempotency_key, requester
            )
        except BaseException:
            await self._idempotency.release(key)
            raise
        await self._idempotency.complete(key, response.model_dump(mode="json"))
        return response

    async def _generate(
        self,
        tenant_id: str,
        definition_id: str,
        body: GenerateRequest,
        idem: str | None,
        by: Requester | None,
    ) -> GenerateResponse:
        defn = require_active(await self._definitions.get(tenant_id, definition_id), definition_id)
        self._check_users(body.user_ids)
        if defn.config.code_format == "custom":
            issued = await self._custom(defn, body, idem, by)
        else:
            if body.custom_codes is not None:
                raise ValidationFailed(
                    message="custom_codes are only accepted by custom-format definitions",
                    details=[FieldError("custom_codes", "not allowed for code_format 'random'")],
                )
            issued = await self._random(defn, body, idem, by)
        self._on_issued()
        return GenerateResponse(
            generated=len(issued),
            coupons=[GeneratedCoupon(user_id=c.user_id or "", code=c.code) for c in issued],
        )

    def _check_users(self, user_ids: Sequence[str]) -> None:
        if len(user_ids) > self._max_users:
            raise ValidationFailed(
                message=f"at most {self._max_users} user_ids per request",
                details=[FieldError("user_ids", f"must hold at most {self._max_users} items")],
            )
        seen: set[str] = set()
        errors: list[FieldError] = []
        for i, user in enumerate(user_ids):
            if not user.strip():
                errors.append(FieldError(f"user_ids.{i}", "must not be blank"))
            elif user in seen:
                errors.append(FieldError(f"user_ids.{i}", f"repeats user id {user!r}"))
            seen.add(user)
        if errors:
            raise ValidationFailed(message="invalid user_ids", details=errors)

    def _coupon(
        self,
        make: CouponFactory,
        user_id: str,
        code: str,
        position: int,
        idem: str | None,
        metadata: dict[str, Any] | None,
        by: Requester | None,
    ) -> Coupon:
        key = issue_keys.bulk(make.definition_id, idem, position, self._new_id())
        return make.coupon(key, code, self._clock(), user_id, requester=by, metadata=metadata)

    async def _take(self, defn: CouponDefinition, count: int) -> None:
        """Reserve `count` coupons of the definition's issuance budget, all or none: 409
        `issuance_limit_reached` (with how many are left) when they do not fit."""
        if not count:
            return
        taken = await self._budget.take(defn, count, partial=False)
        if taken.granted < count:
            raise _limit_reached(defn, count, taken.remaining or 0)

    async def _already_issued(
        self, defn: CouponDefinition, count: int, idem: str | None
    ) -> dict[int, Coupon]:
        """Coupons a keyed call stored before it crashed, by position, announced."""
        if idem is None:
            return {}
        keys = [issue_keys.bulk(defn.id, idem, i, "") for i in range(count)]
        found = await self._coupons.by_issue_keys(keys)
        # Announced now, as single entries: those of a call before bundles may still be
        # prepared (it crashed before readying them), and are readied by id, not after the
        # sweep's grace (a crashed call's bundle is the sweep's). One sent already goes again
        # (consumers dedupe).
        entries = [issued(c) for c in found.values()]
        if entries:
            await self._outbox.prepare(entries)
            await self._outbox.ready(entries)
        return {i: found[k] for i, k in enumerate(keys) if k in found}

    def _bundle(self, defn: CouponDefinition, coupon_ids: Sequence[str]) -> IssuedBundle:
        bundle_id = f"coupon.issued:bulk:{self._new_id()}"
        return IssuedBundle(bundle_id, defn.tenant_id, tuple(coupon_ids), self._clock())

    async def _announce(self, bundles: Sequence[IssuedBundle], stored: Sequence[Coupon]) -> None:
        """Ready each bundle naming the stored coupons it named (one named by several, the
        retries of a position, by the last); a bundle naming none is dropped."""
        left = {c.id: c for c in stored}
        for bundle in reversed(bundles):
            mine = bundle.stored(left.values())
            for coupon_id in mine.coupon_ids:
                del left[coupon_id]
            await self._outbox.ready_issued(mine)

    async def _random(
        self,
        defn: CouponDefinition,
        body: GenerateRequest,
        idem: str | None,
        by: Requester | None,
    ) -> list[Coupon]:
        user_ids = body.user_ids
        make = CouponFactory.of(defn, "bulk")
        spec = make.spec
        assert spec is not None  # a random-format definition
        done = await self._already_issued(defn, len(user_ids), idem)
        todo = [i for i in range(len(user_ids)) if i not in done]
        existing = await self._coupons.count_in_space(defn.tenant_id, spec.space)
        codes.check_capacity(spec, existing, len(todo))
        # Positions a keyed call stored before are not reserved again.
        await self._take(defn, len(todo))
        bundles: list[IssuedBundle] = []
        tried: set[str] = set()  # issue keys whose insert was attempted

        async def announced_insert(batch: Sequence[Coupon]) -> list[int]:
            bundle = self._bundle(defn, [c.id for c in batch])
            await self._outbox.prepare_issued(bundle)
            bundles.append(bundle)
            tried.update(c.issue_key for c in batch)
            return await self._coupons.insert_unordered(batch)

        try:
            drawn = await draw_and_insert(
                todo,
                self._codegen,
                lambda _: spec,
                lambda i, code: self._coupon(make, user_ids[i], code, i, idem, body.metadata, by),
                announced_insert,
                # A refused keyed position may be another attempt's coupon, not a collision.
                self._coupons.by_issue_keys if idem is not None else None,
            )
        except Exception:
            await self._settle_failed(defn, len(todo), tried)
            raise
        done.update({i: coupon for i, coupon in drawn.placed})
        # Another attempt's coupons (a keyed call's: the same ids) are announced with ours,
        # each built from the coupon as stored.
        done.update({i: coupon for i, coupon in drawn.found})
        await self._announce(bundles, [c for _, c in [*drawn.placed, *drawn.found]])
        # Reserved, not stored by us: another attempt's (which reserved it) or no free code.
        await self._budget.give_back(defn, len(drawn.found) + len(drawn.left))
        if drawn.left:
            raise CodeSpaceExhausted(
                message=f"could not find free codes after several rounds; {codes.MORE_ROOM}",
                details=[FieldError("user_ids", "too many collisions drawing codes")],
            )
        return [done[i] for i in range(len(user_ids))]

    async def _settle_failed(self, defn: CouponDefinition, taken: int, tried: set[str]) -> None:
        """A call that failed mid-write gives back the places of the coupons it did not
        store, if MongoDB answers again; else they stay taken (fewer issued, never more)."""
        if issuance_limit(defn) is None:
            return
        try:
            stored = await self._coupons.by_issue_keys(sorted(tried))
            await self._budget.give_back(defn, taken - len(stored))
        except Exception as exc:
            log.warning("issuance_budget_not_settled", definition_id=defn.id, error=str(exc))

    async def _custom(
        self, defn: CouponDefinition, body: GenerateRequest, idem: str | None, by: Requester | None
    ) -> list[Coupon]:
        user_ids, custom = body.user_ids, body.custom_codes
        if custom is None or len(custom) != len(user_ids):
            raise ValidationFailed(
                message="custom-format definitions need one custom code per user id",
                details=[
                    FieldError("custom_codes", "must hold exactly one code per user_ids item")
                ],
            )
        errors = [
            FieldError(f"custom_codes.{i}", reason)
            for i, code in enumerate(custom)
            if (reason := code_reason(code))
        ]
        if errors:
            raise ValidationFailed(message="invalid custom_codes", details=errors)
        done = await self._already_issued(defn, len(user_ids), idem)
        conflicts: list[dict[str, object]] = [
            {"code": c, "reason": "repeated in the request"}
            for c in codes.duplicates_ignoring_case(custom)
        ]
        todo = [i for i in range(len(user_ids)) if i not in done]
        make = CouponFactory.of(defn, "bulk")
        batch = [
            self._coupon(make, user_ids[i], custom[i], i, idem, body.metadata, by) for i in todo
        ]
        conflicts += await self._taken_conflicts(defn.tenant_id, batch)
        if conflicts:
            raise _codes_conflict(conflicts)
        await self._take(defn, len(batch))
        bundle = self._bundle(defn, [c.id for c in batch])
        await self._outbox.prepare_issued(bundle)
        try:
            await self._coupons.insert_atomic(batch)
        except DuplicateCodes as exc:  # a concurrent request took some of them
            await self._outbox.ready_issued(bundle.stored(()))  # naming none: dropped
            await self._budget.give_back(defn, len(batch))
            raise _codes_conflict(await self._taken_conflicts(defn.tenant_id, batch)) from exc
        await self._outbox.ready_issued(bundle.stored(batch))
        done.update({i: c for i, c in zip(todo, batch, strict=True)})
        return [done[i] for i in range(len(user_ids))]

    async def _taken_conflicts(
        self, tenant_id: str, batch: Sequence[Coupon]
    ) -> list[dict[str, object]]:
        taken = await self._coupons.taken(tenant_id, [c.code_norm for c in batch])
        return [
            {"code": c.code, "user_id": c.user_id, "reason": "already used in this tenant"}
            for c in batch
            if c.code_norm in taken
        ]


def _limit_reached(defn: CouponDefinition, asked: int, remaining: int) -> Conflict:
    limit = issuance_limit(defn)
    return Conflict(
        message=f"{remaining} coupon(s) left of the definition's issuance_limit.max_coupons "
        f"({limit}); the request asks for {asked}: nothing was generated",
        code="issuance_limit_reached",
        conflicts=[
            {"field": "user_ids", "requested": asked, "remaining": remaining, "max_coupons": limit}
        ],
    )


def _codes_conflict(conflicts: list[dict[str, object]]) -> Conflict:
    return Conflict(
        message=f"{len(conflicts)} custom code(s) conflict; nothing was generated",
        code="custom_codes_conflict",
        conflicts=conflicts,
    )
