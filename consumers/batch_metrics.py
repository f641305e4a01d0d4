"""What a batch leaves in the metrics (consumers/metrics.py) and the log: events consumed
(counted when the batch arrives, whatever becomes of it), then once it is done: its size and
time, coupons issued and announced, matches, dead letters and the partitions' lag."""

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from operator import attrgetter

import structlog
from aiokafka.structs import TopicPartition

from consumers import metrics
from consumers.pipeline import Decoded, Outcome

log = structlog.get_logger(__name__)

_EVENT_TYPE = attrgetter("event_type")  # in C: no Python-level step per record
Highwater = Callable[[TopicPartition], int | None]


def consumed(work: Decoded) -> None:
    # Counted once per type and batch: a labelled increment per event cost 3 us each.
    for event_type, count in Counter(map(_EVENT_TYPE, work.events)).items():
        metrics.EVENTS_CONSUMED.labels(event_type).inc(count)


def processed(
    batch: Decoded, work: Decoded, outcome: Outcome, highwater: Highwater, started: float
) -> None:
    """`batch`: the whole batch; `work`: the part `outcome` is of (exactly once: the
    partitions still to commit at the last attempt)."""
    seconds = time.perf_counter() - started
    metrics.BATCH_SIZE.observe(len(batch.records))
    metrics.BATCH_SECONDS.observe(seconds)
    metrics.COUPONS_ISSUED.inc(outcome.issued)
    metrics.COUPONS_ANNOUNCED.inc(len(outcome.announce))
    matched = Counter(work.events[pos].event_type for pos in outcome.matched)
    for event_type, count in matched.items():
        metrics.EVENTS_MATCHED.labels(event_type).inc(count)
    if outcome.over_budget:
        over_budget(outcome)
    for record, code, message in outcome.dead:
        metrics.DEAD_LETTERS.labels(code).inc()
        log.warning(
            "dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=code,
            error=message,
        )
    for tp, offset in batch.offsets.items():
        high = highwater(tp)
        if high is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - offset))
    log.info(
        "batch_processed",
        records=len(batch.records),
        matched=len(outcome.matched),
        issued=outcome.issued,
        over_budget=len(outcome.over_budget),
        announced=len(outcome.announce),
        dead=len(outcome.dead),
        ms=round(seconds * 1000, 1),
    )


def over_budget(outcome: Outcome) -> None:
    for event_type, count in Counter(w.event.event_type for w in outcome.over_budget).items():
        metrics.OVER_BUDGET.labels(event_type).inc(count)
    for definition_id, count in Counter(w.definition.id for w in outcome.over_budget).items():
        log.info("issuance_budget_refused", definition_id=definition_id, coupons=count)


def forget_lag(partitions: list[TopicPartition]) -> None:
    """Revoked partitions: their new owner reports their lag; a stale value here would
    alert."""
    for tp in partitions:
        with contextlib.suppress(KeyError):
            metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
