"""The client side of the `phoenix-coupons codes` commands, which work over the HTTP API: where
the API is and which key to send (`--api-url`, `--api-key`, or PHOENIX_API_URL /
PHOENIX_API_KEY, else the local API of `make run`), one client (sync for downloads, async for
jobs), what an error answer or an API out of reach means (one line for the operator and an
exit code), and the progress bar (rich)."""

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

# Exit codes of the commands that call the API (operations.md).
EXIT_FAILED = 1  # the API failed (5xx), a download was cut, a job failed or refused rows
EXIT_USAGE = 2  # bad arguments, no key, a request the API refused (4xx but those below)
EXIT_AUTH = 3  # 401 or 403: the key is wrong, revoked, or lacks the scope or tenant
EXIT_NOT_FOUND = 4  # 404: no such definition (or job) in the tenant
EXIT_UNREACHABLE = 5  # the API does not answer
EXIT_DETACHED = 130  # Ctrl-C: the command stopped watching (a job goes on)

# A large CSV upload is one request.
TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class ApiError(PhoenixError):
    """What the operator reads (one line) and the command's exit code."""

    code = "api_error"

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


@dataclass(frozen=True)
class Api:
    """Where the API is and the key to send."""

    url: str
    key: str

    @classmethod
    def of(cls, url: str | None, key: str | None, port: int) -> "Api":
        key = key or os.environ.get(API_KEY_ENV)
        if not key:
            raise ApiError(f"no API key: pass --api-key or set {API_KEY_ENV}", EXIT_USAGE)
        return cls(api_url(url, port), key)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=TIMEOUT)

    @property
    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


def unreachable(api: Api, exc: Exception) -> ApiError:
    return ApiError(
        f"the API at {api.url} does not answer ({exc}): is it running? "
        f"(--api-url or {API_URL_ENV})",
        EXIT_UNREACHABLE,
    )


@contextmanager
def api_client(
    given_url: str | None, given_key: str | None, api_port: int
) -> Iterator[httpx.Client]:
    """A (sync) client of the API with the key; ApiError when no key is given, or when the
    API is out of reach during the block."""
    api = Api.of(given_url, given_key, api_port)
    try:
        with httpx.Client(base_url=api.url, headers=api._headers, timeout=TIMEOUT) as client:
            yield client
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise unreachable(api, exc) from exc


def refused(response: httpx.Response) -> ApiError:
    """An error answer as one line, naming the API's own error, message, the fields and
    conflicts it names, with the exit code of its status. The body must have been read."""
    error, message, notes = f"http_{response.status_code}", response.reason_phrase, []
    try:
        body: Any = response.json()
        error, message = body.get("error", error), body.get("message", message)
        notes = [f"{d['field']}: {d['reason']}" for d in body.get("details") or []]
        notes += [str(c) for c in body.get("conflicts") or []]
    except (ValueError, AttributeError, KeyError, TypeError):
        pass
    text = f"{response.status_code} {error}: {message}" + (
        f" ({'; '.join(notes)})" if notes else ""
    )
    status = response.status_code
    if status in (401, 403):
        hint = "the key is unknown or revoked" if status == 401 else "the key lacks the scope"
        return ApiError(f"{text} [{hint}, or is bound to another tenant]", EXIT_AUTH)
    if status == 404:
        return ApiError(text, EXIT_NOT_FOUND)
    return ApiError(text, EXIT_USAGE if status < 500 else EXIT_FAILED)


def check(response: httpx.Response) -> None:
    """Raises `refused(response)` for an error answer (reading a streamed body first)."""
    if response.status_code < 400:
        return
    if not response.is_closed:
        response.read()
    raise refused(response)


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
