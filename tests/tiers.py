"""The suite's three tiers, told by directory: `tests/unit` (no servers), `tests/integration`
(real wire servers) and `tests/e2e` (whole processes). `tests/conftest.py` marks each test with
its tier (`pytest -m unit`) and ends the run with a count per tier."""

from collections.abc import Mapping, Sequence

TIERS = ("unit", "integration", "e2e")
# The outcomes pytest's closing line counts, in its order.
OUTCOMES = ("failed", "passed", "skipped", "deselected", "xfailed", "xpassed", "error")


def tier_of(nodeid: str) -> str | None:
    """`tests/unit/test_x.py::test_y` -> `unit`; None outside the tiers' folders."""
    parts = nodeid.split("::", 1)[0].split("/")
    if len(parts) > 2 and parts[0] == "tests" and parts[1] in TIERS:
        return parts[1]
    return None


def summary_lines(stats: Mapping[str, Sequence[object]]) -> list[str]:
    """One line per tier that ran, e.g. `integration  210 passed, 2 skipped`, from the
    terminal reporter's `stats` (reports by outcome)."""
    counts: dict[str, dict[str, int]] = {tier: {} for tier in TIERS}
    for outcome in OUTCOMES:
        for report in stats.get(outcome, ()):
            if not getattr(report, "count_towards_summary", True):
                continue
            tier = tier_of(str(getattr(report, "nodeid", "")))
            if tier is not None:
                counts[tier][outcome] = counts[tier].get(outcome, 0) + 1
    width = max(len(tier) for tier in TIERS)
    return [
        f"{tier:<{width}}  "
        + ", ".join(f"{n} {'errors' if o == 'error' and n > 1 else o}" for o, n in found.items())
        for tier, found in counts.items()
        if found
    ]
