"""The documentation stays true: the generated pages are what their sources generate (as the
contract files are, tests/unit/test_contract_drift.py), every setting is described, every 401
reason the code can give is listed, and no file cites a document outside the repository."""

import ast
import re
import subprocess
from pathlib import Path

import pytest

from phoenix_coupons.docgen import DOCS, configuration, walkthrough
from phoenix_coupons.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"settings without description=: {missing}"


def test_configuration_reference_matches_the_settings() -> None:
    path = DOCS / configuration.PAGE
    assert path.is_file() and path.read_text() == configuration.render(), (
        f"{path.relative_to(ROOT)} is out of date: run `make docs`"
    )


def test_configuration_reference_names_every_variable() -> None:
    text = configuration.render()
    for name in ("PHOENIX_MONGODB_TIMEOUT_MS", "PHOENIX_WORKER_ID", "PHOENIX_EXACTLY_ONCE"):
        assert f"`{name}`" in text
    # The two URLs go without the prefix; the prefixed spelling is accepted too.
    assert "| `MONGODB_URI`" in text and "`PHOENIX_MONGODB_URI`" in text
    assert "| `KAFKA_BOOTSTRAP_SERVERS`" in text


@pytest.mark.parametrize(("script", "page"), walkthrough.PAGES.items())
def test_walkthrough_pages_match_their_scripts(script: str, page: str) -> None:
    path = DOCS / page
    assert path.is_file() and path.read_text() == walkthrough.render(name=script), (
        f"{path.relative_to(ROOT)} is out of date: run `make docs`"
    )


def test_walkthrough_renders_prose_and_code_blocks() -> None:
    script = "#!/usr/bin/env bash\n#> # Title\n#>\n#> Text.\n\nset -e\necho hi\n\n#> More.\n"
    assert walkthrough.render(script).split("\n", 2)[2] == (
        "# Title\n\nText.\n\n```sh\nset -e\necho hi\n```\n\nMore.\n"
    )


def _auth_reasons() -> set[str]:
    """The `code=` of every `Unauthenticated(...)` the authentication code raises."""
    reasons: set[str] = set()
    for path in ("phoenix_coupons/services/api_keys.py", "phoenix_coupons/api/auth.py"):
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Unauthenticated"
            ):
                for keyword in node.keywords:
                    if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                        reasons.add(str(keyword.value.value))
    return reasons


def test_every_401_reason_is_documented() -> None:
    reasons = _auth_reasons()
    assert len(reasons) >= 10, f"found too few Unauthenticated reasons to trust the scan: {reasons}"
    page = (DOCS / "api.md").read_text()
    section = page.split("## Authentication", 1)[1].split("\n## ", 1)[0]
    missing = sorted(r for r in reasons if f"`{r}`" not in section)
    assert not missing, f"401 reasons missing from docs/api.md, Authentication: {missing}"


LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_pages_resolve() -> None:
    pages = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            name, _, anchor = target.partition("#")
            path = (page.parent / name) if name else page
            if not path.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and anchor not in {_slug(h) for h in HEADING.findall(path.read_text())}:
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


# A document outside the repository (the founding brief, the tracker's issues, a machine's
# folders) means nothing to a reader of a clone.
OUTSIDE = re.compile(r"(?-i:DESIGN\.md)|/work/|\bissue (?:item )?\d|\bissue item\b", re.IGNORECASE)
SKIPPED_DIRS = {".git", ".venv", ".phoenix", ".hypothesis", "__pycache__", "node_modules"}


def _repository_files() -> list[Path]:
    """The files of a clone: git's list (tracked, and new ones it does not ignore), else a walk
    of the tree without local state and caches."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        paths = [ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):
        paths = [
            path
            for path in ROOT.rglob("*")
            if not any(
                p in SKIPPED_DIRS or p.endswith(("_cache", ".egg-info"))
                for p in path.relative_to(ROOT).parts
            )
        ]
    return [path for path in paths if path.is_file() and path != Path(__file__)]


def test_no_file_cites_a_document_outside_the_repository() -> None:
    found = []
    for path in _repository_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
