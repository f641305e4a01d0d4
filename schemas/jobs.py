"""Generation jobs over the API: the JSON request (the CSV body is described in docs/api.md
and parsed by the service), the job as the API shows it, and a definition's list of jobs."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.bounds import ExternalId
from schemas.metadata import Metadata

# The hard ceiling of the schema; PHOENIX_JOB_MAX_ROWS (at most this) is the one enforced.
JOB_MAX_ROWS = 1_000_000
CSV_MEDIA_TYPE = "text/csv"
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobRequest(BaseModel):
    """Exactly one of `user_ids` (one coupon per user id: the same rules as `generate`,
    without its 10,000 cap) and `count` (that many unassigned codes, owned by no user: whoever
    presents one first redeems it). Which one is checked by the service (a 422 naming both
    fields), so that the error names them rather than the body."""

    # What the service accepts, null standing for absent: exactly one of the two given.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["user_ids"], "properties": {"user_ids": {"type": "array"}}},
                {"required": ["count"], "properties": {"count": {"type": "integer"}}},
            ]
        },
    )

    user_ids: list[ExternalId] | None = Field(default=None, min_length=1, max_length=JOB_MAX_ROWS)
    count: int | None = Field(
        default=None,
        ge=1,
        le=JOB_MAX_ROWS,
        description="Unassigned codes to make (at most PHOENIX_JOB_MAX_ROWS); not on custom "
        "definitions.",
    )
    metadata: Metadata | None = Field(
        default=None, description="Stored on every coupon of the job and carried by its event."
    )


class RowErrorView(BaseModel):
    line: int = Field(
        description="The CSV line (the header is line 1), or the position in user_ids (from 1)."
    )
    value: str = Field(
        description="The row's code, or its user_id when it has no code (empty for a line "
        "of a count job)."
    )
    reason: str


class JobView(BaseModel):
    id: str
    tenant_id: str
    definition_id: str
    status: JobStatus
    total: int = Field(description="Rows requested (a count job: its count).")
    unassigned: bool = Field(
        default=False, description="A count job: its codes are owned by no user."
    )
    generated: int = Field(description="Coupons stored so far (they stay if the job stops).")
    failed: int = Field(description="Rows refused so far (every one; `errors` holds 100).")
    errors: list[RowErrorView] = Field(description="The first 100 row errors, by line.")
    cancel_requested: bool
    reason: str | None = Field(
        default=None, description="Why a job failed or was cancelled, and what stays."
    )
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobList(BaseModel):
    jobs: list[JobView]
    total: int
