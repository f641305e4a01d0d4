"""A generation job's request body as rows: JSON `{"user_ids": [...]}` (or `{"count": N}`:
N unassigned codes, rows made as the job runs, none held here) or a CSV file (the
standard library's `csv`) with a header row naming `user_id` and, optionally, `code` and
`metadata.<key>` columns. What is wrong with the file as a whole (its encoding, its header,
its size) is a 422 naming it; what is wrong with one row becomes that row's error
(domain/jobs.check_rows), reported by the job without stopping it."""

import csv
import hashlib
import io
from dataclasses import dataclass
from typing import Any

from phoenix_coupons.domain.errors import FieldError, ValidationFailed
from phoenix_coupons.domain.jobs import Row
from phoenix_coupons.services.idempotency import request_hash
from schemas.free_json import json_issue
from schemas.jobs import JobRequest

USER, CODE, META = "user_id", "code", "metadata."
META_KEY_MAX = 64
# A cell's largest size: above any valid value (a user id, a code: 255 characters), below
# anything that could grow a row past what a chunk of rows may hold.
CELL_MAX = 4096


@dataclass(frozen=True)
class JobInput:
    """`metadata`: the JSON body's, for every coupon (a CSV row carries its own); `hash`:
    the request's fingerprint (an Idempotency-Key replays only the same body); `count`: a
    count job's (no rows)."""

    rows: list[Row]
    hash: str
    metadata: dict[str, Any] | None = None
    csv: bool = False
    count: int | None = None


def from_json(body: JobRequest, max_rows: int) -> JobInput:
    """422 naming both fields unless exactly one of `user_ids` and `count` is given, or
    naming the one that asks for more than `max_rows` (PHOENIX_JOB_MAX_ROWS)."""
    if (body.user_ids is None) == (body.count is None):
        reason = (
            "give user_ids or count, not both"
            if body.count is not None
            else "one of user_ids and count is required"
        )
        raise ValidationFailed(
            message="a job takes exactly one of user_ids and count",
            details=[FieldError("user_ids", reason), FieldError("count", reason)],
        )
    asked = body.count if body.count is not None else len(body.user_ids or ())
    if asked > max_rows:
        bad = (
            FieldError("count", f"must be at most {max_rows}")
            if body.count is not None
            else FieldError("user_ids", f"must hold at most {max_rows} items")
        )
        raise ValidationFailed(message=f"at most {max_rows} rows per job", details=[bad])
    digest = "json:" + request_hash(body)
    if body.count is not None:
        return JobInput([], digest, body.metadata, count=body.count)
    rows: list[Row] = [Row(i + 1, user) for i, user in enumerate(body.user_ids or ())]
    return JobInput(rows, digest, body.metadata)


def _invalid(field: str, reason: str, message: str = "invalid CSV body") -> ValidationFailed:
    return ValidationFailed(message=message, details=[FieldError(field, reason)])


def _header(names: list[str]) -> tuple[int, int | None, list[tuple[int, str]]]:
    """The positions of user_id, code and the metadata columns (with their keys)."""
    if not names or not any(n.strip() for n in names):
        raise _invalid("body", "the first line must be a header naming user_id")
    seen: set[str] = set()
    metadata: list[tuple[int, str]] = []
    user = code = None
    for i, raw in enumerate(names):
        name = raw.strip()
        if name in seen:
            raise _invalid(f"header.{name}", "column named twice")
        seen.add(name)
        if name == USER:
            user = i
        elif name == CODE:
            code = i
        elif name.startswith(META) and 0 < len(name) - len(META) <= META_KEY_MAX:
            key = name[len(META) :]
            if issue := json_issue({key: ""}):  # the keys `metadata` takes anywhere
                raise _invalid(f"header.{name}", issue)
            metadata.append((i, key))
        else:
            raise _invalid(
                f"header.{name[:80]}",
                "unknown column: expected user_id, code and metadata.<key> "
                f"(a key of 1 to {META_KEY_MAX} characters)",
            )
    if user is None:
        raise _invalid("header.user_id", "a user_id column is required")
    return user, code, metadata


def from_csv(data: bytes, max_rows: int, custom: bool) -> JobInput:
    """`custom`: the definition's codes are custom, so the file must hold a code column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid("body", f"not UTF-8 text (byte {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[Row] = []
    try:
        user, code, metadata = _header(next(reader, []))
        if custom and code is None:
            raise _invalid(
                "header.code", "a code column is required: the definition's codes are custom"
            )
        width = max(user, code or 0, *(i for i, _ in metadata)) + 1
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # blank lines
            if len(rows) >= max_rows:
                raise _invalid("body", f"at most {max_rows} rows per job")
            rows.append(_row(reader.line_num, record, width, user, code, metadata))
    except csv.Error as exc:
        raise _invalid("body", f"line {reader.line_num}: {exc}") from exc
    if not rows:
        raise _invalid("body", "no rows below the header")
    return JobInput(rows, "csv:" + hashlib.sha256(data).hexdigest(), csv=True)


def _row(
    line: int,
    record: list[str],
    width: int,
    user: int,
    code: int | None,
    metadata: list[tuple[int, str]],
) -> Row:
    if len(record) < width:
        first = record[user].strip()[:255] if user < len(record) else ""
        return Row(line, first, error=f"expected {width} fields, found {len(record)}")
    user_id = record[user].strip()
    if any(len(cell) > CELL_MAX for cell in record):
        return Row(line, user_id[:255], error=f"a field is longer than {CELL_MAX} characters")
    value = record[code].strip() if code is not None else ""
    meta = {key: record[i] for i, key in metadata if record[i] != ""}
    return Row(line, user_id, value or None, meta or None)
