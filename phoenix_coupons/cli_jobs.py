"""`phoenix-coupons codes generate DEFINITION_ID --tenant T (--count N | --users FILE.csv)`:
submit a generation job (N unassigned codes, or one coupon per row of a CSV file) over the
HTTP API and follow it with a progress bar (generated / total, rate, time left) until it
ends, then print its summary and row errors. Ctrl-C detaches: the job goes on, and the
command prints how to cancel it.

On a terminal the bar is rich's; elsewhere (CI logs, a pipe) one plain line per change."""

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from phoenix_coupons.cli_http import (
    EXIT_DETACHED,
    EXIT_FAILED,
    EXIT_USAGE,
    Api,
    ApiError,
    refused,
    unreachable,
)

FINAL = ("succeeded", "failed", "cancelled")
Json = dict[str, Any]


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s")


async def generate(
    api: Api,
    tenant: str,
    definition_id: str,
    body: bytes,
    media_type: str,
    poll_s: float,
    out: Console,
    submitted: list[str],
) -> int:
    """The exit code: 0 every row generated, 1 the job failed or was cancelled or some rows
    were refused (listed), 2 the API refused the request, 3 it does not answer.
    `submitted`: gets the job's id once the API took it (for the Ctrl-C message)."""
    url = f"/v1/tenants/{tenant}/coupons/{definition_id}/generation-jobs"
    # The same key on a retried upload: the API answers the job the first one made.
    headers = {"Content-Type": media_type, "Idempotency-Key": f"cli-{uuid.uuid4()}"}
    async with api.client() as http:
        try:
            job = await _submit(http, url, body, headers)
            submitted.append(job["id"])
            what = "unassigned codes" if job.get("unassigned") else "rows"
            out.print(f"job {job['id']}: {job['total']} {what} queued", highlight=False)
            job = await _follow(http, f"{url}/{job['id']}", job, poll_s, out)
        except httpx.TransportError as exc:
            raise unreachable(api, exc) from exc
    _summary(job, out)
    return 0 if job["status"] == "succeeded" and not job["failed"] else EXIT_FAILED


async def _submit(http: httpx.AsyncClient, url: str, body: bytes, headers: Json) -> Json:
    for attempt in range(2):
        try:
            response = await http.post(url, content=body, headers=headers)
            break
        except httpx.TransportError:
            if attempt:
                raise
    if response.status_code != 202:
        raise refused(response)
    job: Json = response.json()
    return job


async def _follow(
    http: httpx.AsyncClient, url: str, job: Json, poll_s: float, out: Console
) -> Json:
    if out.is_terminal:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("generated {task.fields[generated]:,}  failed {task.fields[failed]:,}"),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=out) as bar:
            task = bar.add_task(job["status"], total=job["total"], generated=0, failed=0)
            while job["status"] not in FINAL:
                await asyncio.sleep(poll_s)
                job = await _get(http, url)
                bar.update(
                    task,
                    completed=job["generated"] + job["failed"],
                    description=job["status"],
                    generated=job["generated"],
                    failed=job["failed"],
                )
        return job
    started, last = time.monotonic(), None
    while True:
        done = job["generated"] + job["failed"]
        if done != last or job["status"] in FINAL:
            elapsed = time.monotonic() - started
            rate = done / elapsed if elapsed > 0 and done else 0.0
            left = f"{(job['total'] - done) / rate:.0f} s left" if rate else "time left unknown"
            out.print(
                f"{job['status']}: generated {job['generated']}/{job['total']}, "
                f"failed {job['failed']}, {rate:,.0f} rows/s, {left}",
                highlight=False,
            )
            last = done
        if job["status"] in FINAL:
            return job
        await asyncio.sleep(poll_s)
        job = await _get(http, url)


async def _get(http: httpx.AsyncClient, url: str) -> Json:
    response = await http.get(url)
    if response.status_code != 200:
        raise refused(response)
    job: Json = response.json()
    return job


def _summary(job: Json, out: Console) -> None:
    out.print(
        f"job {job['id']} {job['status']}: {job['generated']} generated, {job['failed']} "
        f"failed of {job['total']}" + (f" ({job['reason']})" if job.get("reason") else ""),
        highlight=False,
    )
    if job["errors"]:
        table = Table("line", "value", "reason", title="row errors")
        for e in job["errors"]:
            table.add_row(str(e["line"]), e["value"], e["reason"])
        out.print(table)
        if job["failed"] > len(job["errors"]):
            out.print(f"... and {job['failed'] - len(job['errors'])} more", highlight=False)


def run(api: Api, tenant: str, definition_id: str, source: Path | int, poll_s: float) -> int:
    """`source`: the CSV file of users, or the count of unassigned codes."""
    out = Console(stderr=False, highlight=False, soft_wrap=True)
    jobs = f"{api.url}/v1/tenants/{tenant}/coupons/{definition_id}/generation-jobs"
    submitted: list[str] = []
    if isinstance(source, int):
        body, media_type = json.dumps({"count": source}).encode(), "application/json"
    else:
        try:
            body, media_type = source.read_bytes(), "text/csv"
        except OSError as exc:
            raise ApiError(f"cannot read {source}: {exc.strerror}", EXIT_USAGE) from exc
    try:
        return asyncio.run(
            generate(api, tenant, definition_id, body, media_type, poll_s, out, submitted)
        )
    except KeyboardInterrupt:
        if not submitted:
            print("\ninterrupted before the API took the job", file=sys.stderr)
            return EXIT_DETACHED
        job_url = f"{jobs}/{submitted[0]}"
        print(
            f"\ndetached: job {submitted[0]} goes on (GET {job_url}). Cancel it with:\n"
            f'  curl -X POST -H "X-API-Key: $PHOENIX_API_KEY" {job_url}/cancel',
            file=sys.stderr,
        )
        return EXIT_DETACHED
