"""The client side of the `phoenix-coupons codes` commands, which work over the HTTP API: where
the API is and which key to send (`--api-url`, `--api-key`, or the environment), what an error
answer or an API out of reach means (one line for the operator and an exit code), and the
progress bar (rich)."""

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from phoenix_coupons.domain.errors import PhoenixError

# Read by the CLI only (the service never calls its own API): not service settings.
API_URL_ENV = "PHOENIX_API_URL"
API_KEY_ENV = "PHOENIX_API_KEY"

# Exit codes of the commands that call the API.
EXIT_FAILED = 1  # the API failed or is out of reach, a download was cut
EXIT_USAGE = 2  # bad arguments, no key, a request the API refused as invalid (4xx)
EXIT_AUTH = 3  # 401 or 403: the key is wrong, revoked, or lacks the scope or tenant
EXIT_NOT_FOUND = 4  # 404: no such definition (or job) in the tenant

TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class ApiCallFailed(PhoenixError):
    """What the operator reads (one line) and the command's exit code."""

    code = "api_call_failed"

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        help=f"the admin API's base URL (default: {API_URL_ENV}, else "
        "http://127.0.0.1:PHOENIX_API_PORT)",
    )
    parser.add_argument(
        "--api-key", help=f"an admin API key (default: {API_KEY_ENV}); prefer the variable"
    )


def api_url(given: str | None, api_port: int) -> str:
    return (given or os.environ.get(API_URL_ENV) or f"http://127.0.0.1:{api_port}").rstrip("/")


@contextmanager
def api_client(
    given_url: str | None, given_key: str | None, api_port: int
) -> Iterator[httpx.Client]:
    """A client of the API with the key; ApiCallFailed when no key is given, or when the
    API is out of reach during the block."""
    key = given_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise ApiCallFailed(f"no API key: pass --api-key or set {API_KEY_ENV}", EXIT_USAGE)
    url = api_url(given_url, api_port)
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=TIMEOUT) as client:
            yield client
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ApiCallFailed(
            f"the API at {url} does not answer ({exc}): is it running? "
            f"(--api-url or {API_URL_ENV})",
            EXIT_FAILED,
        ) from exc


def check(response: httpx.Response) -> None:
    """ApiCallFailed for an error answer, naming the API's own error and message."""
    if response.status_code < 400:
        return
    if not response.is_closed:
        response.read()
    error, message, details = f"http_{response.status_code}", response.reason_phrase, ""
    try:
        body: Any = response.json()
        error, message = body.get("error", error), body.get("message", message)
        details = "; ".join(f"{d['field']}: {d['reason']}" for d in body.get("details") or [])
    except (ValueError, AttributeError, KeyError, TypeError):
        pass
    text = f"{response.status_code} {error}: {message}" + (f" ({details})" if details else "")
    status = response.status_code
    if status in (401, 403):
        hint = "the key is unknown or revoked" if status == 401 else "the key lacks the scope"
        raise ApiCallFailed(f"{text} [{hint}, or is bound to another tenant]", EXIT_AUTH)
    if status == 404:
        raise ApiCallFailed(text, EXIT_NOT_FOUND)
    raise ApiCallFailed(text, EXIT_USAGE if status < 500 else EXIT_FAILED)


class RateColumn(ProgressColumn):
    """Items per second (rich's TransferSpeedColumn speaks bytes)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self._unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {self._unit}/s", "progress.data.speed")


def progress_bar(unit: str = "codes") -> Progress:
    """done / total, percent, rate, time spent and time left, on stderr (stdout stays the
    command's result)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
