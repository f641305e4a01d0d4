"""Decoding one event family's JSON by its contract model (pydantic): the slow path, for the
records the fast decoder refuses. It has the contract's last word on what is valid and its
error messages; an accepted record becomes the domain's event struct."""

from typing import Any, TypeVar

import msgspec
from pydantic import BaseModel, ValidationError

from consumers.poison import PoisonRecord

S = TypeVar("S", bound=msgspec.Struct)


def decode_as(contract: type[BaseModel], into: type[S], value: bytes) -> S:
    try:
        model = contract.model_validate_json(value)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}"
            for err in errors[:5]
        )
        kind = "not_json" if errors and errors[0]["type"] == "json_invalid" else "schema_violation"
        raise PoisonRecord(kind, problems) from exc
    return from_contract(model, into)


def from_contract(model: BaseModel, into: type[S]) -> S:
    """The struct of the same fields, values as the contract validated them (no second
    validation: the contract accepts what the struct's types may not hold, e.g. huge ints)."""
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(into):
        value = getattr(model, field.name)
        values[field.name] = (
            from_contract(value, field.type) if isinstance(value, BaseModel) else value
        )
    return into(**values)
