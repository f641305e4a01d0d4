"""The composition root: the one place that builds adapters and wires them into services.
Nothing connects at import time; `Container.start()` does."""

import uuid
from dataclasses import InitVar, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from phoenix_coupons.adapters.aiokafka_compat import install_fetch_pause
from phoenix_coupons.adapters.announced_offsets import AnnouncedOffsets
from phoenix_coupons.adapters.api_key_repo import MongoApiKeyRepo
from phoenix_coupons.adapters.code_history import MongoCodeHistory
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.definition_cache import DefinitionCache
from phoenix_coupons.adapters.definition_repo import MongoDefinitionRepo
from phoenix_coupons.adapters.expiry_schedule import MongoExpirySchedule
from phoenix_coupons.adapters.expiry_scheduler import ExpiryScheduler
from phoenix_coupons.adapters.idempotency_repo import MongoIdempotencyRepo
from phoenix_coupons.adapters.issuance_budget import MongoIssuanceBudgets
from phoenix_coupons.adapters.job_repo import MongoJobStore
from phoenix_coupons.adapters.job_runner import JobRunner
from phoenix_coupons.adapters.kafka import TopicsUnavailable, ensure_topics, relay_producer
from phoenix_coupons.adapters.lookup_limiter import MongoLookupLimiter
from phoenix_coupons.adapters.migrations import require_migrated
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.outbox import MongoOutbox
from phoenix_coupons.adapters.outbox_relay import OutboxRelay
from phoenix_coupons.adapters.redemption_repo import MongoRedemptionRepo
from phoenix_coupons.adapters.reservation_repo import MongoReservationRepo
from phoenix_coupons.adapters.reward_repo import MongoRewardRepo
from phoenix_coupons.adapters.sweeper import Sweeper
from phoenix_coupons.domain.clock import Clock, utc_now
from phoenix_coupons.domain.codes import CodeGenerator, RandomSource
from phoenix_coupons.domain.errors import ConfigurationError
from phoenix_coupons.services.api_keys import ApiKeyService
from phoenix_coupons.services.budget import IssuanceBudget
from phoenix_coupons.services.code_export import CodeExport
from phoenix_coupons.services.coupon_queries import CouponQueries
from phoenix_coupons.services.definitions import DefinitionService
from phoenix_coupons.services.expiry import ExpiryService
from phoenix_coupons.services.generation import GenerationService
from phoenix_coupons.services.issuance import IssuanceService
from phoenix_coupons.services.job_context import JobContext
from phoenix_coupons.services.job_run import JobRun
from phoenix_coupons.services.jobs import JobService
from phoenix_coupons.services.redelivery import Redelivery
from phoenix_coupons.services.redemptions import RedemptionService
from phoenix_coupons.services.reservations import ReservationService
from phoenix_coupons.services.rewards import RewardService
from phoenix_coupons.services.secrets_box import SecretBox
from phoenix_coupons.services.settler import Settler
from phoenix_coupons.settings import (
    ServiceSettings,
    Settings,
    load_services_env,
    mongodb_uri,
    service_settings,
)

if TYPE_CHECKING:
    from consumers.loop import Worker

log = structlog.get_logger(__name__)

SECRET_FILE = "secret.key"
# The API's try at the topics: it serves without Kafka, so it does not wait long for it.
API_TOPICS_DEADLINE_S = 5.0


def new_id() -> str:
    return str(uuid.uuid4())


def resolve_secret_key(settings: Settings) -> str:
    """`PHOENIX_SECRET_KEY`, or for local runs a key generated once into the data folder."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path: Path = settings.data_dir / SECRET_FILE
    if not path.is_file():
        import secrets

        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32) + "\n")
            path.chmod(0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"PHOENIX_SECRET_KEY is not set and no development key can be written to "
                f"{path} ({exc.strerror}): set PHOENIX_SECRET_KEY (16+ characters)"
            ) from exc
    log.warning(
        "secret_key_from_data_dir",
        path=str(path),
        hint="set PHOENIX_SECRET_KEY in production; API key secrets are encrypted with it",
    )
    return path.read_text().strip()


def connect_mongo(settings: Settings) -> Mongo:
    return Mongo(
        mongodb_uri(settings),
        settings.mongodb_database,
        settings.idempotency_ttl_seconds,
        timeout_ms=settings.mongodb_timeout_ms,
        connect_timeout_ms=settings.mongodb_connect_timeout_ms,
    )


def api_key_service(settings: Settings, mongo: Mongo, clock: Clock = utc_now) -> ApiKeyService:
    return ApiKeyService(
        MongoApiKeyRepo(mongo),
        SecretBox(resolve_secret_key(settings)),
        clock,
        settings.jwt_max_lifetime_seconds,
    )


@dataclass
class Container:
    """Built from the settings as given: they are completed from services.env and checked
    here (ConfigurationError names what is missing), before anything is built."""

    given: InitVar[Settings]
    clock: Clock = utc_now
    rng: RandomSource | None = None
    settings: ServiceSettings = field(init=False)
    mongo: Mongo = field(init=False)
    lookup_limiter: MongoLookupLimiter = field(init=False)
    relay: OutboxRelay = field(init=False)
    sweeper: Sweeper = field(init=False)
    api_keys: ApiKeyService = field(init=False)
    rewards: RewardService = field(init=False)
    definitions: DefinitionService = field(init=False)
    generation: GenerationService = field(init=False)
    definition_cache: DefinitionCache = field(init=False)
    issuance: IssuanceService = field(init=False)
    settler: Settler = field(init=False)
    redemptions: RedemptionService = field(init=False)
    reservations: ReservationService = field(init=False)
    coupon_queries: CouponQueries = field(init=False)
    code_export: CodeExport = field(init=False)
    expiry: ExpiryService = field(init=False)
    scheduler: ExpiryScheduler = field(init=False)
    job_context: JobContext = field(init=False)
    jobs: JobService = field(init=False)
    job_run: JobRun = field(init=False)
    job_runner: JobRunner = field(init=False)

    def __post_init__(self, given: Settings) -> None:
        self.settings = s = service_settings(load_services_env(given))
        self.mongo = connect_mongo(s)
        coupons = MongoCouponRepo(self.mongo)
        definitions = MongoDefinitionRepo(self.mongo, coupons)
        rewards = MongoRewardRepo(self.mongo)
        self.relay = OutboxRelay(
            self.mongo,
            lambda: relay_producer(s.kafka_bootstrap_servers),
            {
                "coupon.issued": s.topic_coupons_issued,
                "coupon.definition_exhausted": s.topic_coupons_issued,
                "coupon.generation_job.completed": s.topic_coupons_issued,
                "coupon.redeemed": s.topic_coupons_redeemed,
                "coupon.redemption_rolled_back": s.topic_coupons_redeemed,
                "coupon.reserved": s.topic_coupons_redeemed,
                "coupon.reservation_released": s.topic_coupons_redeemed,
                "coupon.expiring": s.topic_coupons_expiry,
                "coupon.expired": s.topic_coupons_expiry,
            },
            self.clock,
            batch_size=s.outbox_batch_size,
            poll_seconds=s.outbox_poll_seconds,
            lease_seconds=s.outbox_lease_seconds,
        )
        self.sweeper = Sweeper(self.mongo, self.clock, s.sweep_seconds, s.sweep_grace_seconds)
        outbox = MongoOutbox(self.mongo, self.relay.hand)
        self.api_keys = api_key_service(s, self.mongo, self.clock)
        self.rewards = RewardService(
            rewards, definitions, self.clock, new_id, s.reward_payload_max_bytes
        )
        budgets = MongoIssuanceBudgets(self.mongo)
        budget = IssuanceBudget(budgets, outbox, self.clock, new_id, self.relay.wake)
        schedule = MongoExpirySchedule(self.mongo)
        self.definitions = DefinitionService(
            definitions, rewards, coupons, self.clock, new_id, budgets, schedule
        )
        self.generation = GenerationService(
            definitions,
            coupons,
            outbox,
            MongoIdempotencyRepo(self.mongo, s.idempotency_ttl_seconds),
            CodeGenerator(self.rng),
            self.clock,
            new_id,
            self.relay.wake,
            s.bulk_max_users,
            budget,
        )
        redemptions = MongoRedemptionRepo(self.mongo)
        self.settler = Settler(redemptions, outbox, self.relay.wake)
        self.lookup_limiter = MongoLookupLimiter(
            self.mongo, s.code_lookup_failure_limit, self.clock
        )
        self.redemptions = RedemptionService(
            coupons,
            definitions,
            rewards,
            redemptions,
            self.clock,
            self.relay.wake,
            self.lookup_limiter,
            outbox,
            self.settler,
        )
        self.reservations = ReservationService(
            self.redemptions,
            MongoReservationRepo(self.mongo),
            redemptions,
            outbox,
            self.clock,
            self.relay.wake,
            self.settler,
        )
        self.coupon_queries = CouponQueries(
            coupons,
            definitions,
            redemptions,
            self.clock,
            self.lookup_limiter,
            MongoCodeHistory(self.mongo),
        )
        self.code_export = CodeExport(coupons, definitions, redemptions)
        self.expiry = ExpiryService(
            schedule,
            definitions,
            redemptions,
            outbox,
            self.clock,
            self.relay.wake,
            s.expiry_batch_size,
            timedelta(seconds=s.expiry_lease_seconds),
        )
        self.scheduler = ExpiryScheduler(self.expiry, s.expiry_sweep_seconds)
        self.job_context = JobContext(
            jobs=MongoJobStore(self.mongo),
            definitions=definitions,
            coupons=coupons,
            outbox=outbox,
            budget=budget,
            codegen=CodeGenerator(self.rng),
            clock=self.clock,
            new_id=new_id,
            chunk_size=s.job_chunk_size,
            lease=timedelta(seconds=s.job_lease_seconds),
            wake_relay=self.relay.wake,
        )
        self.job_run = JobRun(self.job_context)
        self.job_runner = JobRunner(self.job_run, s.job_poll_seconds)
        self.jobs = JobService(self.job_context, self.job_runner.wake)
        self.definition_cache = DefinitionCache(self.mongo, s.definitions_refresh_seconds)
        self.issuance = IssuanceService(
            coupons, self.definition_cache.index, CodeGenerator(self.rng), self.clock, budget
        )

    def worker(self) -> "Worker":
        from consumers.loop import Worker

        return Worker(
            self.settings,
            self.issuance,
            self.redelivery(),
            self.definition_cache,
            self.mongo.ping,
        )

    def redelivery(self) -> Redelivery:
        """A worker's own: it holds the marks of the partitions the worker consumes."""
        return Redelivery(AnnouncedOffsets(self.mongo), MongoCouponRepo(self.mongo))

    async def start_storage(self) -> None:
        """Refuses data in an earlier layout (`phoenix-coupons migrate` first), then brings
        the indexes to what is declared."""
        await require_migrated(self.mongo.db)
        await self.mongo.ensure_indexes()

    async def start(self, topics: bool = True, scheduler: bool = False) -> None:
        """Indexes, topics and the outbox relay. Kafka being down does not stop the API:
        coupons wait in the outbox until it is back, so the topics get one short try here
        (a warning if it fails). The worker needs them: it ensures them itself, within
        `kafka_topics_deadline_seconds`, and fails without them (`topics=False` skips the
        short try for a process that runs only the worker). `scheduler`: a worker process,
        which runs the expiry scheduler unless PHOENIX_EXPIRY_SCHEDULER=false and the job
        runner unless PHOENIX_JOB_RUNNER=false."""
        install_fetch_pause(self.settings.kafka_empty_fetch_backoff_ms)
        await self.start_storage()
        if topics and self.settings.kafka_create_topics:
            short = min(API_TOPICS_DEADLINE_S, self.settings.kafka_topics_deadline_seconds)
            try:
                await ensure_topics(
                    self.settings.model_copy(update={"kafka_topics_deadline_seconds": short})
                )
            except TopicsUnavailable as exc:
                log.warning("kafka_topics_not_ensured", error=str(exc))
        self.relay.start()
        self.sweeper.start()
        if scheduler and self.settings.expiry_scheduler:
            self.scheduler.start()
        if scheduler and self.settings.job_runner:
            self.job_runner.start()

    async def stop(self) -> None:
        await self.job_runner.stop()
        await self.scheduler.stop()
        await self.sweeper.stop()
        await self.settler.flush()  # before the relay stops: what it readies is sent
        await self.relay.stop()
        await self.mongo.close()
