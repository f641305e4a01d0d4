"""docs/configuration.md from `Settings`: every environment variable the service reads, with
its type, default and description (the field's `description=`)."""

import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from phoenix_coupons.settings import Settings

PAGE = "configuration.md"
INTRO = """\
<!-- Generated from phoenix_coupons/settings.py by `make docs`: edit the settings' descriptions,
not this page. -->

# Configuration

Environment variables (12-factor), read by `phoenix_coupons/settings.py`. The service's own
settings start with `PHOENIX_`; the two server URLs go without it (the prefixed spelling is
accepted too). When neither URL is set, every command reads them from
`$PHOENIX_DATA_DIR/services.env`, which `make run` writes while it runs: a second terminal
needs the same `PHOENIX_DATA_DIR` as the first.

| variable | type | default | description |
|---|---|---|---|
"""
TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
}
BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)


def variables(name: str, field: FieldInfo) -> list[str]:
    """The names the setting is read from, the one to use first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    prefix = Settings.model_config.get("env_prefix", "")
    return [f"{prefix}{name}".upper()]


def type_name(field: FieldInfo) -> str:
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    words = [TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))]
    for kind, attr, sign in BOUNDS:
        for item in field.metadata:
            if isinstance(item, kind):
                words.append(f"{sign} {getattr(item, attr)}")
    return " ".join(words)


def default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def row(name: str, field: FieldInfo) -> str:
    first, *others = variables(name, field)
    cell = f"`{first}`" + "".join(f" (or `{other}`)" for other in others)
    description = " ".join((field.description or "").split()).replace("|", "\\|")
    return f"| {cell} | {type_name(field)} | {default(field)} | {description} |"


def render() -> str:
    rows = [row(name, field) for name, field in Settings.model_fields.items()]
    return INTRO + "\n".join(rows) + "\n"
