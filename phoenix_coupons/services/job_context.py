"""What generation jobs' two sides share: the API's (`JobService`, services/jobs.py) and the
runners' (`JobRun`, services/job_run.py). Built once in bootstrap.py and handed to both, so a
new collaborator is one field here; a variant (another clock, smaller chunks, a repository
that fails on purpose) is `dataclasses.replace(ctx, ...)` given to the public constructor."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.codes import CodeGenerator
from phoenix_coupons.services.budget import IssuanceBudget
from phoenix_coupons.services.ports import CouponRepo, DefinitionRepo, IdFactory, JobStore, Outbox


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class JobContext:
    """`chunk_size`: rows per chunk of a job submitted (a job keeps the size it was cut
    with); `lease`: how long a runner holds a job without recording a chunk;
    `wake_relay`: entries are ready (wakes this process's outbox relay)."""

    jobs: JobStore
    definitions: DefinitionRepo
    coupons: CouponRepo
    outbox: Outbox
    budget: IssuanceBudget
    codegen: CodeGenerator
    clock: Clock
    new_id: IdFactory
    chunk_size: int
    lease: timedelta
    wake_relay: Callable[[], None] = _nothing
