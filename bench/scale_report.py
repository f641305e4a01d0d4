"""The scale scenario's figures and their table (pure: no servers), apart so a unit test
can check them: each operation's p50 at each store size, and its ratio to the p50 at the
smallest size (target: at most `TARGET_RATIO`)."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.latency import percentile

TARGET_RATIO = 1.5

# The operations measured at each size, in the table's order: (key, label, unit).
OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("worker_event", "worker, per event (rounds of 500)", "ms"),
    ("redelivery_lookup", "redelivery look-up of 500 events", "ms"),
    ("sweeps", "sweeps, one pass, nothing due", "ms"),
    ("expiry_pass", "expiry scheduler pass, nothing due", "ms"),
    ("expiry_redeemed", "expiry: redeemed? of 100 coupons (a redemption per coupon)", "ms"),
    ("redeem", "redeem (code stored last)", "ms"),
    ("validate", "validate (code stored last)", "ms"),
    ("generate", "generate 100 codes", "ms"),
    ("definition_page", "page of a 100-code definition", "ms"),
    ("wallet_page", "page of a 1-coupon wallet", "ms"),
    ("by_id", "    reference: a coupon by `_id`", "ms"),
    ("relay_idle", "relay idle, CPU ms per s", "ms/s"),
    ("idle_without_relay", "    reference: relay stopped", "ms/s"),
)
# Rows shown for reference, without a target.
REFERENCES = {"by_id", "idle_without_relay"}


@dataclass
class ScaleFigures:
    """`samples[op][size]`: the samples of `op` at store size `size` (sizes: the targets
    asked; `stored[size]`: coupons actually stored while measuring at that size)."""

    sizes: list[int]
    stored: dict[int, int] = field(default_factory=dict)
    samples: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    def add(self, op: str, size: int, values: Sequence[float]) -> None:
        self.samples.setdefault(op, {})[size] = list(values)

    def p50(self, op: str, size: int) -> float:
        return percentile(self.samples.get(op, {}).get(size, []), 50)

    def ratio(self, op: str, size: int) -> float:
        """p50 at `size` over p50 at the smallest size (nan when either is missing or the
        base is 0)."""
        return ratio(self.p50(op, size), self.p50(op, self.sizes[0]))


def ratio(value: float, base: float) -> float:
    if base != base or value != value or base <= 0:  # nan or nothing to divide by
        return float("nan")
    return value / base


def verdict(ratios: Sequence[float], target: float = TARGET_RATIO) -> str:
    """`met` when every ratio is at most the target; a missing ratio (nan) is not met."""
    return "met" if ratios and all(r <= target for r in ratios) else "MISSED"


def _size(n: int) -> str:
    return f"{n:,}"


def _num(x: float) -> str:
    if x != x:
        return "-"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def cells(figures: ScaleFigures, target: float = TARGET_RATIO) -> list[list[str]]:
    """The header, then one row per operation measured: the p50 at each size, the ratio of
    each larger size to the smallest, the target and the verdict (every ratio <= target)."""
    base, *larger = figures.sizes
    rows = [
        [
            "operation (p50)",
            *[f"at {_size(s)}" for s in figures.sizes],
            *[f"{_size(s)} / {_size(base)}" for s in larger],
            "target",
            "result",
        ]
    ]
    for op, label, unit in OPERATIONS:
        if op not in figures.samples:
            continue
        ratios = [figures.ratio(op, s) for s in larger]
        reference = op in REFERENCES
        rows.append(
            [
                label if unit == "ms/s" else f"{label} ({unit})",
                *[_num(figures.p50(op, s)) for s in figures.sizes],
                *[f"{r:.2f}" if r == r else "-" for r in ratios],
                "(none)" if reference else f"<= {target}",
                "" if reference else verdict(ratios, target),
            ]
        )
    return rows


def table(figures: ScaleFigures, target: float = TARGET_RATIO) -> list[str]:
    """`cells` aligned in columns, then the coupons stored at each size."""
    rows = cells(figures, target)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
        ).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    stored = ", ".join(_size(figures.stored.get(s, 0)) for s in figures.sizes)
    return [
        rule,
        line(rows[0]),
        rule,
        *[line(r) for r in rows[1:]],
        rule,
        f"coupons stored: {stored}",
    ]


def markdown(figures: ScaleFigures, target: float = TARGET_RATIO) -> list[str]:
    """`cells` as a Markdown table (for BENCHMARKS.md)."""
    head, *body = cells(figures, target)
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join([row[0].strip(), *row[1:]]) + " |" for row in body],
    ]
