"""Where an inbound event came from, as the worker's redelivery rules see it: the Kafka record
that delivered it, the partition's marks, and the event's identity. Plain values: no Kafka
client, no storage."""

from typing import NamedTuple


class Partition(NamedTuple):
    topic: str
    partition: int


class RecordId(NamedTuple):
    """An inbound record. The coupons its event issued keep it (in storage), so that a
    redelivery of that very record announces them again, and nothing else does."""

    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> Partition:
        return Partition(self.topic, self.partition)


class Marks(NamedTuple):
    """Two marks per inbound partition (next offsets). Below `announced`: processed and
    announced before (a replay announces nothing again). Between the two: an attempt that
    died before committing may have stored coupons (their records look them up)."""

    announced: int = 0
    inflight: int = 0


class EventRef(NamedTuple):
    """An inbound event by identity: an earlier attempt's coupons are found by it."""

    tenant_id: str
    user_id: str
    event_id: str
