"""Generation job rows: the CSV body (header rules refused whole, row problems kept per row
with their line), the problems found before a job runs, and the row errors a job keeps."""

import hashlib
from datetime import UTC, datetime

import pytest

from phoenix_coupons.domain.errors import ValidationFailed
from phoenix_coupons.domain.jobs import (
    MAX_ERRORS,
    Job,
    Row,
    RowError,
    check_rows,
    count_rows,
    issue_key,
    keep_errors,
)
from phoenix_coupons.services.job_input import from_csv, from_json
from schemas.jobs import JobRequest

pytestmark = pytest.mark.unit


def field_of(body: bytes, custom: bool = False, max_rows: int = 100) -> str:
    with pytest.raises(ValidationFailed) as refused:
        from_csv(body, max_rows, custom)
    return refused.value.details[0].field


def test_the_header_is_checked_before_any_row() -> None:
    assert field_of(b"") == "body"
    assert field_of(b"code\nA-1\n") == "header.user_id"
    assert field_of(b"user_id,user_id\nu\n") == "header.user_id"
    assert field_of(b"user_id,colour\nu,red\n") == "header.colour"
    assert field_of(b"user_id,metadata.\nu,x\n") == "header.metadata."
    assert field_of(b"user_id,metadata.$set\nu,x\n") == "header.metadata.$set"
    assert field_of(b"user_id\nu1\n", custom=True) == "header.code"
    assert field_of(b"user_id\n") == "body"  # no rows
    assert field_of(b"user_id\n\xff\n") == "body"  # not UTF-8
    assert field_of(b"user_id\na\nb\nc\n", max_rows=2) == "body"
    assert field_of(b'user_id\n"unclosed\n') == "body"  # csv.Error, with its line


def test_rows_keep_their_line_code_and_metadata_columns() -> None:
    body = (
        "\ufeffuser_id,code,metadata.campaign,metadata.batch\r\n"
        "u1,C-1,spring,3\r\n"
        "\r\n"
        '"u,2",,,\r\n'
        "u3\r\n"
    ).encode()
    parsed = from_csv(body, 10, custom=False)
    assert parsed.csv and parsed.hash.startswith("csv:")
    assert parsed.rows == [
        Row(2, "u1", "C-1", {"campaign": "spring", "batch": "3"}),
        Row(4, "u,2", None, None),
        Row(5, "u3", error="expected 4 fields, found 1"),
    ]
    assert from_csv(body, 10, custom=False).hash == parsed.hash


def test_problems_found_before_the_job_runs_are_errors_of_their_rows() -> None:
    rows = check_rows(
        [
            Row(2, "a", "X-1"),
            Row(3, "a", "X-2"),  # user repeats
            Row(4, "b", "x-1"),  # code repeats, case ignored
            Row(5, "c", "bad code"),
            Row(6, "d"),  # no code on a custom definition
            Row(7, " "),
            Row(8, "e", "X-3", {"k": "v" * 5000}),
            Row(9, "f", "X-4"),
        ],
        custom=True,
    )
    reasons = {r.line: r.error for r in rows}
    assert reasons[2] is None and reasons[9] is None
    assert reasons[3] == "duplicate row: user_id repeats line 2"
    assert reasons[4] == "duplicate row: code repeats line 2"
    assert (reasons[5] or "").startswith("invalid code")
    assert (reasons[6] or "").startswith("code required")
    assert reasons[7] == "user_id must not be blank"
    assert (reasons[8] or "").startswith("metadata must be at most")
    # A random definition draws codes for rows without one.
    assert check_rows([Row(2, "a")], custom=False) == [Row(2, "a")]


def test_a_json_body_numbers_its_user_ids_from_one() -> None:
    parsed = from_json(JobRequest(user_ids=["a", "b"], metadata={"m": 1}), 10)
    assert [(r.line, r.user_id) for r in parsed.rows] == [(1, "a"), (2, "b")]
    assert parsed.metadata == {"m": 1} and not parsed.csv
    other = from_json(JobRequest(user_ids=["a", "b"]), 10)
    assert other.hash != parsed.hash
    assert parsed.count is None


def test_a_json_body_takes_exactly_one_of_user_ids_and_count() -> None:
    counted = from_json(JobRequest(count=5, metadata={"m": 1}), 10)
    assert (counted.count, counted.rows, counted.metadata) == (5, [], {"m": 1})
    assert counted.hash != from_json(JobRequest(count=6), 10).hash
    # As before count existed: a keyed retry of a job submitted then still matches.
    before = "json:" + hashlib.sha256(b'{"user_ids":["a"]}').hexdigest()
    assert from_json(JobRequest(user_ids=["a"]), 10).hash == before
    for body in (JobRequest(), JobRequest(user_ids=["a"], count=1)):
        with pytest.raises(ValidationFailed) as refused:
            from_json(body, 10)
        assert {d.field for d in refused.value.details} == {"user_ids", "count"}
    for body, field in (
        (JobRequest(count=11), "count"),
        (JobRequest(user_ids=["a"] * 11), "user_ids"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            from_json(body, 10)
        assert [d.field for d in refused.value.details] == [field]


def test_a_count_job_s_rows_are_its_lines_made_chunk_by_chunk() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    job = Job("j", "t", "d", "queued", 2500, 3, at, "h", unassigned=True, chunk_size=1000)
    chunks = [count_rows(job, n) for n in range(job.chunks)]
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    lines = [r.line for c in chunks for r in c]
    assert lines == list(range(1, 2501)), "each line once: its issue key is job id + line"
    assert all(r.user_id is None and r.code is None and r.error is None for c in chunks for r in c)
    assert issue_key("j", chunks[2][-1].line) == "job:j:2500"
    with pytest.raises(ValueError):
        count_rows(Job("j", "t", "d", "queued", 1, 1, at, "h"), 0)


def test_a_job_keeps_its_first_hundred_row_errors_by_line() -> None:
    kept = keep_errors([], [RowError(n, "v", "r") for n in range(150, 0, -1)])
    assert [e.line for e in kept] == list(range(1, MAX_ERRORS + 1))
    assert [e.line for e in keep_errors(kept, [RowError(0, "v", "r")])][:2] == [0, 1]
