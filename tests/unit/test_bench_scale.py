"""The scale scenario's pure parts (bench/scale_report.py): p50, ratios to the smallest
size, the verdict against the target and the tables. No timing here."""

import math

from bench.scale_report import ScaleFigures, markdown, ratio, table, verdict


def figures() -> ScaleFigures:
    f = ScaleFigures(sizes=[0, 10_000, 100_000], stored={0: 112, 10_000: 10_112})
    f.add("redeem", 0, [12.0, 10.0, 11.0])
    f.add("redeem", 10_000, [13.0, 11.0, 12.0])
    f.add("redeem", 100_000, [20.0, 100.0, 30.0])
    return f


def test_the_p50_of_each_size_and_its_ratio_to_the_smallest() -> None:
    f = figures()
    assert f.p50("redeem", 0) == 11.0
    assert f.p50("redeem", 100_000) == 30.0
    assert f.ratio("redeem", 10_000) == 12.0 / 11.0
    assert f.ratio("redeem", 100_000) == 30.0 / 11.0


def test_a_ratio_without_a_base_is_not_a_number() -> None:
    assert math.isnan(ratio(5.0, 0.0))
    assert math.isnan(ratio(5.0, float("nan")))
    assert math.isnan(ScaleFigures(sizes=[0, 10]).ratio("wallet_page", 10))


def test_the_target_is_met_only_when_every_ratio_is_within_it() -> None:
    assert verdict([1.0, 1.5]) == "met"
    assert verdict([1.0, 1.51]) == "MISSED"
    assert verdict([float("nan")]) == "MISSED"
    assert verdict([]) == "MISSED"


def test_the_table_has_a_row_per_operation_measured_with_both_ratios() -> None:
    lines = table(figures())
    header = next(line for line in lines if line.startswith("operation"))
    assert "10,000 / 0" in header and "100,000 / 0" in header
    (row,) = [line for line in lines if line.startswith("redeem")]
    assert row.split()[-5:] == ["1.09", "2.73", "<=", "1.5", "MISSED"]
    assert lines[-1] == "coupons stored: 112, 10,112, 0"


def test_the_markdown_table_holds_the_same_cells() -> None:
    md = markdown(figures())
    assert md[0].startswith("| operation (p50) | at 0 | at 10,000 | at 100,000 |")
    assert md[1] == "|---|---|---|---|---|---|---|---|"
    assert (
        md[2]
        == "| redeem (code stored last) (ms) | 11.0 | 12.0 | 30.0 | 1.09 | 2.73 | <= 1.5 | MISSED |"
    )
    assert len(md) == 3


def test_a_reference_row_has_no_target() -> None:
    f = figures()
    f.add("idle_without_relay", 0, [2.0])
    f.add("idle_without_relay", 10_000, [2.0])
    f.add("idle_without_relay", 100_000, [3.0])
    (row,) = [line for line in markdown(f) if "relay stopped" in line]
    assert row.endswith("| 1.00 | 1.50 | (none) |  |")


def test_the_worker_rows_lead_and_the_id_look_up_is_a_reference() -> None:
    f = figures()
    for op, values in (("worker_event", [1.0, 1.2, 1.1]), ("by_id", [1.0, 2.0, 1.0])):
        for size, v in zip(f.sizes, values, strict=True):
            f.add(op, size, [v])
    rows = markdown(f)[2:]
    assert rows[0].startswith("| worker, per event (rounds of 500) (ms) | 1.0 | 1.2 | 1.1 |")
    assert rows[0].endswith("| <= 1.5 | met |")
    (ref,) = [r for r in rows if "a coupon by `_id`" in r]
    assert ref.endswith("| 2.00 | 1.00 | (none) |  |")


def test_another_process_s_cpu_is_read_finer_than_clock_ticks() -> None:
    import os
    import time

    from bench.scale import _cpu_seconds

    before = _cpu_seconds(os.getpid())
    deadline = time.perf_counter() + 0.003
    while time.perf_counter() < deadline:  # 3 ms of CPU: under one 10 ms tick
        pass
    # The kernel adds a running thread's time up when it leaves the CPU (or at a tick):
    # sleeping makes the reading whole, as it is for the idle processes the bench reads.
    time.sleep(0.005)
    spent = _cpu_seconds(os.getpid()) - before
    assert 0.002 < spent < 0.5
