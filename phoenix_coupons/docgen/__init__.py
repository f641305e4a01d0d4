"""The generated documentation pages (`make docs`): the configuration reference from the
settings, the walkthrough page from the script a test runs. Drift tests keep the committed
pages equal to what this renders (tests/unit/test_docs.py)."""

from pathlib import Path

# The repository's docs/ folder: a development tool, run from a clone (`pip install -e`).
DOCS = Path(__file__).resolve().parents[2] / "docs"
