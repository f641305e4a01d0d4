"""Holds (reservations): reserve a use of a coupon for a while, then confirm it into a
redemption or release it. A hold takes its use through the slots a redemption takes
(services/redemptions.py `take_slot`), so limits stay exact across redeems and holds.

Events through the outbox: `coupon.reserved` (prepared before the reservation is stored,
readied after: by the process's settler once the answer is out, as a redeem's), and once
per hold `coupon.reservation_released` (reason released, expired or confirmed; written
after the reservation's state, which decides it). A confirm also announces its
redemption's `coupon.redeemed`, as a redeem does.

Choices: a second confirm of a confirmed hold answers its redemption again (200), whatever
its Idempotency-Key, as a retrying checkout wants; a hold never outlives its coupon's
validity (domain/reservation.py `hold_end`), and a confirm applies the redeem rules as they
are then (a paused definition, a revoked code refuse it); a release of a released hold
answers it again (200)."""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from pydantic import BaseModel

from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.errors import Conflict, NotFound, Refused, SlotTaken
from phoenix_coupons.domain.name_ids import name_id
from phoenix_coupons.domain.outbox import OutboxEntry, redeemed, released, reserved
from phoenix_coupons.domain.redemption import Redemption, refusal, refused
from phoenix_coupons.domain.reservation import Reservation, hold_end
from phoenix_coupons.services.idempotency import key_reused, request_hash
from phoenix_coupons.services.ports import Outbox, RedemptionRepo, ReservationRepo
from phoenix_coupons.services.redemptions import (
    REDEMPTION_NAMESPACE,
    RedemptionService,
    caller_actor,
    coupon_view,
    keyed_id,
    redemption_view,
    take_own_slot,
    take_slot,
)
from phoenix_coupons.services.settler import Settler
from schemas.redemptions import RedeemRequest, ReserveRequest
from schemas.redemptions import Redemption as RedemptionView
from schemas.redemptions import Reservation as ReservationView

RESERVATION_NAMESPACE = uuid.UUID("3f6a0c52-9d1e-4b7a-8e25-5c1d9b0a7e64")


class _Confirm(BaseModel):
    """What a confirm asks (its path): the body an Idempotency-Key is judged by."""

    reservation_id: str


def reservation_view(r: Reservation) -> ReservationView:
    return ReservationView(
        reservation_id=r.id,
        status=r.state,
        user_id=r.user_id,
        reserved_at=r.reserved_at,
        expires_at=r.expires_at,
        coupon=r.coupon,
        reward=r.reward,
        metadata=None if r.metadata is None else dict(r.metadata),
        redemption_id=r.redemption_id,
    )


def not_found(reservation_id: str) -> NotFound:
    return NotFound(message=f"reservation {reservation_id} not found", code="reservation_not_found")


def ended(r: Reservation) -> Conflict:
    """The 409 of a hold that is no longer held (expired: also while its time is over)."""
    if r.state == "released":
        return Conflict(message="the reservation was released", code="reservation_released")
    if r.state == "confirmed":
        return Conflict(message="the reservation was confirmed", code="reservation_confirmed")
    return Conflict(message="the reservation has expired", code="reservation_expired")


class ReservationService:
    def __init__(
        self,
        redeeming: RedemptionService,
        reservations: ReservationRepo,
        redemptions: RedemptionRepo,
        outbox: Outbox,
        clock: Clock,
        on_event: Callable[[], None],
        settler: Settler | None = None,
    ) -> None:
        self._redeeming = redeeming
        self._reservations = reservations
        self._redemptions = redemptions
        self._outbox = outbox
        self._clock = clock
        self._on_event = on_event
        self._settler = settler  # None: a call readies its entries before it answers

    async def _announce(self, entries: Sequence[OutboxEntry]) -> None:
        """Ready prepared entries whose subject is stored: through the settler after the
        answer (a crash first: `sweep_outbox` readies them, their subject being stored), or
        now."""
        if self._settler is not None:
            self._settler.add(None, entries)
            return
        await self._outbox.ready(entries)
        self._on_event()

    async def reserve(
        self,
        tenant_id: str,
        body: ReserveRequest,
        caller: str,
        idempotency_key: str | None = None,
    ) -> tuple[ReservationView, bool]:
        """The hold, and whether it is new (False: the replay of a keyed reserve). Refused
        as a redeem is, with the same reasons."""
        if idempotency_key is not None:
            rid = keyed_id(RESERVATION_NAMESPACE, tenant_id, idempotency_key)
            earlier = await self._reservations.get(tenant_id, rid)
            if earlier is not None:
                return self._replay(earlier, body), False
        else:
            rid = str(uuid.uuid4())
        ok = await self._redeeming.admit(tenant_id, body, caller)
        group, now = ok.group, ok.now
        hold = Reservation(
            id=rid,
            tenant_id=tenant_id,
            user_id=body.user_id,
            group=group.key,
            state="held",
            reserved_at=now,
            expires_at=hold_end(ok.coupon, ok.defn, now, body.ttl_seconds),
            coupon=coupon_view(ok.coupon),
            reward=ok.reward,
            slot=None,
            slot_no=None,
            request_hash=request_hash(body),
            metadata=body.metadata,
        )
        actor = caller_actor(caller)
        entry = reserved(hold, actor)
        await self._outbox.prepare([entry])
        repo = self._reservations

        async def clash() -> bool:
            keyed = idempotency_key is not None
            return keyed and await repo.get(tenant_id, rid) is not None

        async def claim_own(slot: str, number: int, replaces: str | None) -> None:
            assert ok.own is not None
            await repo.claim_code_slot(hold, ok.own.key, slot, number, replaces)

        stored = hold  # as inserted, with the slots it claimed

        try:
            own = await take_own_slot(self._redemptions, ok.own, now, claim_own, clash)
            hold = stored = replace(hold, code_slot=own)
            try:
                if group.limit is None:
                    await repo.insert(hold)
                else:

                    async def claim(slot: str, number: int, replaces: str | None) -> None:
                        nonlocal stored
                        stored = replace(hold, slot=slot, slot_no=number)
                        await repo.insert(stored, replaces)

                    await take_slot(self._redemptions, group, now, claim, clash)
            except BaseException:
                await repo.release_slot(hold)  # the code's slot (the group's: not taken)
                raise
        except (SlotTaken, Refused):
            # As redeem: a concurrent reserve with the same key won; replay it.
            earlier = await repo.get(tenant_id, rid) if idempotency_key is not None else None
            if earlier is None:
                if idempotency_key is None:
                    await self._outbox.discard([entry.id])
                raise
            await self._outbox.prepare([reserved(earlier, actor)])
            await self._announce([reserved(earlier, actor)])
            return self._replay(earlier, body), False
        await self._announce([entry])
        return reservation_view(stored), True

    def _replay(self, earlier: Reservation, body: ReserveRequest) -> ReservationView:
        if earlier.request_hash != request_hash(body):
            raise key_reused("this Idempotency-Key was used for another reserve request")
        return reservation_view(earlier)

    async def confirm(
        self,
        tenant_id: str,
        reservation_id: str,
        caller: str,
        idempotency_key: str | None = None,
    ) -> tuple[RedemptionView, bool]:
        """The hold turned into its redemption (True), or that redemption again (False: a
        confirm of a confirmed hold, or a keyed replay)."""
        asked = request_hash(_Confirm(reservation_id=reservation_id))
        rid = None
        if idempotency_key is not None:
            rid = keyed_id(REDEMPTION_NAMESPACE, tenant_id, idempotency_key)
            earlier = await self._redemptions.get(tenant_id, rid)
            if earlier is not None:
                if earlier.request_hash != asked:
                    raise key_reused("this Idempotency-Key was used for another request")
                return redemption_view(earlier), False
        hold = await self._reservations.get(tenant_id, reservation_id)
        if hold is None:
            raise not_found(reservation_id)
        if hold.state == "confirmed" and hold.redemption_id is not None:
            return await self._made(tenant_id, hold.redemption_id), False
        if hold.state != "held":
            raise ended(hold)
        now = self._clock()
        if hold.redemption_id is None:  # no confirm has started: the rules decide
            if not hold.held_at(now):
                raise ended(hold)
            await self._check_rules(hold, caller, now)
            rid = rid or name_id(RESERVATION_NAMESPACE, f"confirm\x1f{hold.id}")
            claimed = await self._reservations.claim_confirm(tenant_id, hold.id, rid, now)
            if claimed is None:
                raise not_found(reservation_id)
            hold = claimed
            if hold.redemption_id is None or hold.state != "held":
                if hold.state == "confirmed" and hold.redemption_id is not None:
                    return await self._made(tenant_id, hold.redemption_id), False
                raise ended(hold)
        return await self._turn(hold, hold.redemption_id, caller, asked)

    async def _check_rules(self, hold: Reservation, caller: str, now: datetime) -> None:
        """The redeem rules as they are now (the definition paused, the code revoked...)."""
        body = RedeemRequest(code=hold.coupon.code, user_id=hold.user_id)
        coupon, defn, _ = await self._redeeming.load(hold.tenant_id, body, caller)
        reason = refusal(coupon, defn, hold.user_id, now)
        if reason is not None:
            raise refused(reason)

    async def _turn(
        self, hold: Reservation, redemption_id: str, caller: str, asked: str
    ) -> tuple[RedemptionView, bool]:
        """Store the redemption in the hold's slot, then announce it and settle the hold as
        confirmed. The events are built from the redemption as stored (concurrent confirms
        of one hold store one), after it: a crash before them leaves the hold held with its
        redemption named, which the sweep confirms and announces."""
        at = self._clock()
        redemption = Redemption(
            id=redemption_id,
            tenant_id=hold.tenant_id,
            user_id=hold.user_id,
            group=hold.group,
            state="redeemed",
            redeemed_at=at,
            coupon=hold.coupon,
            reward=hold.reward,
            request_hash=asked,
            metadata=hold.metadata,
            reservation_id=hold.id,
            code_slot=hold.code_slot,
        )
        turn = await self._redemptions.insert_held(redemption, hold, at)
        if turn == "lost":
            raise ended(replace(hold, state="expired"))
        stored = redemption
        if turn == "again":  # an earlier confirm of this hold stored it: its fields
            stored = await self._redemptions.get(hold.tenant_id, redemption_id) or redemption
        actor = caller_actor(caller)
        entries = [redeemed(stored, actor)]
        confirmed = await self._reservations.settle(
            replace(hold, redemption_id=stored.id), "confirmed", at
        )
        if confirmed is not None:
            entries.append(released(confirmed, "confirmed", at, actor))
        await self._outbox.prepare(entries)
        if confirmed is not None:
            await self._reservations.finish(confirmed)
        await self._announce(entries)
        return redemption_view(stored), turn == "turned"

    async def _made(self, tenant_id: str, redemption_id: str) -> RedemptionView:
        made = await self._redemptions.get(tenant_id, redemption_id)
        if made is None:  # confirmed is written after its redemption: a broken state
            raise NotFound(
                message="the reservation's redemption is missing", code="redemption_not_found"
            )
        return redemption_view(made)

    async def release(self, tenant_id: str, reservation_id: str, caller: str) -> ReservationView:
        """Give the held use back, once (a released hold answers again); 409 once it expired
        or was confirmed."""
        hold = await self._reservations.get(tenant_id, reservation_id)
        if hold is None:
            raise not_found(reservation_id)
        if hold.state == "released":
            return reservation_view(hold)
        now = self._clock()
        if hold.state != "held" or hold.redemption_id is not None or not hold.held_at(now):
            raise ended(hold if hold.redemption_id is None else replace(hold, state="confirmed"))
        done = await self._reservations.settle(hold, "released", now)
        if done is None:  # a confirm or the sweep came first
            again = await self._reservations.get(tenant_id, reservation_id) or hold
            if again.state == "released":
                return reservation_view(again)
            raise ended(again if again.state != "held" else replace(again, state="confirmed"))
        entry = released(done, "released", now, caller_actor(caller))
        await self._outbox.prepare([entry])
        await self._reservations.finish(done)
        await self._announce([entry])
        return reservation_view(done)
