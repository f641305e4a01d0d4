"""Issuing coupons for a batch of inbound events: match against the in-memory definitions,
draw codes, store with one bulk write, and hand back what is to be announced.

Whether a stored coupon is announced again depends on the record that delivers its event:
the worker tells, per event, whether the record's offset was committed before (a replay:
announced then) and whether an earlier attempt may have stored coupons for it without
announcing them (a redelivery after a crash). No per-coupon "announced" write is needed.
"""

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from phoenix_coupons.domain import codes, issue_keys
from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.config_rules import DEFAULT_CODE_LENGTH
from phoenix_coupons.domain.matching import DefinitionIndex, Event
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.ports import CouponRepo
from schemas.coupons import CouponDefinition

MAX_DRAW_ROUNDS = 8


@dataclass(frozen=True)
class Delivery:
    """How an event reached the worker. `record`: "topic:partition:offset", kept with the
    coupons it issues. `announced`: the offset was committed before, so whatever this record
    issued was announced then (a replay). `lookup`: an attempt that died before committing
    may have stored coupons for it: look them up, even those of definitions that no longer
    match."""

    record: str
    announced: bool = False
    lookup: bool = False


class Deliveries(Protocol):
    """The deliveries of a batch's events, by position. Built on demand: most events match
    nothing, and then their delivery is never asked for."""

    def __getitem__(self, pos: int) -> Delivery: ...

    def lookups(self) -> Sequence[int]:
        """The positions whose delivery has `lookup` set."""
        ...


@dataclass
class BatchOutcome:
    """`announce`: coupons to publish, in event order (new ones and those an earlier attempt
    stored for the same record). `matched`: matches per event position. `failed`: positions
    that could not get a code (code space full) and go to the dead-letter topic."""

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
    ) -> None:
        self._coupons = coupons
        self._index = index
        self._codegen = codegen
        self._clock = clock

    async def issue(
        self,
        events: Sequence[Event],
        deliveries: Deliveries,
        before_store: Callable[[], Awaitable[None]] | None = None,
    ) -> BatchOutcome:
        """`before_store`: awaited once before any coupon is stored (the worker raises its
        inflight marks there)."""
        outcome = BatchOutcome()
        if not events:
            return outcome
        now = self._clock()
        index = self._index()
        seen: set[str] = set()
        prior = await self._prior(events, deliveries, seen)
        wanted: list[tuple[int, Coupon, CouponDefinition]] = []
        # Every position asking for a key: a batch may hold the same event more than once.
        asked: dict[str, list[int]] = defaultdict(list)
        for pos, found in index.match_all(events, now).items():
            event = events[pos]
            outcome.matched[pos] = len(found)
            for match in found:
                key = issue_keys.event(match.definition.id, event.user_id, match.occurrence)
                asked[key].append(pos)
                if key in seen:
                    continue
                seen.add(key)
                coupon = self._coupon(match.definition, event, key, now)
                coupon.trigger_record = deliveries[pos].record
                wanted.append((pos, coupon, match.definition))
        if wanted and before_store is not None:
            await before_store()
        placed = await self._store(wanted, deliveries, asked, outcome)
        chosen = sorted([*prior, *placed], key=lambda pc: pc[0])
        outcome.announce = [coupon for _, coupon in chosen]
        return outcome

    async def _prior(
        self, events: Sequence[Event], deliveries: Deliveries, seen: set[str]
    ) -> list[tuple[int, Coupon]]:
        """Coupons an earlier attempt stored for the events to look up: those of the same
        record are announced again; any found is not issued again."""
        look = deliveries.lookups()
        if not look:
            return []
        by_event: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for i in look:
            by_event[(events[i].tenant_id, events[i].user_id, events[i].event_id)].append(i)
        prior: list[tuple[int, Coupon]] = []
        for coupon in await self._coupons.for_trigger_events(list(by_event)):
            origin = (coupon.tenant_id, coupon.user_id or "", coupon.trigger_event_id or "")
            positions = by_event.get(origin)
            if not positions:
                continue
            seen.add(coupon.issue_key)
            pos = _reannounce_at(coupon, deliveries, positions)
            if pos is not None:
                prior.append((pos, coupon))
        return prior

    def _coupon(self, defn: CouponDefinition, event: Event, key: str, now: datetime) -> Coupon:
        cfg = defn.config
        length = cfg.code_length or DEFAULT_CODE_LENGTH
        prefix = cfg.code_prefix or ""
        return Coupon(
            id=issue_keys.coupon_id(key),
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
            # Announced by the worker itself, before it commits the offsets (and again on a
            # redelivery): the outbox relay is for bulk coupons.
            publish_pending=False,
        )

    async def _store(
        self,
        wanted: list[tuple[int, Coupon, CouponDefinition]],
        deliveries: Deliveries,
        asked: dict[str, list[int]],
        outcome: BatchOutcome,
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
            # A refused coupon whose issue key exists was issued before: announced again only
            # when its own record comes again uncommitted. The others collided on a code and
            # are drawn again.
            existing = await self._coupons.by_issue_keys([c.issue_key for _, c, _ in retry])
            for _pos, coupon, _defn in retry:
                stored = existing.get(coupon.issue_key)
                if stored is None:
                    continue
                at = _reannounce_at(stored, deliveries, asked[coupon.issue_key])
                if at is not None:
                    placed.append((at, stored))
            todo = [t for t in retry if t[1].issue_key not in existing]
        for pos, _coupon, _defn in todo:
            outcome.failed[pos] = "code_space_exhausted"
        return placed


def _reannounce_at(coupon: Coupon, deliveries: Deliveries, positions: Sequence[int]) -> int | None:
    """The position of the record that stored `coupon` in an attempt that never committed
    it (its announcement may be lost), or None: the same event in another record, or a
    replay, was announced."""
    for pos in positions:
        delivery = deliveries[pos]
        if not delivery.announced and coupon.trigger_record == delivery.record:
            return pos
    return None
