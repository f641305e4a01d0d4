"""`make test` ends with a count per tier (unit, integration, e2e) before pytest's own line."""

from dataclasses import dataclass

from tests.tiers import summary_lines, tier_of


@dataclass
class Report:
    nodeid: str
    count_towards_summary: bool = True


def test_tier_of_a_test_is_its_folder() -> None:
    assert tier_of("tests/unit/test_codes.py::test_x") == "unit"
    assert tier_of("tests/integration/test_smoke.py::test_y[a/b]") == "integration"
    assert tier_of("tests/e2e/test_walkthrough.py") == "e2e"  # a collection error
    assert tier_of("tests/test_other.py::test_z") is None
    assert tier_of("tests/unit") is None


def test_summary_counts_each_tier_by_outcome() -> None:
    stats = {
        "passed": [Report(f"tests/unit/a.py::t{n}") for n in (1, 2)]
        + [Report("tests/e2e/b.py::t")],
        "skipped": [Report("tests/unit/a.py::t3")],
        "error": [Report("tests/e2e/c.py::t"), Report("tests/e2e/c.py::u")],
        "failed": [Report("tests/integration/d.py::t")],
        # Setup and teardown of a passed test land in "" and are not counted by pytest.
        "": [Report("tests/unit/a.py::t1")],
        "warnings": [object()],
    }
    assert summary_lines(stats) == [
        "unit         2 passed, 1 skipped",
        "integration  1 failed",
        "e2e          1 passed, 2 errors",
    ]


def test_reports_pytest_does_not_count_are_left_out() -> None:
    stats = {"passed": [Report("tests/unit/a.py::t", count_towards_summary=False)]}
    assert summary_lines(stats) == []
