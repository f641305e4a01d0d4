"""Generation jobs: submit (JSON user ids or a CSV file), read, list, cancel."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from phoenix_coupons.api.auth import requester, require
from phoenix_coupons.api.deps import Jobs
from phoenix_coupons.api.errors import ERROR_RESPONSES, documented
from phoenix_coupons.api.pages import CURSOR_HEADER, send_cursor
from phoenix_coupons.api.params import After, DefinitionId, Limit, Offset, TenantId
from phoenix_coupons.domain.errors import FieldError, ValidationFailed
from phoenix_coupons.domain.jobs import Job
from phoenix_coupons.domain.models import Requester
from phoenix_coupons.domain.scopes import COUPONS_READ, COUPONS_WRITE
from phoenix_coupons.services.job_input import JobInput, from_csv, from_json
from schemas.bounds import ID_MAX_LENGTH
from schemas.jobs import CSV_MEDIA_TYPE, JobList, JobRequest, JobView, RowErrorView

router = APIRouter(prefix="/v1", tags=["generation jobs"], responses=ERROR_RESPONSES)
BASE = "/tenants/{tenant_id}/coupons/{definition_id}/generation-jobs"
READ = [Depends(require(COUPONS_READ))]
WRITE = [Depends(require(COUPONS_WRITE))]
Writer = Annotated[Requester, Depends(requester(COUPONS_WRITE))]
JobId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, description="Job id.")]
NOT_FOUND = documented(404, "No such definition or job in the tenant")
CONFLICT = documented(409, "Paused or archived definition, issuance limit, job already over")

CSV_EXAMPLE = "user_id,code,metadata.campaign\nu-1,SPRING-0001,spring\nu-2,SPRING-0002,spring\n"
BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": JobRequest.model_json_schema()},
            CSV_MEDIA_TYPE: {
                "schema": {"type": "string"},
                "example": CSV_EXAMPLE,
            },
        },
    }
}


def view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        tenant_id=job.tenant_id,
        definition_id=job.definition_id,
        status=job.status,
        total=job.total,
        unassigned=job.unassigned,
        generated=job.generated,
        failed=job.failed,
        errors=[RowErrorView(line=e.line, value=e.value, reason=e.reason) for e in job.errors],
        cancel_requested=job.cancel_requested,
        reason=job.reason,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


async def _input(request: Request, max_rows: int, custom: bool) -> JobInput:
    media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if media == CSV_MEDIA_TYPE:  # up to a million rows: parsed off the event loop
        return await run_in_threadpool(from_csv, raw, max_rows, custom)
    if media != "application/json":
        raise ValidationFailed(
            message="send application/json or text/csv",
            code="unsupported_media_type",
            details=[FieldError("Content-Type", f"must be application/json or {CSV_MEDIA_TYPE}")],
        )
    try:
        body = JobRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc
    return from_json(body, max_rows)


@router.post(
    BASE,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, **CONFLICT},
    openapi_extra=BODY_DOC,
)
async def submit_job(
    tenant_id: TenantId,
    definition_id: DefinitionId,
    request: Request,
    response: Response,
    jobs: Jobs,
    by: Writer,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="The same key and body: the first job, nothing new.",
        ),
    ] = None,
) -> JobView:
    """Start a generation job: one coupon per row, made in chunks by the job runners. The
    body is JSON `{"user_ids": [...], "metadata": {...}}`, JSON `{"count": N, "metadata":
    {...}}` (N unassigned codes, owned by no user: not on custom definitions) or `text/csv`
    with a header row: `user_id`, optionally `code` (imported codes: required on custom
    definitions) and `metadata.<key>` columns. Row problems are reported per row by the
    job."""
    defn = await jobs.definition(tenant_id, definition_id)
    settings = request.app.state.container.settings
    custom = defn.config.code_format == "custom"
    job, _ = await jobs.submit(
        defn, await _input(request, settings.job_max_rows, custom), idempotency_key, by
    )
    response.headers["Location"] = str(
        request.url_for("get_job", tenant_id=tenant_id, definition_id=definition_id, job_id=job.id)
    )
    return view(job)


@router.get(BASE, dependencies=READ, responses={**NOT_FOUND, **CURSOR_HEADER})
async def list_jobs(
    tenant_id: TenantId,
    definition_id: DefinitionId,
    jobs: Jobs,
    response: Response,
    limit: Limit = 50,
    offset: Offset = 0,
    after: After = None,
) -> JobList:
    """A definition's generation jobs, newest first."""
    page = await jobs.page(tenant_id, definition_id, limit, offset, after)
    send_cursor(response, page.next_after)
    return JobList(jobs=[view(j) for j in page.items], total=page.total)


@router.get(BASE + "/{job_id}", dependencies=READ, responses=NOT_FOUND)
async def get_job(
    tenant_id: TenantId, definition_id: DefinitionId, job_id: JobId, jobs: Jobs
) -> JobView:
    """The job's status, counts, first 100 row errors and times."""
    return view(await jobs.get(tenant_id, definition_id, job_id))


@router.post(BASE + "/{job_id}/cancel", dependencies=WRITE, responses={**NOT_FOUND, **CONFLICT})
async def cancel_job(
    tenant_id: TenantId, definition_id: DefinitionId, job_id: JobId, jobs: Jobs
) -> JobView:
    """Stop the job at its next chunk: the coupons generated so far stay (`generated`)."""
    return view(await jobs.cancel(tenant_id, definition_id, job_id))
