"""The batch pipeline, straight down: decode the records, prepare their deliveries (the
redelivery marks), plan the coupons wanted, raise the inflight mark and store them, then
decide the announcements. What it hands back is published and committed by the transport
(consumers/loop.py), which then advances the marks."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import NamedTuple, TypeAlias, cast

from aiokafka.structs import ConsumerRecord, TopicPartition

from consumers.decode import decode_batch
from consumers.poison import PoisonRecord
from phoenix_coupons.domain.delivery import Partition
from phoenix_coupons.domain.matching import Event
from phoenix_coupons.services.issuance import NO_FREE_CODE, IssuanceService, StoreOutcome, Wanted
from phoenix_coupons.services.redelivery import Announcement, Redelivery, announcements

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Batch: TypeAlias = dict[TopicPartition, list[Record]]
_VALUE = attrgetter("value")  # in C: no Python-level step per record


class DeadLetter(NamedTuple):
    """A record for the dead-letter topic: `code` (machine-readable) and `message` go in its
    headers (`adapters/kafka.py` `dead_letter`)."""

    record: Record
    code: str
    message: str


@dataclass(frozen=True)
class Decoded:
    """A batch decoded: its events and the record of each (`sources`, by position), the
    records to dead-letter, and each partition's next offset."""

    records: list[Record]
    values: Sequence[Event | PoisonRecord]
    events: Sequence[Event]
    sources: list[Record]
    dead: list[DeadLetter]
    offsets: dict[TopicPartition, int]

    @classmethod
    def of(cls, batch: Batch) -> "Decoded":
        records: list[Record] = list(chain.from_iterable(batch.values()))
        values = decode_batch(list(map(_VALUE, records)))
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items()}
        return cls._split(records, values, offsets)

    def only(self, partitions: Collection[TopicPartition]) -> "Decoded":
        """The records of these partitions only (exactly once: those still to commit)."""
        if len(partitions) == len(self.offsets):
            return self
        kept = [
            (r, v)
            for r, v in zip(self.records, self.values, strict=True)
            if (r.topic, r.partition) in partitions
        ]
        offsets = {tp: o for tp, o in self.offsets.items() if tp in partitions}
        return self._split([r for r, _ in kept], [v for _, v in kept], offsets)

    @classmethod
    def _split(
        cls,
        records: list[Record],
        values: Sequence[Event | PoisonRecord],
        offsets: dict[TopicPartition, int],
    ) -> "Decoded":
        if PoisonRecord not in map(type, values):  # the usual batch: no step per record
            return cls(records, values, cast("Sequence[Event]", values), records, [], offsets)
        events: list[Event] = []
        sources: list[Record] = []
        dead: list[DeadLetter] = []
        for record, one in zip(records, values, strict=True):
            if isinstance(one, PoisonRecord):
                dead.append(DeadLetter(record, one.code, one.message))
            else:
                events.append(one)
                sources.append(record)
        return cls(records, values, events, sources, dead, offsets)

    @property
    def partitions(self) -> list[Partition]:
        return [Partition(tp.topic, tp.partition) for tp in self.offsets]


@dataclass
class Outcome:
    """What an attempt at a batch hands the transport: the coupons to announce, in event
    order, and the records to dead-letter; `issued` (new coupons), `matched` (matches per
    event position) and `over_budget` (coupons refused by an issuance limit) for the
    metrics."""

    announce: list[Announcement] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    issued: int = 0
    matched: dict[int, int] = field(default_factory=dict)
    over_budget: list[Wanted] = field(default_factory=list)


class Pipeline:
    def __init__(self, issuance: IssuanceService, redelivery: Redelivery) -> None:
        self._issuance = issuance
        self._redelivery = redelivery

    async def run(self, work: Decoded, retry: bool) -> Outcome:
        """One attempt at a batch; `retry`: an earlier attempt at it failed."""
        partitions = work.partitions
        deliveries = await self._redelivery.deliveries(partitions, work.sources, retry)
        earlier = await self._redelivery.earlier(work.events, deliveries)
        plan = self._issuance.plan(work.events, skip=earlier.keys)
        stored = StoreOutcome()
        if plan.wanted:
            offsets = dict(zip(partitions, work.offsets.values(), strict=True))
            await self._redelivery.mark_inflight(offsets)
            records = {w.key: deliveries.record(w.pos) for w in plan.wanted}
            stored = await self._issuance.store(plan, records)
        failed = [DeadLetter(work.sources[pos], *NO_FREE_CODE) for pos in stored.failed]
        return Outcome(
            announcements(earlier, stored, plan.asked, deliveries),
            work.dead + failed,
            len(stored.placed),
            plan.matched,
            stored.over_budget,
        )
