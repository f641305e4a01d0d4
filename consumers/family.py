"""Decoding one event family's JSON into its contract model."""

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from consumers.poison import PoisonRecord

M = TypeVar("M", bound=BaseModel)


def decode_as(model: type[M], value: bytes) -> M:
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}"
            for err in errors[:5]
        )
        kind = "not_json" if errors and errors[0]["type"] == "json_invalid" else "schema_violation"
        raise PoisonRecord(kind, problems) from exc
