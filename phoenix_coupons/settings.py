"""12-factor configuration: environment variables (prefix `PHOENIX_`, plus the two URLs)."""

from functools import cached_property
from pathlib import Path
from typing import Literal

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

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=KAFKA_ALIASES,
        description="Kafka bootstrap servers, `host:port[,host:port]`. Unset: the "
        "`services.env` of `PHOENIX_DATA_DIR` (written by `make run`).",
    )
    mongodb_uri: str | None = Field(
        default=None,
        validation_alias=MONGODB_ALIASES,
        description="MongoDB connection string (a replica set in production). Unset: the "
        "`services.env` of `PHOENIX_DATA_DIR` (written by `make run`).",
    )
    mongodb_database: str = Field(default="phoenix_coupons", description="Database name.")
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

    data_dir: Path = Field(
        default=Path(".phoenix"),
        description="Local state of `make run`: the embedded servers' data, `services.env` "
        "(their addresses, while it runs) and the development `secret.key`.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="At least 16 characters; encrypts the API keys' secrets at rest "
        "(AES-256-GCM). Required in production; keep it stable, or existing keys' JWTs stop "
        "verifying. Unset: generated into `PHOENIX_DATA_DIR/secret.key`, with a warning.",
    )

    api_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the API and of the worker's health server (`0.0.0.0` "
        "in the image).",
    )
    api_port: int = Field(default=8080, description="Port of the API.")
    log_level: str = Field(default="INFO", description="`DEBUG`, `INFO`, `WARNING` or `ERROR`.")
    api_event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="The API server's event loop: `auto` takes uvloop (installed with the "
        "service), `asyncio` the standard library's (BENCHMARKS.md compares them).",
    )
    api_http_parser: Literal["auto", "httptools", "h11"] = Field(
        default="auto",
        description="The API server's HTTP/1.1 parser: `auto` takes httptools (installed with "
        "the service), `h11` the pure-Python one.",
    )

    jwt_max_lifetime_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description="Longest accepted JWT lifetime: `exp` minus now (or minus `iat` when "
        "that is earlier); an `iat` or `nbf` in the future is refused.",
    )
    idempotency_ttl_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description="How long an `Idempotency-Key` is remembered. Changing it needs the "
        "`collMod` action on the database (e.g. role `dbAdmin`).",
    )
    bulk_max_users: int = Field(
        default=10_000,
        gt=0,
        description="Most `user_ids` per generate request (at most 10,000); also sizes the "
        "generate body cap.",
    )
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

    topic_coupons_issued: str = Field(
        default=topics.COUPONS_ISSUED, description="Outbound `coupon.issued` topic."
    )
    topic_coupons_redeemed: str = Field(
        default=topics.COUPONS_REDEEMED,
        description="Outbound topic of `coupon.redeemed` and `coupon.redemption_rolled_back`.",
    )
    topic_coupons_expiry: str = Field(
        default=topics.COUPONS_EXPIRY,
        description="Outbound topic of `coupon.expiring` and `coupon.expired`.",
    )
    topic_achievements: str = Field(
        default=topics.ACHIEVEMENTS, description="Inbound achievement events."
    )
    topic_streaks: str = Field(default=topics.STREAKS, description="Inbound streak events.")
    topic_leaderboards: str = Field(
        default=topics.LEADERBOARDS, description="Inbound leaderboard events."
    )
    topic_dlq: str = Field(default=topics.DEAD_LETTERS, description="Dead letters.")
    topic_partitions: int = Field(
        default=6,
        gt=0,
        description="Partitions of the topics the service creates; an existing topic with "
        "fewer is logged (`kafka_topic_partitions_below_setting`): at most that many workers "
        "consume it.",
    )
    topic_replication_factor: int = Field(
        default=1,
        gt=0,
        description="Replication factor of the topics the service creates: 3 on a production "
        "cluster, and at least the brokers' `min.insync.replicas` + 1.",
    )
    kafka_create_topics: bool = Field(
        default=True,
        description="Create the missing topics above at start (`false`: an operator manages "
        "them; nothing is checked).",
    )
    kafka_topics_deadline_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long the worker retries creating or verifying its topics at "
        "start before it fails.",
    )

    consumer_group: str = Field(
        default="phoenix-coupons", description="The worker's Kafka consumer group."
    )
    worker_id: str | None = Field(
        default=None,
        description="Set: the worker's static group membership id, stable and unique per "
        "replica (a restarted worker takes its partitions back at once; a second process "
        "with the same id fences the first, which stops). Unset: dynamic membership.",
    )
    exactly_once: bool = Field(
        default=False,
        description="`true`: one transactional producer per assigned input partition "
        "(`<group>.<topic>.<partition>`), so `read_committed` consumers see each "
        "event-issued coupon and dead letter once, a stalled former owner included; costs a "
        "producer and its connections per partition and an `InitProducerId` per partition "
        "on each assignment.",
    )
    worker_batch_size: int = Field(default=1000, gt=0, description="Most records per batch.")
    worker_poll_ms: int = Field(default=100, gt=0, description="Longest wait for records per poll.")
    worker_port: int = Field(
        default=8081,
        description="Port of `/healthz`, `/readyz` and `/metrics` of `phoenix-coupons worker` "
        "(under `phoenix-coupons run`, the API's port serves them).",
    )
    worker_ready_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="The worker's readiness pings MongoDB this often and waits as long for "
        "an answer.",
    )
    definitions_refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the worker reloads the active auto-generate definitions: an "
        "API change takes effect within it.",
    )
    kafka_session_timeout_ms: int = Field(
        default=10_000, ge=6000, description="The consumer group's session timeout."
    )
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

    outbox_batch_size: int = Field(
        default=1000, gt=0, description="Rows the outbox relay claims and publishes per batch."
    )
    outbox_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the relay sweeps for rows it was not woken for (those a "
        "crashed process left); a process's own writes wake its relay at once.",
    )
    outbox_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a relay's claim on a batch lasts before another relay may take it.",
    )
    sweep_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often each process that runs the outbox relay sweeps for writes a "
        "crash left half done: prepared outbox entries, unconfirmed redemption slots and code "
        "claims (readied or confirmed when what they wait for is stored, else dropped).",
    )
    sweep_grace_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long a prepared outbox entry, redemption slot or code claim may wait "
        "for the write that follows it before a sweep settles it; longer than any request.",
    )

    expiry_scheduler: bool = Field(
        default=True,
        description="Run the expiry scheduler (coupon.expiring and coupon.expired events) in "
        "the worker processes (`run`, `worker`); `phoenix-coupons scheduler` runs it alone. "
        "Any number may run: each event is still published once.",
    )
    expiry_sweep_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the expiry scheduler looks for coupons whose reminder or "
        "expiry is due: events go out within this time of their due time.",
    )
    expiry_batch_size: int = Field(
        default=500,
        gt=0,
        le=10_000,
        description="Due coupons the expiry scheduler claims per batch (it takes batches "
        "until nothing more is due).",
    )
    expiry_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a scheduler's claim on a batch of due coupons lasts: a "
        "scheduler that dies holding one delays those coupons' events by up to this long. "
        "Longer than a batch takes.",
    )

    job_runner: bool = Field(
        default=True,
        description="Run generation jobs in the worker processes (`run`, `worker`); "
        "`phoenix-coupons jobs` runs them alone. Any number may run: each job is run by one "
        "runner at a time (a lease).",
    )
    job_max_rows: int = Field(
        default=1_000_000,
        gt=0,
        le=1_000_000,
        description="Most rows (codes) per generation job.",
    )
    job_max_body_bytes: int = Field(
        default=128 * 1024 * 1024,
        gt=0,
        description="Largest generation job request body (JSON or CSV); 413 beyond it.",
    )
    job_chunk_size: int = Field(
        default=1000,
        gt=0,
        le=2000,
        description="Rows a job runner makes at a time: one stored chunk of rows, one "
        "progress update, the most a crash makes it do again.",
    )
    job_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a runner holds a job between two chunks: a runner that dies "
        "holding one delays the job by up to this long. Longer than a chunk takes.",
    )
    job_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often an idle job runner looks for queued jobs (a job submitted "
        "to the same process starts at once).",
    )

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
