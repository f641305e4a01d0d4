"""Errors the domain and services raise; the API maps each kind to one status code."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


@dataclass
class DomainError(Exception):
    message: str
    code: str = "error"

    def __str__(self) -> str:
        return self.message


@dataclass
class ValidationFailed(DomainError):
    """The input breaks a rule: 422."""

    details: list[FieldError] = field(default_factory=list)
    code: str = "validation_error"


@dataclass
class NotFound(DomainError):
    code: str = "not_found"


@dataclass
class Conflict(DomainError):
    """The input is well formed but clashes with the stored state: 409."""

    conflicts: list[dict[str, Any]] = field(default_factory=list)
    code: str = "conflict"


@dataclass
class CodeSpaceExhausted(ValidationFailed):
    code: str = "code_space_exhausted"
