"""Prometheus metrics of the outbox relay (every API and worker process runs one)."""

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


class OutboxMetrics:
    """One set per registry: the process's default one, or a test's own."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.published = Counter(
            "phoenix_outbox_published_total",
            "Outbox records announced on Kafka (acknowledged)",
            ["source"],
            registry=registry,
        )
        self.dead = Counter(
            "phoenix_outbox_dead_total",
            "Outbox records set aside because they can never be sent (never retried)",
            ["source", "reason"],
            registry=registry,
        )
        self.oldest_pending = Gauge(
            "phoenix_outbox_oldest_pending_seconds",
            "Age of the oldest pending row this relay saw at its last sweep (0: none)",
            ["source"],
            registry=registry,
        )
        self.backlog = Gauge(
            "phoenix_outbox_backlog",
            "Pending rows this relay found at its last sweep, capped at the batch size "
            "(PHOENIX_OUTBOX_BATCH_SIZE)",
            ["source"],
            registry=registry,
        )


DEFAULT = OutboxMetrics()
