"""12-factor configuration: environment variables (prefix `PHOENIX_`, plus the two URLs)."""

from functools import cached_property
from pathlib import Path

import limits
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from phoenix_coupons.domain.errors import ConfigurationError
from schemas import topics

SERVICES_ENV = "services.env"
# Per user id of a generate request: a 255-character id (up to 1,020 bytes of UTF-8, 1,530
# when every character is sent as a \uXXXX escape) and a 255-character ASCII custom code,
# each quoted and comma-separated: 2 KiB covers all but escaped characters beyond the BMP.
GENERATE_BYTES_PER_USER = 2048
KAFKA_ALIASES = AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "PHOENIX_KAFKA_BOOTSTRAP_SERVERS")
MONGODB_ALIASES = AliasChoices("MONGODB_URI", "PHOENIX_MONGODB_URI")
# The servers' addresses, by the variables operators set them with.
SERVER_VARIABLES = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "mongodb_uri": "MONGODB_URI",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHOENIX_", extra="ignore")

    kafka_bootstrap_servers: str | None = Field(default=None, validation_alias=KAFKA_ALIASES)
    mongodb_uri: str | None = Field(default=None, validation_alias=MONGODB_ALIASES)
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
    api_max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest request body the API reads (413 beyond it); bulk generation "
        "may send 2 KiB more per user id it allows (generate_max_body_bytes).",
    )
    reward_payload_max_bytes: int = Field(
        default=16 * 1024,
        gt=0,
        description="Largest reward item payload, as compact UTF-8 JSON: each redemption "
        "copies it into its document and its coupon.redeemed event.",
    )

    topic_coupons_issued: str = topics.COUPONS_ISSUED
    topic_coupons_redeemed: str = topics.COUPONS_REDEEMED
    topic_achievements: str = topics.ACHIEVEMENTS
    topic_streaks: str = topics.STREAKS
    topic_leaderboards: str = topics.LEADERBOARDS
    topic_dlq: str = topics.DEAD_LETTERS
    topic_partitions: int = Field(default=6, gt=0)
    topic_replication_factor: int = Field(default=1, gt=0)
    kafka_create_topics: bool = True
    kafka_topics_deadline_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long the worker retries creating or verifying its topics at "
        "start before it fails.",
    )

    consumer_group: str = "phoenix-coupons"
    worker_id: str | None = Field(
        default=None,
        description="Set: the worker's static group membership id, stable and unique per "
        "replica (a restarted worker takes its partitions back at once; a second process "
        "with the same id fences the first, which stops). Unset: dynamic membership.",
    )
    exactly_once: bool = False
    worker_batch_size: int = Field(default=1000, gt=0)
    worker_poll_ms: int = Field(default=100, gt=0)
    worker_port: int = 8081
    worker_ready_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="The worker's readiness pings MongoDB this often and waits as long for "
        "an answer.",
    )
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

    code_lookup_failure_limit: str = Field(
        default="30/minute",
        description="Failed code look-ups (code_not_found) allowed per API key and tenant, as "
        "a rate (`limits` notation: '30/minute', '100/hour'); past it every look-up of that "
        "key in that tenant answers 429 until the window passes.",
    )

    outbox_batch_size: int = Field(default=1000, gt=0)
    outbox_poll_seconds: float = Field(default=5.0, gt=0)
    outbox_lease_seconds: float = Field(default=30.0, gt=0)

    @field_validator("code_lookup_failure_limit")
    @classmethod
    def _one_rate(cls, value: str) -> str:
        items = limits.parse_many(value)  # ValueError, reported with the field's name
        if len(items) != 1 or items[0].amount < 1:
            raise ValueError("one rate of at least 1, e.g. '30/minute'")
        return value

    @field_validator("worker_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def generate_max_body_bytes(self) -> int:
        """Bulk generation's own body cap: room for PHOENIX_BULK_MAX_USERS user ids and as
        many custom codes of the longest kind on top of the common limit."""
        return self.api_max_body_bytes + self.bulk_max_users * GENERATE_BYTES_PER_USER

    @cached_property
    def services_env(self) -> Path:
        return self.data_dir / SERVICES_ENV


class ServiceSettings(Settings):
    """The settings of a process that runs the service: both servers' addresses are set.
    Made once at start-up by `service_settings`, which names what is missing; everything
    below takes the checked values from here."""

    kafka_bootstrap_servers: str = Field(validation_alias=KAFKA_ALIASES)
    mongodb_uri: str = Field(validation_alias=MONGODB_ALIASES)


def service_settings(settings: Settings) -> ServiceSettings:
    """`settings` checked for what running the service needs, or ConfigurationError naming
    each variable that is not set."""
    missing = [var for name, var in SERVER_VARIABLES.items() if not getattr(settings, name)]
    if missing:
        raise _not_set(missing)
    if isinstance(settings, ServiceSettings):
        return settings
    # Validated already: copied as they are, with the record of what was set explicitly.
    return ServiceSettings.model_construct(settings.model_fields_set, **dict(settings))


def mongodb_uri(settings: Settings) -> str:
    """The MongoDB address of a command that needs only MongoDB (API keys), checked."""
    if not settings.mongodb_uri:
        raise _not_set(["MONGODB_URI"])
    return settings.mongodb_uri


def _not_set(variables: list[str]) -> ConfigurationError:
    one = len(variables) == 1
    return ConfigurationError(
        f"{' and '.join(variables)} {'is' if one else 'are'} not set (and no services.env in "
        "PHOENIX_DATA_DIR): start the service with `make run`, or set "
        + ("the variable" if one else "them")
    )


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
