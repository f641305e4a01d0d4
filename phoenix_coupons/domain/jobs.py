"""Generation jobs: a definition's coupons for a long list of rows (user ids, optionally
imported codes and metadata), made in chunks by job runners, resumable after a crash.

A count job (`unassigned`) makes that many codes owned by no user: its rows are its lines
1..total, stored nowhere and made chunk by chunk from the job (`count_rows`).

Pure rules only: a job's record, its rows and their problems found before the job runs
(`check_rows`), the issue key of each row's coupon (job id + line: a resumed job finds what
it stored before), and how row errors accumulate (the first `MAX_ERRORS` are kept)."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from phoenix_coupons.domain import codes
from phoenix_coupons.domain.config_rules import code_reason
from schemas.bounds import EXTERNAL_ID_MAX_LENGTH, METADATA_MAX_BYTES
from schemas.metadata import serialized_size

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
MAX_ERRORS = 100  # row errors a job keeps (its `failed` count counts them all)

# Row problems (a row error's `reason` starts with one of these words).
DUPLICATE_USER = "duplicate row: user_id repeats line {line}"
DUPLICATE_CODE = "duplicate row: code repeats line {line}"
CODE_TAKEN = "code already taken in this tenant"
CODE_REQUIRED = "code required: the definition's code_format is 'custom'"
BUDGET_USED = "issuance_limit reached: the definition's budget is used up"
NO_FREE_CODE = "no free code found: the code space is too full"


@dataclass(frozen=True, slots=True)
class Row:
    """One requested coupon: `line` is the CSV line (the header is line 1), the position
    in `user_ids` (from 1) or a count job's line; `user_id` None: an unassigned code;
    `error`: why it is refused before the job runs."""

    line: int
    user_id: str | None
    code: str | None = None
    metadata: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    value: str
    reason: str


@dataclass
class Job:
    """`chunks`: how many chunks its rows are stored in (a count job's: made of
    `chunk_size` lines each); `next_chunk`: the first chunk not done (a resumed job starts
    there); `unassigned`: a count job, its rows stored nowhere."""

    id: str
    tenant_id: str
    definition_id: str
    status: JobStatus
    total: int
    chunks: int
    created_at: datetime
    request_hash: str
    generated: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    next_chunk: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    reason: str | None = None
    issued_by: str | None = None
    request_id: str | None = None
    metadata: dict[str, Any] | None = None
    unassigned: bool = False
    chunk_size: int = 0

    @property
    def done(self) -> bool:
        return self.status in FINAL


def rows_key(job: Job) -> str:
    """Where a job's rows are stored: with the request's hash, so that two submissions of
    one Idempotency-Key with different bodies never write over each other's rows."""
    return f"{job.id}:{job.request_hash[:16]}"


def issue_key(job_id: str, line: int) -> str:
    """A row's coupon: the same for every attempt at the job, so a resumed chunk finds the
    coupons an earlier attempt stored and issues none twice."""
    return f"job:{job_id}:{line}"


def keep_errors(kept: Sequence[RowError], new: Iterable[RowError]) -> list[RowError]:
    """The first MAX_ERRORS row errors in line order."""
    return sorted([*kept, *new], key=lambda e: e.line)[:MAX_ERRORS]


def row_value(row: Row) -> str:
    return row.code if row.code is not None else row.user_id or ""


def count_rows(job: Job, chunk: int) -> list[Row]:
    """Chunk `chunk` of a count job: its lines, each an unassigned code (the same lines for
    every attempt, so their issue keys are too)."""
    if not job.unassigned or job.chunk_size < 1:
        raise ValueError(f"job {job.id} is not a count job")
    first = chunk * job.chunk_size + 1
    return [Row(line, None) for line in range(first, min(first + job.chunk_size, job.total + 1))]


def check_rows(rows: Iterable[Row], custom: bool) -> list[Row]:
    """Rows with the problems found before the job runs: a blank user id, a user id or code
    that an earlier row has (codes compared as the registry does: case ignored), an invalid
    code, a missing code on a custom definition, metadata too large. The first row of a
    repeated user id or code is kept; later ones are errors."""
    users: dict[str, int] = {}
    seen_codes: dict[str, int] = {}
    out: list[Row] = []
    for row in rows:
        out.append(_checked(row, custom, users, seen_codes))
    return out


def _checked(row: Row, custom: bool, users: dict[str, int], seen: dict[str, int]) -> Row:
    if row.error is not None:
        return row
    reason: str | None = None
    if row.user_id is None or not row.user_id.strip():
        reason = "user_id must not be blank"
    elif len(row.user_id) > EXTERNAL_ID_MAX_LENGTH:
        reason = f"user_id must be at most {EXTERNAL_ID_MAX_LENGTH} characters"
    elif row.user_id in users:
        reason = DUPLICATE_USER.format(line=users[row.user_id])
    elif row.code is None and custom:
        reason = CODE_REQUIRED
    elif row.code is not None and (bad := code_reason(row.code)):
        reason = f"invalid code: {bad}"
    elif row.code is not None and codes.normalize(row.code) in seen:
        reason = DUPLICATE_CODE.format(line=seen[codes.normalize(row.code)])
    elif row.metadata is not None and serialized_size(row.metadata) > METADATA_MAX_BYTES:
        reason = f"metadata must be at most {METADATA_MAX_BYTES} bytes as JSON"
    if reason is not None:
        return Row(row.line, row.user_id, row.code, row.metadata, reason)
    users[row.user_id or ""] = row.line
    if row.code is not None:
        seen[codes.normalize(row.code)] = row.line
    return row


def chunked(rows: Sequence[Row], size: int) -> list[Sequence[Row]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]
