"""Prometheus metrics of the event worker."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "phoenix_worker_events_consumed_total", "Inbound records consumed", ["event_type"]
)
EVENTS_MATCHED = Counter(
    "phoenix_worker_events_matched_total",
    "Inbound events that matched a definition",
    ["event_type"],
)
COUPONS_ISSUED = Counter(
    "phoenix_worker_coupons_issued_total", "Coupons issued from events (new, not re-announced)"
)
COUPONS_ANNOUNCED = Counter(
    "phoenix_worker_coupons_announced_total", "coupon.issued records produced by the worker"
)
# Labelled by event type, not definition: definitions are unbounded (the log names them).
OVER_BUDGET = Counter(
    "phoenix_worker_issuance_budget_refused_total",
    "Coupons that matching events did not get: their definition's issuance limit was reached",
    ["event_type"],
)
DEAD_LETTERS = Counter(
    "phoenix_worker_dead_letters_total", "Records sent to the dead-letter topic", ["reason"]
)
ERRORS = Counter(
    "phoenix_worker_errors_total", "Batch attempts that failed and were retried", ["error"]
)
BATCH_SIZE = Histogram(
    "phoenix_worker_batch_size",
    "Records per processed batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
BATCH_SECONDS = Histogram(
    "phoenix_worker_batch_seconds",
    "Processing time of a batch, decode to commit",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "phoenix_worker_consumer_lag",
    "Records behind the partition's high watermark",
    ["topic", "partition"],
)
READY = Gauge(
    "phoenix_worker_ready",
    "1 when the worker is ready (in its consumer group, no failing batch, MongoDB answering), "
    "else 0; as /readyz answers",
)
