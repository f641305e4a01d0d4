"""The one error body every 4xx/5xx of the API answers with."""

from typing import Any

from pydantic import BaseModel, Field


class FieldIssue(BaseModel):
    field: str = Field(description="Dotted path of the offending input, e.g. `config.code_length`.")
    reason: str = Field(description="Why the value was refused.")


class ErrorBody(BaseModel):
    error: str = Field(description="Stable machine-readable error code, e.g. `validation_error`.")
    message: str = Field(description="Human-readable summary.")
    details: list[FieldIssue] = Field(default_factory=list)
    conflicts: list[dict[str, Any]] | None = Field(
        default=None, description="Conflicting items, when the error is a conflict on some inputs."
    )
