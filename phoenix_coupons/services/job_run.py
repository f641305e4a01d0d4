"""Running generation jobs: a runner claims the oldest job with a lease, makes its rows'
coupons chunk by chunk (a count job's chunk: its lines, made from the job, each an
unassigned code) and records each chunk done (with its counts and the lease extended)
in one update conditional on still holding the lease.

Exactly once without transactions: each row's coupon has the issue key job id + line, so its
`_id` is fixed whatever attempt stores it. A chunk first prepares one outbox entry for the
`coupon.issued` of all its rows' coupons (an `IssuedBundle` naming their ids: one write per
chunk, not per coupon), looks its rows' coupons up (an attempt that died after storing some
of them), takes the issuance budget for the rest, inserts (drawing random codes, retrying
collisions; a refusal on the issue key is another attempt's coupon, counted as generated),
readies the bundle naming the coupons stored (and holding them: the relay of this process
sends them without reading them back) and gives back the budget of what it did not store.
A crash anywhere leaves a chunk the next attempt runs again to the same coupons; counts
move only when a chunk is recorded, so each row is counted once. A runner that lost its
lease records nothing and stops; the holder counts the coupons it stored as found."""

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import structlog

from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.jobs import (
    BUDGET_USED,
    CODE_TAKEN,
    NO_FREE_CODE,
    Job,
    JobStatus,
    Row,
    RowError,
    count_rows,
    issue_key,
    keep_errors,
    row_value,
)
from phoenix_coupons.domain.models import Coupon, Requester
from phoenix_coupons.domain.outbox import IssuedBundle, job_completed
from phoenix_coupons.services.drawing import draw_and_insert
from phoenix_coupons.services.job_context import JobContext
from schemas.coupons import CouponDefinition

log = structlog.get_logger(__name__)


@dataclass
class ChunkResult:
    generated: int = 0
    errors: list[RowError] = field(default_factory=list)


class JobRun:
    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    async def run_next(self, stopping: Callable[[], bool] = lambda: False) -> Job | None:
        """Claim the oldest job due and run it until it ends, the lease is lost or
        `stopping()` says so between chunks (the job is then given back to the queue).
        None when no job was due."""
        attempt = self._ctx.new_id()
        now = self._ctx.clock()
        job = await self._ctx.jobs.claim(now, now + self._ctx.lease, attempt)
        if job is None:
            return None
        bound = log.bind(job_id=job.id, tenant_id=job.tenant_id, attempt=attempt)
        # Another attempt ran it before (it started earlier): its chunk in hand may be
        # partly stored. Chunks after that one were never tried by anyone.
        resumed = job.started_at != now
        bound.info(
            "generation_job_claimed", next_chunk=job.next_chunk, chunks=job.chunks, resumed=resumed
        )
        try:
            return await self._run(job, attempt, resumed, stopping)
        except Exception:
            # MongoDB failed mid-chunk: give the job back at once rather than at the lease's
            # end (its chunk is redone to the same coupons). Fails too if MongoDB is away.
            with contextlib.suppress(Exception):
                await self._ctx.jobs.release(job, attempt, self._ctx.clock())
            raise

    async def _run(
        self, job: Job, attempt: str, resumed: bool, stopping: Callable[[], bool]
    ) -> Job:
        bound = log.bind(job_id=job.id, tenant_id=job.tenant_id, attempt=attempt)
        while True:
            fresh = await self._ctx.jobs.get(job.tenant_id, job.id)
            if fresh is not None and fresh.cancel_requested:
                reason = f"cancelled: the {job.generated} coupon(s) generated before stay"
                await self._finish(job, attempt, "cancelled", reason)
                return job
            if job.next_chunk >= job.chunks:
                await self._finish(job, attempt, "succeeded")
                return job
            defn = await self._ctx.definitions.get(job.tenant_id, job.definition_id)
            if defn is None or defn.status != "active":
                state = "gone" if defn is None else defn.status
                reason = (
                    f"the definition is {state}: stopped after {job.generated} coupon(s), "
                    "which stay"
                )
                await self._finish(job, attempt, "failed", reason)
                return job
            if stopping():
                await self._ctx.jobs.release(job, attempt, self._ctx.clock())
                bound.info("generation_job_released", next_chunk=job.next_chunk)
                return job
            rows = (
                count_rows(job, job.next_chunk)
                if job.unassigned
                else await self._ctx.jobs.rows(job, job.next_chunk)
            )
            tag = f"{job.id}:{job.next_chunk}:{attempt}"
            done = await self._chunk(job, defn, rows, resumed, tag)
            resumed = False
            counted = replace(job)
            counted.generated += done.generated
            counted.failed += len(done.errors)
            counted.errors = keep_errors(job.errors, done.errors)
            if not await self._ctx.jobs.commit(
                counted, attempt, job.next_chunk, self._ctx.clock() + self._ctx.lease
            ):
                bound.warning("generation_job_lease_lost", chunk=job.next_chunk)
                return job
            counted.next_chunk += 1
            job = counted

    async def _finish(
        self, job: Job, attempt: str, status: JobStatus, reason: str | None = None
    ) -> None:
        """Prepare the completion event, end the job while holding it, ready the event. An
        entry whose job did not end so is dropped by the outbox sweep, never sent."""
        job.status, job.reason = status, reason
        at = self._ctx.clock()
        entry = job_completed(job, at)
        await self._ctx.outbox.prepare([entry])
        if await self._ctx.jobs.finish(job, attempt, at):
            job.finished_at = at
            await self._ctx.outbox.ready([entry])
            self._ctx.wake_relay()
            log.info(
                "generation_job_finished",
                job_id=job.id,
                status=status,
                generated=job.generated,
                failed=job.failed,
            )

    async def _chunk(
        self, job: Job, defn: CouponDefinition, rows: Sequence[Row], resumed: bool, tag: str
    ) -> ChunkResult:
        """`resumed`: an earlier attempt may have stored some of these rows' coupons: look
        them up first, so that the budget is taken only for the others. (Either way, an
        insert refused on its `_id` finds the coupon stored before.) `tag`: the chunk and
        attempt (its bundle's id)."""
        out = ChunkResult(errors=[RowError(r.line, row_value(r), r.error) for r in rows if r.error])
        todo = [r for r in rows if r.error is None]
        key = {r.line: issue_key(job.id, r.line) for r in todo}
        bundle = IssuedBundle(
            f"coupon.issued:job:{tag}",
            job.tenant_id,
            tuple(issue_keys.coupon_id(key[r.line]) for r in todo),
            self._ctx.clock(),
        )
        await self._ctx.outbox.prepare_issued(bundle)
        stored: list[Coupon] = []  # announced by the bundle
        if resumed:
            before = await self._ctx.coupons.by_issue_keys(list(key.values()))
            stored += before.values()
            todo = [r for r in todo if key[r.line] not in before]
        taken = await self._ctx.budget.take(defn, len(todo), partial=True)
        out.errors += [RowError(r.line, row_value(r), BUDGET_USED) for r in todo[taken.granted :]]
        todo = todo[: taken.granted]

        make = CouponFactory.of(defn, "bulk")
        by = Requester(job.issued_by, job.request_id)
        now = self._ctx.clock()

        def build(row: Row, code: str) -> Coupon:
            # A count job's row has no user: its coupon is an unassigned code.
            meta = row.metadata if row.metadata is not None else job.metadata
            return make.coupon(key[row.line], code, now, row.user_id, requester=by, metadata=meta)

        placed: list[Coupon] = []
        imported = [r for r in todo if r.code is not None]
        if imported:
            batch = [build(r, r.code or "") for r in imported]
            refused = set(await self._ctx.coupons.insert_unordered(batch))
            placed += [c for j, c in enumerate(batch) if j not in refused]
            lost = [imported[j] for j in sorted(refused)]
            mine = await self._ctx.coupons.by_issue_keys([key[r.line] for r in lost])
            stored += [mine[key[r.line]] for r in lost if key[r.line] in mine]
            out.errors += [
                RowError(r.line, row_value(r), CODE_TAKEN) for r in lost if key[r.line] not in mine
            ]
        drawn_rows = [r for r in todo if r.code is None]
        if drawn_rows and make.spec is not None:
            spec = make.spec
            drawn = await draw_and_insert(
                drawn_rows,
                self._ctx.codegen,
                lambda _: spec,
                build,
                self._ctx.coupons.insert_unordered,
                self._ctx.coupons.by_issue_keys,
            )
            placed += [p.coupon for p in drawn.placed]
            stored += [f.stored for f in drawn.found]  # another attempt's coupons
            out.errors += [RowError(r.line, row_value(r), NO_FREE_CODE) for r in drawn.left]
        stored += placed
        await self._ctx.outbox.ready_issued(bundle.stored(stored))
        if stored:
            self._ctx.wake_relay()
        await self._ctx.budget.give_back(defn, len(todo) - len(placed))
        out.generated += len(stored)
        return out
