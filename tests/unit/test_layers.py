"""Dependencies point one way: schemas (the wire contracts) import nothing of ours; the
domain imports only schemas and itself, and no I/O library. That is what lets the domain read
the wire model of a definition without a cycle (docs/design.md, "The definition model")."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
IO_LIBRARIES = {"pymongo", "aiokafka", "fastapi", "starlette", "httpx", "structlog", "tenacity"}


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("schemas"), ids=lambda p: p.name)
def test_the_wire_contracts_import_nothing_of_ours(path: Path) -> None:
    ours = {n for n in imported(path) if n.split(".")[0] in ("phoenix_coupons", "consumers")}
    assert ours == set()


@pytest.mark.parametrize("path", modules("phoenix_coupons/domain"), ids=lambda p: p.name)
def test_the_domain_imports_only_schemas_itself_and_no_io(path: Path) -> None:
    names = imported(path)
    ours = {n for n in names if n.split(".")[0] in ("phoenix_coupons", "consumers")}
    assert all(n.startswith("phoenix_coupons.domain") for n in ours), ours
    assert {n.split(".")[0] for n in names} & IO_LIBRARIES == set()
