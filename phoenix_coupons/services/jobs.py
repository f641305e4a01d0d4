"""Generation jobs, the API's side: submit (checked before anything is stored: the
definition, the header, the row count, the code space, the issuance budget), read, list,
cancel. The runners do the work (services/job_run.py).

A submission stores the job's rows first, then the job: a job is never stored without its
rows (a count job has none: its lines are made as it runs). A crash in between leaves rows
no job names; a retried keyed submission writes them again. With an Idempotency-Key the
job's id is derived from the key, so the unique `_id` decides which submission made the
job, and a repeat answers it."""

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace

import structlog

from phoenix_coupons.domain import codes
from phoenix_coupons.domain.config_rules import code_spec
from phoenix_coupons.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from phoenix_coupons.domain.jobs import Job, Row, check_rows, chunked
from phoenix_coupons.domain.models import Requester
from phoenix_coupons.domain.name_ids import name_id
from phoenix_coupons.domain.outbox import job_completed
from phoenix_coupons.services.budget import issuance_limit
from phoenix_coupons.services.definitions import definition_not_found, require_active
from phoenix_coupons.services.idempotency import key_reused
from phoenix_coupons.services.job_context import JobContext
from phoenix_coupons.services.job_input import JobInput
from phoenix_coupons.services.ports import Page
from schemas.coupons import CouponDefinition

log = structlog.get_logger(__name__)

JOB_NAMESPACE = uuid.UUID("3f6d0c52-8a4b-4f0e-9b7e-2c1d5a9e7f30")


def job_id_for(tenant_id: str, definition_id: str, idempotency_key: str) -> str:
    return name_id(JOB_NAMESPACE, f"{tenant_id}:{definition_id}:{idempotency_key}")


def job_not_found(job_id: str) -> NotFound:
    return NotFound(message=f"generation job {job_id} not found", code="job_not_found")


class JobService:
    def __init__(self, ctx: JobContext, on_submitted: Callable[[], None] = lambda: None) -> None:
        """`on_submitted`: wakes this process's runner."""
        self._ctx = ctx
        self._on_submitted = on_submitted

    async def definition(self, tenant_id: str, definition_id: str) -> CouponDefinition:
        """The definition a submission is for: it must exist and be active."""
        return require_active(
            await self._ctx.definitions.get(tenant_id, definition_id), definition_id
        )

    async def submit(
        self,
        defn: CouponDefinition,
        request: JobInput,
        idempotency_key: str | None = None,
        requester: Requester | None = None,
    ) -> tuple[Job, bool]:
        """The job (queued) and whether this call made it (False: an earlier submission
        with the same Idempotency-Key did)."""
        custom = defn.config.code_format == "custom"
        if custom and request.count is not None:
            raise ValidationFailed(
                message="custom-format definitions have one shared code or imported codes: "
                "no unassigned codes to draw",
                details=[FieldError("count", "send text/csv with user_id and code columns")],
            )
        if custom and not request.csv:
            raise ValidationFailed(
                message="custom-format definitions take their codes from a CSV body",
                details=[FieldError("user_ids", "send text/csv with user_id and code columns")],
            )
        job_id = (
            self._ctx.new_id()
            if idempotency_key is None
            else job_id_for(defn.tenant_id, defn.id, idempotency_key)
        )
        if idempotency_key is not None:
            earlier = await self._ctx.jobs.get(defn.tenant_id, job_id)
            if earlier is not None:
                return _replayed(earlier, request), False
        if request.count is not None:
            rows: list[Row] = []
            total = valid = drawn = request.count
            await self._check_room(defn, valid, drawn, field="count")
        else:
            rows = await asyncio.to_thread(check_rows, request.rows, custom)  # CPU: off the loop
            total = len(rows)
            valid = sum(1 for r in rows if r.error is None)
            drawn = sum(1 for r in rows if r.error is None and not r.code)
            await self._check_room(defn, valid, drawn, field="rows")
        by = requester or Requester()
        job = Job(
            id=job_id,
            tenant_id=defn.tenant_id,
            definition_id=defn.id,
            status="queued",
            total=total,
            chunks=(total + self._ctx.chunk_size - 1) // self._ctx.chunk_size,
            created_at=self._ctx.clock(),
            request_hash=request.hash,
            issued_by=by.key_id,
            request_id=by.request_id,
            metadata=request.metadata,
            unassigned=request.count is not None,
            chunk_size=self._ctx.chunk_size,
        )
        if not job.unassigned:  # a count job's rows are made as it runs (count_rows)
            await self._ctx.jobs.insert_rows(job, chunked(rows, self._ctx.chunk_size))
        earlier = await self._ctx.jobs.insert(job)
        if earlier is not None:
            return _replayed(earlier, request), False
        log.info(
            "generation_job_submitted",
            job_id=job.id,
            tenant_id=job.tenant_id,
            definition_id=job.definition_id,
            total=job.total,
            invalid_rows=job.total - valid,
            unassigned=job.unassigned,
        )
        self._on_submitted()
        return job, True

    async def _check_room(self, defn: CouponDefinition, rows: int, drawn: int, field: str) -> None:
        """The code space holds the drawn codes (with the collision margin) and the issuance
        budget the rows, or nothing is stored (the budget is taken chunk by chunk as the job
        runs: rows it cannot take then fail with their own error)."""
        if drawn and defn.config.code_format == "random":
            spec = code_spec(defn.config)
            existing = await self._ctx.coupons.count_in_space(defn.tenant_id, spec.space)
            codes.check_capacity(spec, existing, drawn, field=field)
        limit = issuance_limit(defn)
        if limit is not None:
            remaining = max(0, limit - await self._ctx.budget.issued(defn))
            if rows > remaining:
                raise Conflict(
                    message=f"{remaining} coupon(s) left of the definition's "
                    f"issuance_limit.max_coupons ({limit}); the job asks for {rows}: no job "
                    "was made",
                    code="issuance_limit_reached",
                    conflicts=[
                        {
                            "field": field,
                            "requested": rows,
                            "remaining": remaining,
                            "max_coupons": limit,
                        }
                    ],
                )

    async def get(self, tenant_id: str, definition_id: str, job_id: str) -> Job:
        job = await self._ctx.jobs.get(tenant_id, job_id)
        if job is None or job.definition_id != definition_id:
            raise job_not_found(job_id)
        return job

    async def page(
        self,
        tenant_id: str,
        definition_id: str,
        limit: int,
        offset: int,
        after: str | None,
    ) -> Page[Job]:
        if await self._ctx.definitions.get(tenant_id, definition_id) is None:
            raise definition_not_found(definition_id)
        return await self._ctx.jobs.page(tenant_id, definition_id, limit, offset, after)

    async def cancel(self, tenant_id: str, definition_id: str, job_id: str) -> Job:
        """A queued job no runner holds ends at once; a running one at its next chunk (what
        it generated stays). Cancelling a job that is over changes nothing: 409."""
        await self.get(tenant_id, definition_id, job_id)
        job = await self._ctx.jobs.cancel_requested(tenant_id, job_id)
        if job is None:
            raise job_not_found(job_id)
        if job.done:
            raise Conflict(
                message=f"generation job {job_id} is already {job.status}",
                code=f"job_{job.status}",
            )
        if job.status == "queued" and job.next_chunk == 0:
            over = replace(
                job, status="cancelled", reason="cancelled before it started: none generated"
            )
            at = self._ctx.clock()
            entry = job_completed(over, at)
            await self._ctx.outbox.prepare([entry])
            if await self._ctx.jobs.finish(over, None, at):
                await self._ctx.outbox.ready([entry])
                self._ctx.wake_relay()
                log.info("generation_job_cancelled", job_id=job_id, tenant_id=tenant_id)
                return replace(over, finished_at=at)
            # A runner took it meanwhile: it stops at its first chunk (our entry is dropped
            # by the outbox sweep unless the job does end cancelled).
        return await self.get(tenant_id, definition_id, job_id)


def _replayed(job: Job, request: JobInput) -> Job:
    if job.request_hash != request.hash:
        raise key_reused("this Idempotency-Key was used with a different job request")
    return job
