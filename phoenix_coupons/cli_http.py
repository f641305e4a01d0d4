"""What the CLI commands that talk to the HTTP API share: the base URL and key (options, else
PHOENIX_API_URL / PHOENIX_API_KEY, else the local API of `make run`), one client, and the
API's errors turned into one line for people and an exit code."""

import os
from dataclasses import dataclass
from typing import Any

import httpx

from phoenix_coupons.domain.errors import PhoenixError

API_URL_ENV, API_KEY_ENV = "PHOENIX_API_URL", "PHOENIX_API_KEY"
TIMEOUT_S = 60.0  # a large CSV upload is one request

# Exit codes of the API commands (operations.md): 1 the job or server failed, 2 a request
# the API refused (4xx) or a bad option, 3 the API out of reach, 130 detached (Ctrl-C).
EXIT_FAILED, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_DETACHED = 1, 2, 3, 130


class ApiError(PhoenixError):
    """One line for the operator; `exit_code` for scripts."""

    code = "api_error"

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Api:
    url: str
    key: str

    @classmethod
    def of(cls, url: str | None, key: str | None, port: int) -> "Api":
        key = key or os.environ.get(API_KEY_ENV)
        if not key:
            raise ApiError(f"no API key: pass --api-key or set {API_KEY_ENV}", EXIT_REFUSED)
        base = url or os.environ.get(API_URL_ENV) or f"http://127.0.0.1:{port}"
        return cls(base.rstrip("/"), key)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"X-API-Key": self.key}, timeout=TIMEOUT_S
        )


def refused(response: httpx.Response) -> ApiError:
    """A 4xx or 5xx answer as one line: the API's message and the fields it names."""
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    details = body.get("details") if isinstance(body, dict) else None
    text = f"HTTP {response.status_code}: {message or response.reason_phrase}"
    for d in details or ():
        text += f"\n  {d.get('field')}: {d.get('reason')}"
    for c in (body.get("conflicts") if isinstance(body, dict) else None) or ():
        text += f"\n  {c}"
    return ApiError(text, EXIT_REFUSED if response.status_code < 500 else EXIT_FAILED)


def unreachable(api: Api, exc: httpx.TransportError) -> ApiError:
    return ApiError(f"the API at {api.url} does not answer: {exc!r}", EXIT_UNREACHABLE)
