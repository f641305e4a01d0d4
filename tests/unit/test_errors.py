"""One exception hierarchy: every error the service raises on purpose derives from
`PhoenixError`, carries its stable name in `code`, is drawn in the tree of
`phoenix_coupons.domain.errors`' docstring, and the API's status follows its class."""

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

import consumers
import phoenix_coupons
from phoenix_coupons.api.errors import status_of
from phoenix_coupons.domain import errors
from phoenix_coupons.domain.errors import (
    CodeNotFound,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PhoenixError,
    Refused,
    TooManyFailedLookups,
    Unauthenticated,
    ValidationFailed,
)

# Test-only and development modules that start servers or need a test extra.
SKIPPED = {"phoenix_coupons.devservers", "phoenix_coupons.__main__"}
TREE_LINE = re.compile(r"^(?P<indent>(?:│   |    )*)(?:├── |└── )?(?P<name>[A-Z]\w+)\b")


def our_modules() -> list[ModuleType]:
    found = []
    for package in (phoenix_coupons, consumers):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name not in SKIPPED:
                found.append(importlib.import_module(info.name))
    return found


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Public exception classes defined in the service's packages (not imported ones)."""
    out: dict[str, type[BaseException]] = {}
    for module in our_modules():
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                out[f"{module.__name__}.{name}"] = value
    return out


def foreign_error_code(cls: type[BaseException]) -> bool:
    """A class that only registers an error code with a library (aiokafka's broker errors)."""
    return any(
        base.__module__.split(".")[0] not in ("builtins", "phoenix_coupons", "consumers")
        for base in cls.__mro__[1:]
        if base is not object
    )


def drawn_tree() -> dict[str, str | None]:
    """Each class named in the docstring's drawing -> its parent there."""
    doc = errors.__doc__ or ""
    drawing = doc[doc.index("\nPhoenixError ") + 1 :].split("\n\n")[0]
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in drawing.splitlines():
        match = TREE_LINE.match(line)
        assert match, f"not a line of the tree: {line!r}"
        depth = len(match["indent"]) // 4 + (0 if line.startswith("PhoenixError") else 1)
        del stack[depth:]
        parents[match["name"]] = stack[-1] if stack else None
        stack.append(match["name"])
    return parents


def test_every_exception_of_ours_derives_from_the_one_root() -> None:
    strays = [
        name
        for name, cls in defined_exceptions().items()
        if not issubclass(cls, PhoenixError) and not foreign_error_code(cls)
    ]
    assert strays == []


def test_the_docstring_draws_the_whole_tree() -> None:
    real: dict[str, str | None] = {"PhoenixError": None}
    for cls in defined_exceptions().values():
        if issubclass(cls, PhoenixError) and cls is not PhoenixError:
            parent = next(b for b in cls.__mro__[1:] if issubclass(b, PhoenixError))
            real[cls.__name__] = parent.__name__
    assert drawn_tree() == real


@pytest.mark.parametrize(
    "error",
    [
        Unauthenticated("the API key is not known", code="unknown_api_key"),
        Forbidden("the API key lacks the scope", code="missing_scope"),
        TooManyFailedLookups("too many", retry_after=3),
        Refused("expired"),
    ],
)
def test_one_field_names_the_error(error: PhoenixError) -> None:
    assert isinstance(error.code, str) and error.code
    assert str(error) == error.message
    assert not hasattr(error, "reason") and not hasattr(error, "kind")


def test_every_error_of_ours_has_a_code() -> None:
    for name, cls in defined_exceptions().items():
        if issubclass(cls, PhoenixError):
            assert isinstance(cls.code, str) and cls.code, name


class _Gone(NotFound):
    """A new kind of missing thing: its status comes from its class."""


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ValidationFailed("bad"), 422),
        (NotFound("missing"), 404),
        (CodeNotFound(), 404),
        (_Gone("gone"), 404),
        (Conflict("clash"), 409),
        (Refused("expired"), 409),
        (Unauthenticated("who?", code="missing_credentials"), 401),
        (Forbidden("no", code="missing_scope"), 403),
        (TooManyFailedLookups("slow down", retry_after=1), 429),
        (DomainError("refused"), 400),
    ],
)
def test_the_status_follows_the_class(error: DomainError, status: int) -> None:
    assert status_of(error) == status


async def test_a_contended_write_answers_503_with_retry_after_not_500() -> None:
    import httpx
    from fastapi import FastAPI

    from phoenix_coupons.api.errors import install_error_handlers
    from phoenix_coupons.domain.errors import Contended

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/busy")
    async def busy() -> None:
        raise Contended("could not count a hit on k")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/busy")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


async def test_an_api_key_s_bad_name_or_tenant_names_the_field() -> None:
    from datetime import UTC, datetime

    from phoenix_coupons.services.api_keys import ApiKeyService
    from phoenix_coupons.services.secrets_box import SecretBox

    service = ApiKeyService(
        None,  # type: ignore[arg-type]  # refused before any storage
        SecretBox("0123456789abcdef-secret"),
        lambda: datetime(2030, 1, 1, tzinfo=UTC),
        3600,
    )
    for name, tenant, field in (("  ", None, "name"), ("n", "", "tenant_id")):
        with pytest.raises(ValidationFailed) as caught:
            await service.create(name, "coupons:read", tenant)
        assert [d.field for d in caught.value.details] == [field]
