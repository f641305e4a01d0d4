"""Issuing coupons for a batch of inbound events: match against the in-memory definitions,
draw codes, store with one bulk write, and hand back what is to be announced."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from phoenix_coupons.domain import codes, issue_keys
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.config_rules import DEFAULT_CODE_LENGTH
from phoenix_coupons.domain.matching import DefinitionIndex, Event
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.ports import CouponRepo, IdFactory
from schemas.coupons import CouponDefinition

MAX_DRAW_ROUNDS = 8


@dataclass
class BatchOutcome:
    """`announce`: coupons to publish, in event order (new ones and those a crashed attempt
    stored). `matched`: matches per event position. `failed`: positions that could not get a
    code (code space full) and go to the dead-letter topic."""

    announce: list[Coupon] = field(default_factory=list)
    issued: int = 0
    matched: dict[int, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)


class IssuanceService:
    def __init__(
        self,
        coupons: CouponRepo,
        index: Callable[[], DefinitionIndex],
        codegen: codes.CodeGenerator,
        clock: Clock,
        new_id: IdFactory,
    ) -> None:
        self._coupons = coupons
        self._index = index
        self._codegen = codegen
        self._clock = clock
        self._new_id = new_id

    async def issue(self, events: Sequence[Event], owner: str, lease_until_ms: int) -> BatchOutcome:
        """Issue what `events` trigger. New coupons are stored claimed by `owner` until
        `lease_until_ms`: the outbox relay leaves them alone meanwhile, and announces them if
        the worker dies and the lease runs out."""
        outcome = BatchOutcome()
        if not events:
            return outcome
        now = self._clock()
        index = self._index()
        # A redelivered event: an attempt that died before its offsets were committed stored
        # these coupons. They are announced again, whatever the definitions say now.
        by_event = {(e.tenant_id, e.user_id, e.event_id): i for i, e in enumerate(events)}
        prior: dict[str, tuple[int, Coupon]] = {}
        for coupon in await self._coupons.pending_for_events([e.event_id for e in events]):
            origin = (coupon.tenant_id, coupon.user_id or "", coupon.trigger_event_id or "")
            pos = by_event.get(origin)
            if pos is not None:
                prior[coupon.issue_key] = (pos, coupon)
        wanted: list[tuple[int, Coupon, CouponDefinition]] = []
        seen: set[str] = set(prior)
        for pos, event in enumerate(events):
            found = index.match(event, now)
            if found:
                outcome.matched[pos] = len(found)
            for match in found:
                key = issue_keys.event(match.definition.id, event.user_id, match.occurrence)
                if key in seen:
                    continue
                seen.add(key)
                coupon = self._coupon(match.definition, event, key, now)
                coupon.publish_owner, coupon.publish_lease = owner, lease_until_ms
                wanted.append((pos, coupon, match.definition))
        placed = await self._store(wanted, outcome)
        chosen = sorted([*prior.values(), *placed], key=lambda pc: pc[0])
        outcome.announce = [coupon for _, coupon in chosen]
        return outcome

    async def mark_announced(self, coupons: Sequence[Coupon]) -> None:
        """Kafka acknowledged these: neither a replay nor the relay announces them again."""
        await self._coupons.mark_announced([c.id for c in coupons])

    def _coupon(self, defn: CouponDefinition, event: Event, key: str, now: datetime) -> Coupon:
        cfg = defn.config
        length = cfg.code_length or DEFAULT_CODE_LENGTH
        prefix = cfg.code_prefix or ""
        return Coupon(
            id=self._new_id(),
            tenant_id=defn.tenant_id,
            definition_id=defn.id,
            reward_item_id=cfg.reward_item_id,
            code="",
            code_norm="",
            kind="issued",
            source="event",
            issue_key=key,
            issued_at=now,
            user_id=event.user_id,
            code_space=f"{codes.normalize(prefix)}:{length}",
            starts_at=cfg.starts_at,
            expires_at=cfg.expires_at,
            trigger_event_id=event.event_id,
            publish_pending=True,
        )

    async def _store(
        self, wanted: list[tuple[int, Coupon, CouponDefinition]], outcome: BatchOutcome
    ) -> list[tuple[int, Coupon]]:
        placed: list[tuple[int, Coupon]] = []
        todo = wanted
        for _ in range(MAX_DRAW_ROUNDS):
            if not todo:
                break
            drawn: set[str] = set()
            for _pos, coupon, defn in todo:
                cfg = defn.config
                while True:
                    code = self._codegen.one(
                        cfg.code_prefix or "",
                        cfg.code_length or DEFAULT_CODE_LENGTH,
                        cfg.case_sensitive,
                    )
                    if codes.normalize(code) not in drawn:
                        break
                coupon.code, coupon.code_norm = code, codes.normalize(code)
                drawn.add(coupon.code_norm)
            refused = set(await self._coupons.insert_unordered([c for _, c, _ in todo]))
            placed += [(pos, c) for j, (pos, c, _) in enumerate(todo) if j not in refused]
            outcome.issued += len(todo) - len(refused)
            if not refused:
                return placed
            retry = [todo[j] for j in sorted(refused)]
            # A refused coupon whose issue key exists was issued before (a replay): nothing
            # new, nothing to announce. The others collided on a code and are drawn again.
            existing = await self._coupons.by_issue_keys([c.issue_key for _, c, _ in retry])
            todo = [t for t in retry if t[1].issue_key not in existing]
        for pos, _coupon, _defn in todo:
            outcome.failed[pos] = "code_space_exhausted"
        return placed
