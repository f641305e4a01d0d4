"""The code export's rows and formats (CSV through the standard library's reader, JSON Lines),
which usage group gives a code its `uses`, and the CLI's reading of the API's answers."""

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from phoenix_coupons.cli_export import output_format, write_atomically
from phoenix_coupons.cli_http import (
    API_URL_ENV,
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    ApiError,
    api_url,
    check,
)
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.code_export import (
    FIELDS,
    csv_header,
    csv_rows,
    jsonl_rows,
    row,
    timestamp,
    usage_key,
)
from phoenix_coupons.services.ports import GroupUsage
from schemas.coupons import CouponConfig, CouponDefinition
from tests.unit.test_config_rules import random_config

pytestmark = pytest.mark.unit
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def coupon(user_id: str | None = "ann", **changes: Any) -> Coupon:
    fields: dict[str, Any] = {
        "id": "c1",
        "tenant_id": "t1",
        "definition_id": "d1",
        "reward_item_id": "r1",
        "code": "SUMMER-1",
        "code_norm": "SUMMER-1",
        "kind": "issued" if user_id else "shared",
        "source": "bulk",
        "issue_key": "k1",
        "issued_at": T0,
        "user_id": user_id,
    }
    return Coupon(**{**fields, **changes})


def definition(config: CouponConfig) -> CouponDefinition:
    return CouponDefinition(
        id="d1",
        tenant_id="t1",
        name="d",
        description=None,
        config=config,
        status="active",
        created_at=T0,
        updated_at=T0,
    )


def test_csv_rows_read_back_whatever_the_values_hold() -> None:
    odd_user = 'ann, "the first"\nline two'
    meta = {"note": "a, b", "n": 1, "nested": {"x": [1, 2]}}
    rows = [
        row(
            coupon(odd_user, metadata=meta, starts_at=T0, expires_at=T0 + timedelta(days=1)),
            GroupUsage(2, T0 + timedelta(hours=1)),
        ),
        row(coupon(None, code="SHARED"), None),
    ]
    text = csv_header() + csv_rows(rows)
    read = list(csv.DictReader(io.StringIO(text, newline="")))
    assert tuple(read[0]) == FIELDS
    assert read[0] == {
        "code": "SUMMER-1",
        "kind": "issued",
        "user_id": odd_user,
        "status": "active",
        "starts_at": "2030-01-01T00:00:00Z",
        "expires_at": "2030-01-02T00:00:00Z",
        "uses": "2",
        "last_redeemed_at": "2030-01-01T01:00:00Z",
        "metadata": json.dumps(meta, separators=(",", ":")),
    }
    assert json.loads(read[0]["metadata"]) == meta
    assert read[1] == {f: "" for f in FIELDS} | {
        "code": "SHARED",
        "kind": "shared",
        "status": "active",
    }
    lines = [json.loads(line) for line in jsonl_rows(rows).splitlines()]
    assert lines == rows  # one object per line, newlines within values escaped


def test_times_are_utc_with_z() -> None:
    assert timestamp(None) is None
    assert timestamp(datetime(2030, 1, 1, 12)) == "2030-01-01T12:00:00Z"  # stored: UTC
    plus_two = timezone(timedelta(hours=2))
    assert timestamp(datetime(2030, 1, 1, 12, tzinfo=plus_two)) == "2030-01-01T10:00:00Z"
    assert timestamp(datetime(2030, 1, 1, 0, 0, 0, 5000, UTC)) == "2030-01-01T00:00:00.005000Z"


@pytest.mark.parametrize(
    ("limit", "user_id", "key"),
    [
        ({"limit_type": "per_user", "max_uses": 1}, "ann", "u:d1:"),  # the owner's uses
        ({"limit_type": "per_user", "max_uses": 1}, None, None),  # a shared code: per redeemer
        ({"limit_type": "global", "max_uses": 5}, "ann", "g:d1"),  # the definition's uses
        ({"limit_type": "global", "max_uses": 5}, None, "g:d1"),
        ({"limit_type": "unlimited"}, "ann", None),  # not kept
    ],
)
def test_uses_come_from_the_codes_usage_group(
    limit: dict[str, Any], user_id: str | None, key: str | None
) -> None:
    found = usage_key(definition(random_config(usage_limit=limit)), coupon(user_id))
    assert found == key or (key is not None and found is not None and found.startswith(key))


def test_output_format_and_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert output_format(None, "codes.csv") == "csv"
    assert output_format(None, "out/CODES.JSONL") == "jsonl"
    assert output_format(None, "codes.ndjson") == "jsonl"
    assert output_format("csv", "codes.jsonl") == "csv"
    monkeypatch.delenv(API_URL_ENV, raising=False)
    assert api_url(None, 8080) == "http://127.0.0.1:8080"
    monkeypatch.setenv(API_URL_ENV, "https://coupons.example/")
    assert api_url(None, 8080) == "https://coupons.example"
    assert api_url("http://other:9000", 8080) == "http://other:9000"


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [
        (401, EXIT_AUTH),
        (403, EXIT_AUTH),
        (404, EXIT_NOT_FOUND),
        (422, EXIT_USAGE),
        (500, EXIT_FAILED),
        (503, EXIT_FAILED),
    ],
)
def test_error_answers_name_the_apis_error(status: int, exit_code: int) -> None:
    body = {"error": "some_error", "message": "what went wrong", "details": []}
    if status == 422:
        body["details"] = [{"field": "format", "reason": "must be csv or jsonl"}]
    with pytest.raises(ApiError) as raised:
        check(httpx.Response(status, json=body))
    assert raised.value.exit_code == exit_code
    assert str(raised.value).startswith(f"{status} some_error: what went wrong")
    if status == 422:
        assert "(format: must be csv or jsonl)" in str(raised.value)
    with pytest.raises(ApiError, match=f"{status} http_{status}"):
        check(httpx.Response(status, text="<html>proxy error</html>"))
    check(httpx.Response(200, text="ok"))


def test_a_cut_download_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "codes.csv"
    target.write_text("before\n")

    def cut() -> Iterator[bytes]:
        yield b"code,kind\r\nA,issued\r\n"
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    with pytest.raises(ApiError, match="cut after 1 codes") as raised:
        write_atomically(target, cut(), "csv", 10)
    assert raised.value.exit_code == EXIT_FAILED
    assert target.read_text() == "before\n"
    assert [p.name for p in tmp_path.iterdir()] == ["codes.csv"]

    whole = [b"code,kind\r\n", b"A,issued\r\nB,issued\r\n"]
    assert write_atomically(target, iter(whole), "csv", 2) == 2
    assert target.read_bytes() == b"".join(whole)
    assert [p.name for p in tmp_path.iterdir()] == ["codes.csv"]
