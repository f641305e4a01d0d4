"""12-factor configuration: environment variables (prefix `PHOENIX_`, plus the two URLs)."""

import socket
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES_ENV = "services.env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHOENIX_", extra="ignore")

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "PHOENIX_KAFKA_BOOTSTRAP_SERVERS"),
    )
    mongodb_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MONGODB_URI", "PHOENIX_MONGODB_URI")
    )
    mongodb_database: str = "phoenix_coupons"
    mongodb_timeout_ms: int = Field(
        default=10_000,
        gt=0,
        description="Time limit of each MongoDB operation (PyMongo's timeoutMS, server "
        "selection included): past it the API answers 503 and the worker retries its batch. "
        "Keep it well below the consumer's max.poll.interval (300 s).",
    )
    mongodb_connect_timeout_ms: int = Field(
        default=3_000,
        gt=0,
        description="Time limit of opening a connection to MongoDB (connectTimeoutMS).",
    )
    mongodb_ping_timeout_ms: int = Field(
        default=2_000,
        gt=0,
        description="/readyz answers 503 when MongoDB does not answer a ping within this.",
    )

    data_dir: Path = Path(".phoenix")
    secret_key: SecretStr | None = None

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    log_level: str = "INFO"

    jwt_max_lifetime_seconds: int = Field(default=24 * 3600, gt=0)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    bulk_max_users: int = Field(default=10_000, gt=0)

    topic_coupons_issued: str = "phoenix.coupons.issued"
    topic_coupons_redeemed: str = "phoenix.coupons.redeemed"
    topic_achievements: str = "phoenix.achievements"
    topic_streaks: str = "phoenix.streaks"
    topic_leaderboards: str = "phoenix.leaderboards"
    topic_dlq: str = "phoenix.coupons.dlq"
    topic_partitions: int = Field(default=6, gt=0)
    topic_replication_factor: int = Field(default=1, gt=0)
    kafka_create_topics: bool = True

    consumer_group: str = "phoenix-coupons"
    worker_id: str = Field(
        default_factory=socket.gethostname,
        description="Stable per worker instance: names its transactional producer.",
    )
    exactly_once: bool = False
    worker_batch_size: int = Field(default=1000, gt=0)
    worker_poll_ms: int = Field(default=100, gt=0)
    worker_port: int = 8081
    definitions_refresh_seconds: float = Field(default=2.0, gt=0)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=6000)
    kafka_empty_fetch_backoff_ms: int = Field(
        default=0,
        ge=0,
        description="Pause after an empty fetch, for a Kafka server that does not hold empty "
        "fetches (the embedded one); 0 with real Kafka.",
    )
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Allocations between young garbage collections (0: Python's default).",
    )

    outbox_batch_size: int = Field(default=1000, gt=0)
    outbox_poll_seconds: float = Field(default=5.0, gt=0)
    outbox_lease_seconds: float = Field(default=30.0, gt=0)

    @cached_property
    def services_env(self) -> Path:
        return self.data_dir / SERVICES_ENV


def load_services_env(settings: Settings) -> Settings:
    """Fill the URLs that are not set from `$PHOENIX_DATA_DIR/services.env`, which `make run`
    writes, so CLI commands in a second terminal reach the embedded servers."""
    if settings.kafka_bootstrap_servers and settings.mongodb_uri:
        return settings
    path = settings.services_env
    if not path.is_file():
        return settings
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    update: dict[str, object] = {}
    if not settings.kafka_bootstrap_servers and values.get("KAFKA_BOOTSTRAP_SERVERS"):
        update["kafka_bootstrap_servers"] = values["KAFKA_BOOTSTRAP_SERVERS"]
    if not settings.mongodb_uri and values.get("MONGODB_URI"):
        update["mongodb_uri"] = values["MONGODB_URI"]
    # The embedded Kafka's pause after empty fetches goes with its address.
    backoff = values.get("PHOENIX_KAFKA_EMPTY_FETCH_BACKOFF_MS", "")
    explicit = "kafka_empty_fetch_backoff_ms" in settings.model_fields_set
    if "kafka_bootstrap_servers" in update and backoff.isdigit() and not explicit:
        update["kafka_empty_fetch_backoff_ms"] = int(backoff)
    return settings.model_copy(update=update)
