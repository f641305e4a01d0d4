"""The worker's redelivery rules (services/redelivery.py), pure: which records are replays,
which may hold an earlier attempt's coupons, and what is announced (again), given the
partitions' marks and the coupons found stored."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from aiokafka.structs import TopicPartition
from structlog.testing import capture_logs

from consumers.pipeline import Decoded, Pipeline
from phoenix_coupons.domain.codes import CodeGenerator
from phoenix_coupons.domain.delivery import EventRef, Marks, Partition, RecordId
from phoenix_coupons.domain.inbound import AchievementCompleted, AchievementData
from phoenix_coupons.domain.matching import DefinitionIndex
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.drawing import Found, Placed
from phoenix_coupons.services.issuance import IssuanceService, StoreOutcome, Wanted
from phoenix_coupons.services.ports import StoredCoupon
from phoenix_coupons.services.redelivery import (
    Announcement,
    Deliveries,
    Earlier,
    Redelivery,
    announcements,
    earlier_found,
    reannounce_at,
)
from tests.fakes import FakeCouponRepo, FakeMarks, Fakes
from tests.fakes import coupon as stored_coupon
from tests.unit.test_codes import ScriptedRandom
from tests.unit.test_matching import definition

AT = datetime(2030, 6, 1, tzinfo=UTC)
P0 = Partition("ach", 0)


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int


def recs(*offsets: int, partition: int = 0) -> list[Rec]:
    return [Rec("ach", partition, o) for o in offsets]


def coupon(key: str, event_id: str = "e-1", user: str = "u-1") -> Coupon:
    return stored_coupon(key, f"C-{key}", user_id=user, trigger_event_id=event_id)


def event(event_id: str = "e-1", user: str = "u-1") -> AchievementCompleted:
    return AchievementCompleted(
        event_id=event_id,
        tenant_id="t-1",
        user_id=user,
        occurred_at=AT,
        data=AchievementData(achievement_id="ach-1"),
    )


# --- replay, redelivery or new --------------------------------------------------------------


def test_records_below_the_announced_mark_are_replays_and_are_not_looked_up() -> None:
    deliveries = Deliveries(recs(3, 9, 10, 14, 15), {P0: Marks(announced=10, inflight=15)})
    assert [deliveries.replayed(i) for i in range(5)] == [True, True, False, False, False]
    # From the announced mark up to the inflight one: an attempt may have stored coupons.
    assert deliveries.lookups() == [2, 3]


def test_with_nothing_stored_past_the_announced_mark_nothing_is_looked_up() -> None:
    deliveries = Deliveries(recs(10, 11, 500), {P0: Marks(announced=10, inflight=10)})
    assert deliveries.lookups() == []
    assert not any(deliveries.replayed(i) for i in range(3))


def test_a_retry_looks_up_every_record_but_the_replays() -> None:
    deliveries = Deliveries(recs(3, 10, 500), {P0: Marks(10, 10)}, everywhere=True)
    assert deliveries.lookups() == [1, 2]


def test_each_record_is_judged_by_its_own_partition_marks() -> None:
    p1 = Partition("ach", 1)
    sources = recs(5) + recs(5, partition=1)
    deliveries = Deliveries(sources, {P0: Marks(0, 0), p1: Marks(6, 6)})
    assert (deliveries.replayed(0), deliveries.replayed(1)) == (False, True)
    assert deliveries.record(1) == RecordId("ach", 1, 5)


# --- what an earlier attempt stored ---------------------------------------------------------


def test_coupons_the_same_record_stored_are_announced_again_and_not_issued_again() -> None:
    deliveries = Deliveries(recs(11, 12), {P0: Marks(10, 13)})
    positions = {EventRef("t-1", "u-1", "e-1"): [0], EventRef("t-1", "u-2", "e-2"): [1]}
    mine = StoredCoupon(coupon("k-1"), RecordId("ach", 0, 11))
    # The same event delivered before in another record (a duplicate upstream): issued then,
    # announced then; not again.
    elsewhere = StoredCoupon(coupon("k-2", "e-2", "u-2"), RecordId("ach", 0, 4))
    unrelated = StoredCoupon(coupon("k-3", "e-9"), RecordId("ach", 0, 11))
    earlier = earlier_found(positions, [mine, elsewhere, unrelated], deliveries)
    assert earlier.keys == {"k-1", "k-2"}
    assert earlier.again == [Announcement(0, mine.coupon)]


def test_a_replayed_record_announces_nothing_again() -> None:
    deliveries = Deliveries(recs(11), {P0: Marks(12, 13)})
    stored = StoredCoupon(coupon("k-1"), RecordId("ach", 0, 11))
    assert reannounce_at(stored, deliveries, [0]) is None
    assert earlier_found({EventRef("t-1", "u-1", "e-1"): [0]}, [stored], deliveries).again == []


def test_the_position_of_its_own_record_announces_a_coupon_the_batch_holds_twice() -> None:
    deliveries = Deliveries(recs(11, 12), {P0: Marks(10, 13)})
    stored = StoredCoupon(coupon("k-1"), RecordId("ach", 0, 12))
    assert reannounce_at(stored, deliveries, [0, 1]) == 1
    assert reannounce_at(StoredCoupon(coupon("k-1"), None), deliveries, [0, 1]) is None


# --- the announcements ----------------------------------------------------------------------


def test_announcements_in_event_order_new_ones_and_those_stored_by_their_own_record() -> None:
    deliveries = Deliveries(recs(20, 21, 22), {P0: Marks(20, 20)})
    defn = definition()
    placed = coupon("k-new", "e-3")
    before = coupon("k-old", "e-2")
    taken = coupon("k-other", "e-1")
    stored = StoreOutcome(
        placed=[Placed(Wanted(2, "k-new", defn, event("e-3")), placed)],
        found=[
            # Stored by this very record in an attempt that died: announced again.
            Found(
                Wanted(1, "k-old", defn, event("e-2")), StoredCoupon(before, RecordId("ach", 0, 21))
            ),
            # Stored by another record (announced with it): not again.
            Found(Wanted(0, "k-other", defn, event()), StoredCoupon(taken, RecordId("ach", 0, 3))),
        ],
    )
    again = Earlier({"k-prior"}, [Announcement(0, coupon("k-prior"))])
    asked: Mapping[str, Sequence[int]] = {"k-new": [2], "k-old": [1], "k-other": [0]}
    assert [a.coupon.issue_key for a in announcements(again, stored, asked, deliveries)] == [
        "k-prior",
        "k-old",
        "k-new",
    ]


# --- the marks ------------------------------------------------------------------------------


def redelivery(marks: FakeMarks, coupons: FakeCouponRepo | None = None) -> Redelivery:
    return Redelivery(marks, coupons or FakeCouponRepo())


async def test_marks_are_read_once_then_advanced_by_the_worker_s_own_commits() -> None:
    marks = FakeMarks({P0: Marks(10, 12)})
    rules = redelivery(marks)
    first = await rules.deliveries([P0], recs(10, 11), retry=False)
    assert first.lookups() == [0, 1]
    await rules.advance({P0: 12}, announced=True)
    second = await rules.deliveries([P0], recs(12), retry=False)
    assert second.lookups() == [] and not second.replayed(0)
    assert marks.loads == [[P0]]
    assert marks.advanced == [{P0: 12}]


async def test_a_batch_that_announced_nothing_moves_only_the_marks_in_memory() -> None:
    marks = FakeMarks()
    rules = redelivery(marks)
    await rules.deliveries([P0], recs(0), retry=False)
    await rules.advance({P0: 5}, announced=False)
    assert marks.advanced == []
    assert (await rules.deliveries([P0], recs(4), retry=False)).replayed(0)


async def test_reassigned_partitions_read_their_marks_again() -> None:
    marks = FakeMarks()
    rules = redelivery(marks)
    await rules.deliveries([P0], recs(0), retry=False)
    marks.stored[P0] = Marks(7, 9)  # another worker moved them meanwhile
    rules.forget([P0])
    assert (await rules.deliveries([P0], recs(7), retry=False)).lookups() == [0]
    assert marks.loads == [[P0], [P0]]


async def test_marks_not_saved_are_logged_and_the_batch_goes_on() -> None:
    marks = FakeMarks()
    marks.fail_advance = ConnectionError("mongodb away")
    rules = redelivery(marks)
    with capture_logs() as logs:
        await rules.advance({P0: 3}, announced=True)
    assert [e["event"] for e in logs] == ["announced_offsets_not_saved"]


async def test_nothing_to_look_up_asks_storage_for_nothing() -> None:
    coupons = FakeCouponRepo()
    coupons.add(coupon("k-1"), record=RecordId("ach", 0, 0))
    rules = redelivery(FakeMarks(), coupons)
    deliveries = await rules.deliveries([P0], recs(0, 1), retry=False)
    assert await rules.earlier([event(), event("e-2")], deliveries) == Earlier()


# --- a batch again, through issuance and the marks (consumers/pipeline.py's order) ---------


def pipeline(fk: Fakes, *draws: str) -> Pipeline:
    index = DefinitionIndex([definition(id=d, tenant_id="t-1") for d in ("def-1", "def-2")])
    issuance = IssuanceService(
        fk.coupons, lambda: index, CodeGenerator(ScriptedRandom(*draws)), fk.clock, fk.budget()
    )
    return Pipeline(issuance, Redelivery(fk.marks, fk.coupons))  # a new worker's own marks


def batch(*events: AchievementCompleted, first: int = 0) -> Decoded:
    sources = recs(*range(first, first + len(events)))
    return Decoded(
        sources,  # type: ignore[arg-type]  # records as far as the rules look at them
        list(events),
        list(events),
        sources,  # type: ignore[arg-type]
        [],
        {TopicPartition("ach", 0): first + len(events)},
    )


async def test_a_batch_stored_by_an_attempt_that_died_is_announced_again_not_issued_again() -> None:
    fk = Fakes()
    first = await pipeline(fk, "ABCDEFGH", "JKMNPQRS").run(batch(event()), retry=False)
    assert first.issued == 2
    assert fk.marks.stored[P0] == Marks(announced=0, inflight=1)  # raised before the store
    # The worker dies before committing; another one gets the record again.
    again = await pipeline(fk).run(batch(event()), retry=False)
    assert again.issued == 0
    assert [a.coupon for a in again.announce] == [a.coupon for a in first.announce]
    assert len(fk.coupons.rows) == 2


async def test_a_batch_committed_and_announced_is_a_replay_that_announces_nothing() -> None:
    fk = Fakes()
    rules = Redelivery(fk.marks, fk.coupons)
    await pipeline(fk, "ABCDEFGH", "JKMNPQRS").run(batch(event()), retry=False)
    await rules.advance({P0: 1}, announced=True)
    # Below the announced mark nothing is looked up: codes are drawn, the issue keys refuse.
    replay = await pipeline(fk, "TUVWXYZ2", "23456789").run(batch(event()), retry=False)
    assert (replay.issued, replay.announce) == (0, [])
    assert len(fk.coupons.rows) == 2


async def test_the_same_event_in_a_later_record_is_not_announced_twice() -> None:
    fk = Fakes()
    rules = Redelivery(fk.marks, fk.coupons)
    await pipeline(fk, "ABCDEFGH", "JKMNPQRS").run(batch(event()), retry=False)
    await rules.advance({P0: 1}, announced=True)
    duplicate = await pipeline(fk, "TUVWXYZ2", "23456789").run(batch(event(), first=1), retry=False)
    assert (duplicate.issued, duplicate.announce) == (0, [])
    assert duplicate.matched == {0: 2}
