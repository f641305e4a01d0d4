"""One error body for every failure: `{"error", "message", "details": [{field, reason}]}`."""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from phoenix_coupons.adapters.mongo import unavailable
from phoenix_coupons.api.redemption_metrics import LOOKUPS_REFUSED
from phoenix_coupons.domain.errors import (
    Conflict,
    Contended,
    DomainError,
    Forbidden,
    NotFound,
    TooManyFailedLookups,
    Unauthenticated,
    ValidationFailed,
)
from schemas.errors import ErrorBody, FieldIssue

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 5  # MongoDB out of reach: when to try again (a failover takes seconds)
LOCATIONS = {"body", "query", "path", "header", "cookie"}
REASONS = {
    "extra_forbidden": "unknown field: not accepted here",
    "missing": "is required",
}
# The status of each branch of the hierarchy (domain/errors.py); a subclass answers its
# nearest ancestor's, and a DomainError of no branch 400.
STATUS: dict[type[DomainError], int] = {
    ValidationFailed: 422,
    NotFound: 404,
    Conflict: 409,
    Unauthenticated: 401,
    Forbidden: 403,
    TooManyFailedLookups: 429,
}


def error_response(
    status: int,
    error: str,
    message: str,
    details: list[FieldIssue] | None = None,
    conflicts: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, message=message, details=details or [], conflicts=conflicts)
    return JSONResponse(
        status_code=status,
        content=body.model_dump(mode="json", exclude_none=True),
        headers=headers,
    )


def payload_too_large(limit: int) -> JSONResponse:
    return error_response(
        413,
        "payload_too_large",
        f"the request body exceeds the limit of {limit} bytes",
        [FieldIssue(field="body", reason=f"must be at most {limit} bytes")],
    )


def _issue(error: Any) -> FieldIssue:
    if error["type"] == "json_invalid":  # loc is ("body", <character position>)
        position = error["loc"][-1]
        cause = (error.get("ctx") or {}).get("error", error["msg"])
        return FieldIssue(field="body", reason=f"malformed JSON at character {position}: {cause}")
    return FieldIssue(
        field=field_name(tuple(error["loc"])), reason=REASONS.get(error["type"], error["msg"])
    )


def field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in LOCATIONS:
        where, parts = parts[0], parts[1:]
        if where == "header" and parts:
            parts = ["-".join(w.capitalize() for w in parts[0].split("-"))]
    return ".".join(parts) or "body"


def status_of(exc: DomainError) -> int:
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 400)


def _headers(exc: DomainError) -> dict[str, str] | None:
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer, ApiKey"}
    if isinstance(exc, TooManyFailedLookups):
        LOOKUPS_REFUSED.inc()
        return {"Retry-After": str(exc.retry_after)}
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [_issue(e) for e in exc.errors()]
        return error_response(422, "validation_error", "the request is not valid", details)

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        details = [
            FieldIssue(field=d.field, reason=d.reason)
            for d in (exc.details if isinstance(exc, ValidationFailed) else ())
        ]
        conflicts = exc.conflicts or None if isinstance(exc, Conflict) else None
        return error_response(
            status_of(exc), exc.code, exc.message, details, conflicts, _headers(exc)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and (reason := _unreadable_body(exc.__cause__)):
            details = [FieldIssue(field="body", reason=reason)]
            return error_response(422, "validation_error", "the request is not valid", details)
        error = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, error, str(exc.detail))

    @app.exception_handler(PyMongoError)
    async def _storage(_: Request, exc: PyMongoError) -> JSONResponse:
        if not unavailable(exc):
            return _internal(exc)
        log.warning("mongodb_unavailable", error=repr(exc))
        return error_response(
            503,
            "service_unavailable",
            "the database did not answer in time; retry later (with the same "
            "Idempotency-Key, if any)",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(Contended)
    async def _contended(_: Request, exc: Contended) -> JSONResponse:
        log.warning("storage_contended", error=exc.message)
        return error_response(
            503,
            "service_unavailable",
            "too many concurrent writers; retry later (with the same Idempotency-Key, if any)",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        return _internal(exc)


def _unreadable_body(cause: BaseException | None) -> str | None:
    """Why FastAPI could not read a JSON body, for the failures its parser reports as a bare
    400 (undecodable JSON it reports itself, as `json_invalid`)."""
    if isinstance(cause, UnicodeDecodeError):
        byte = cause.object[cause.start]
        return f"is not valid UTF-8: byte {byte:#04x} at position {cause.start}"
    if isinstance(cause, RecursionError):
        return "is JSON nested too deeply to parse"
    return None


def _internal(exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", error=repr(exc))
    return error_response(500, "internal_error", "internal error; see the service logs")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A request the server cannot read"},
    401: {"model": ErrorBody, "description": "Missing or invalid credentials"},
    403: {"model": ErrorBody, "description": "Missing scope or other tenant"},
    413: {
        "model": ErrorBody,
        "description": "Request body over the limit (`payload_too_large`): "
        "`PHOENIX_API_MAX_BODY_BYTES`; bulk generation has its own, larger cap",
    },
    422: {"model": ErrorBody, "description": "Invalid input: `details` names each field"},
    503: {
        "model": ErrorBody,
        "description": "The database did not answer in time (`Retry-After` says when to retry)",
    },
}


def documented(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI `responses` entry answering the common error body."""
    return {status: {"model": ErrorBody, "description": description}}
