"""`phoenix-coupons codes export`: a definition's codes downloaded over the HTTP API with a
progress bar, written atomically (a temporary file beside the target, renamed once the whole
body arrived: a cut download leaves the target as it was)."""

import argparse
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import httpx

from phoenix_coupons.cli_http import (
    EXIT_FAILED,
    EXIT_USAGE,
    ApiError,
    add_api_options,
    api_client,
    check,
    progress_bar,
)

FORMATS = ("csv", "jsonl")
TOTAL_COUNT = "X-Total-Count"
CHUNK = 64 * 1024


def add_export_command(codes: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    export = codes.add_parser(
        "export", help="download every code of a definition (CSV or JSON Lines) over the API"
    )
    export.add_argument("definition_id")
    export.add_argument("--tenant", required=True, help="the definition's tenant id")
    export.add_argument("-o", "--output", required=True, help="the file to write")
    export.add_argument(
        "--format",
        choices=FORMATS,
        help="csv or jsonl (default: jsonl when the output ends in .jsonl or .ndjson, else csv)",
    )
    add_api_options(export)


def output_format(given: str | None, output: str) -> str:
    if given:
        return given
    return "jsonl" if output.lower().endswith((".jsonl", ".ndjson")) else "csv"


def export_codes(args: argparse.Namespace, api_port: int) -> int:
    try:
        return _export(args, api_port)
    except KeyboardInterrupt:  # the temporary file is gone, the target unchanged
        print("interrupted: nothing written", file=sys.stderr)
        return 130


def _export(args: argparse.Namespace, api_port: int) -> int:
    fmt = output_format(args.format, args.output)
    target = Path(args.output)
    if not target.parent.is_dir():
        raise ApiError(f"no directory {target.parent} for {target}", EXIT_USAGE)
    tenant, definition = (quote(part, safe="") for part in (args.tenant, args.definition_id))
    path = f"/v1/tenants/{tenant}/coupons/{definition}/codes/export"
    with (
        api_client(args.api_url, args.api_key, api_port) as http,
        http.stream("GET", path, params={"format": fmt}) as response,
    ):
        check(response)
        total = response.headers.get(TOTAL_COUNT)
        rows = write_atomically(
            target, response.iter_bytes(CHUNK), fmt, int(total) if total else None
        )
    print(f"exported {rows} codes of {args.definition_id} to {target} ({fmt})", file=sys.stderr)
    return 0


def write_atomically(target: Path, chunks: Iterable[bytes], fmt: str, total: int | None) -> int:
    """Write the body to a temporary file beside `target`, then rename it over `target`;
    returns the rows written. The count is the line breaks (JSON Lines escapes them within a
    value; a CSV row holds one only if a user id does)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    lines = 0
    try:
        with os.fdopen(fd, "wb") as out, progress_bar() as progress:
            task = progress.add_task(f"exporting to {target.name}", total=total)
            header = 1 if fmt == "csv" else 0
            try:
                for chunk in chunks:
                    out.write(chunk)
                    lines += chunk.count(b"\n")
                    progress.update(task, completed=max(0, lines - header))
            except httpx.HTTPError as exc:  # a connection cut mid-body, a read timeout
                raise ApiError(
                    f"the download was cut after {max(0, lines - header)} codes ({exc!r}); "
                    f"{target} is unchanged",
                    EXIT_FAILED,
                ) from exc
            rows = max(0, lines - header)
            progress.update(task, completed=rows, total=max(rows, total or 0))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        return rows
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
