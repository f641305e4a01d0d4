"""The worker's redelivery rules, in one place: which records of a batch are replays, which
may hold coupons an earlier attempt stored, and which coupons are announced (again).

Each inbound partition has two marks (domain/delivery.py `Marks`), kept in storage for every
worker and consumer group (port `AnnouncedMarks`):
- below `announced`: processed and announced before. A replay (a new consumer group reading
  from the start, say) announces nothing again and issues nothing again.
- from `announced` up to `inflight`: an attempt may have stored coupons and died before it
  committed. Such a record looks up its event's coupons: those this very record stored are
  announced again (even if their definition no longer matches), none is issued again.
The worker raises `inflight` before each store and `announced` after each commit, and each
event coupon keeps (in storage) the record that stored it, so that the same event in another
record is told apart from a redelivery. A retry in the same process looks up every record:
the failed attempt may have stored coupons for any. No per-coupon "announced" write.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import structlog

from phoenix_coupons.domain.delivery import EventRef, Marks, Partition, RecordId
from phoenix_coupons.domain.matching import Event
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.issuance import StoreOutcome
from phoenix_coupons.services.ports import AnnouncedMarks, CouponRepo, StoredCoupon

log = structlog.get_logger(__name__)


class Positioned(Protocol):
    """An inbound record, as far as the rules look at it (aiokafka's ConsumerRecord is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class Announcement(NamedTuple):
    """A coupon to announce; `pos`: the position of the event whose record announces it."""

    pos: int
    coupon: Coupon


class Deliveries:
    """How each event of a batch was delivered, by position: the record, whether it is a
    replay (`replayed`) and whether an earlier attempt may have stored coupons for it (its
    position is among `lookups()`). Worked out on demand: most events match nothing, and
    nothing is asked about their records."""

    def __init__(
        self,
        sources: Sequence[Positioned],
        marks: Mapping[Partition, Marks],
        everywhere: bool = False,
    ) -> None:
        """`sources`: the record of each event; `marks`: of their partitions; `everywhere`:
        a retry, whose failed attempt may have stored coupons for any record."""
        self._sources = sources
        self._marks = marks
        self._everywhere = everywhere

    def record(self, pos: int) -> RecordId:
        r = self._sources[pos]
        return RecordId(r.topic, r.partition, r.offset)

    def replayed(self, pos: int) -> bool:
        r = self._sources[pos]
        return r.offset < self._marks[Partition(r.topic, r.partition)].announced

    def _look_up(self, r: Positioned) -> bool:
        announced, inflight = self._marks[Partition(r.topic, r.partition)]
        return announced <= r.offset and (self._everywhere or r.offset < inflight)

    def lookups(self) -> list[int]:
        """The positions whose records may hold an earlier attempt's coupons."""
        if not self._everywhere and all(m.inflight <= m.announced for m in self._marks.values()):
            return []  # the usual case: nothing stored past what was announced
        return [i for i, r in enumerate(self._sources) if self._look_up(r)]


@dataclass
class Earlier:
    """What earlier attempts stored for the events looked up: `keys`, issued already (not
    wanted again); `again`, the coupons their own records announce again."""

    keys: set[str] = field(default_factory=set)
    again: list[Announcement] = field(default_factory=list)


def reannounce_at(
    stored: StoredCoupon, deliveries: Deliveries, positions: Iterable[int]
) -> int | None:
    """The position whose record stored `stored` in an attempt that never committed it (its
    announcement may be lost), or None: the same event in another record, or a replay, was
    announced."""
    for pos in positions:
        if not deliveries.replayed(pos) and stored.record == deliveries.record(pos):
            return pos
    return None


def earlier_found(
    positions: Mapping[EventRef, Sequence[int]],
    found: Iterable[StoredCoupon],
    deliveries: Deliveries,
) -> Earlier:
    """`found`: coupons stored for the events looked up, at `positions` per event."""
    earlier = Earlier()
    for stored in found:
        c = stored.coupon
        at = positions.get(EventRef(c.tenant_id, c.user_id or "", c.trigger_event_id or ""))
        if not at:
            continue
        earlier.keys.add(c.issue_key)
        pos = reannounce_at(stored, deliveries, at)
        if pos is not None:
            earlier.again.append(Announcement(pos, c))
    return earlier


def announcements(
    earlier: Earlier,
    stored: StoreOutcome,
    asked: Mapping[str, Sequence[int]],
    deliveries: Deliveries,
) -> list[Announcement]:
    """In event order: the coupons earlier attempts stored for their own records, those
    stored now, and those found stored under a wanted issue key whose own record is among
    the positions asking for it (`asked`) and not a replay."""
    out = list(earlier.again)
    out += [Announcement(p.item.pos, p.coupon) for p in stored.placed]
    for wanted, before in stored.found:
        pos = reannounce_at(before, deliveries, asked[wanted.key])
        if pos is not None:
            out.append(Announcement(pos, before.coupon))
    out.sort(key=lambda a: a.pos)
    return out


class Redelivery:
    """The marks of the partitions a worker consumes (read from storage when first needed,
    then advanced by its own commits) and the look-ups of earlier attempts' coupons."""

    def __init__(self, marks: AnnouncedMarks, coupons: CouponRepo) -> None:
        self._store = marks
        self._coupons = coupons
        self._marks: dict[Partition, Marks] = {}

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Newly assigned partitions: another worker may have moved their marks meanwhile."""
        for tp in partitions:
            self._marks.pop(tp, None)

    async def deliveries(
        self, partitions: Sequence[Partition], sources: Sequence[Positioned], retry: bool
    ) -> Deliveries:
        """`partitions`: those of `sources`; `retry`: an attempt of this batch failed."""
        unknown = [tp for tp in partitions if tp not in self._marks]
        if unknown:
            self._marks.update(await self._store.load(unknown))
        return Deliveries(sources, {tp: self._marks[tp] for tp in partitions}, retry)

    async def earlier(self, events: Sequence[Event], deliveries: Deliveries) -> Earlier:
        """The coupons earlier attempts stored for the events to look up."""
        look = deliveries.lookups()
        if not look:
            return Earlier()
        positions: dict[EventRef, list[int]] = defaultdict(list)
        for i in look:
            positions[EventRef(events[i].tenant_id, events[i].user_id, events[i].event_id)].append(
                i
            )
        found = await self._coupons.for_trigger_events(list(positions))
        return earlier_found(positions, found, deliveries)

    async def mark_inflight(self, offsets: Mapping[Partition, int]) -> None:
        """Before coupons of records below these next offsets are stored."""
        await self._store.mark_inflight(offsets)

    async def advance(self, offsets: Mapping[Partition, int], announced: bool) -> None:
        """After a commit up to these next offsets. `announced`: the batch announced coupons;
        one that announced none needn't move the stored marks (replayed, its records find
        nothing to announce): one write saved per batch of non-matching events."""
        for tp, offset in offsets.items():
            mark = self._marks.get(tp, Marks())
            self._marks[tp] = Marks(max(mark.announced, offset), mark.inflight)
        if not announced:
            return
        try:
            await self._store.advance(offsets)
        except Exception as exc:  # only a later replay could announce these again
            log.warning("announced_offsets_not_saved", error=repr(exc))
