"""`make bench`: the event worker against raw baselines, on the same servers in one run.

    python -m phoenix_coupons.devservers --temp -- .venv/bin/python -m bench [--events N]

(a) non-matching events through the real worker vs a plain aiokafka consumer (target >= 0.8);
(b) matching events (one coupon each) vs consume + insert_many + produce (target >= 0.7);
(c) end-to-end latency at 200 events/s, event produced -> `coupon.issued` consumed
    (target p99 <= 100 ms);
(d) redemption over HTTP at a fixed concurrency vs as many raw conditional
    find_one_and_update calls (reported: redeems/s, p99), and as many reserve + confirm
    pairs through the same API process (reported: pairs/s, p99 of a pair);
(r) the redeem path over HTTP from a load generator in its own process, against the
    framework reference (the API's server settings, one find_one_and_update a call): redeem
    and validate at a fixed concurrency, an open loop, flat with earlier redemptions, and
    py-spy profiles with --profile-dir (bench/redeem_latency.py);
(export) a definition's codes exported as CSV over HTTP vs a raw cursor read of the same
    documents (target >= 0.5), with the API process's peak resident memory;
(jobs) a generation job of 100,000 unassigned codes (--job-codes) submitted over HTTP and
    run by a `phoenix-coupons jobs` process vs a raw insert_many of the same documents (each
    code's coupon and its code registry claim) into collections with the same indexes
    (target >= 0.7; the coupons alone beside), with the runner's resident memory
    sampled throughout (target < 300 MB), then the job's codes exported over HTTP vs a raw
    cursor read of them (target >= 0.5; bench/jobs.py);
(scale) the hot paths' p50 with 0, 10,000 and 100,000 coupons stored, each against its
    value at 0 (target <= 1.5; bench/scale.py).
Throughput runs alternate baseline and worker so that noise hits both; the medians are
compared. Exit status 1 only when a run fails (a missed target prints MISSED).
"""

import argparse
import asyncio
import importlib.metadata
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from bench import redeem_report, scale_report
from bench.common import BenchError, Servers, now, produce_inputs, scenario_settings
from bench.export import export_run
from bench.jobs import job_bench, rss_line
from bench.latency import STAGES, LatencyRun, latency_run, percentile
from bench.redeem_latency import Plan as RedeemPlan
from bench.redeem_latency import redeem_latency_run
from bench.redemption import redemption_runs
from bench.scale import Plan, scale_run
from bench.scale_report import ScaleFigures
from bench.throughput import Run, raw_consume, raw_pipeline, worker_run
from phoenix_coupons.adapters.aiokafka_compat import install_fetch_pause
from phoenix_coupons.logging import configure_logging
from phoenix_coupons.runtime import tune_gc
from phoenix_coupons.settings import Settings

TARGET_NONMATCHING = 0.8
TARGET_MATCHING = 0.7
TARGET_P99_MS = 100.0
TARGET_EXPORT = 0.5
TARGET_JOB = 0.7
TARGET_JOB_RSS_MB = 300.0
SCENARIOS = ("a", "b", "c", "d", "r", "export", "jobs", "scale")


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if len(sizes) < 2 or sizes != sorted(set(sizes)) or sizes[0] < 0:
        raise argparse.ArgumentTypeError("two or more growing sizes, e.g. 0,10000,100000")
    return sizes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=50_000, help="events per throughput scenario")
    p.add_argument("--runs-a", type=int, default=5, help="run pairs of scenario (a)")
    p.add_argument("--runs-b", type=int, default=2, help="run pairs of scenario (b)")
    p.add_argument("--latency-runs", type=int, default=2)
    p.add_argument("--latency-seconds", type=float, default=15.0)
    p.add_argument("--rate", type=float, default=200.0, help="events/s of scenario (c)")
    p.add_argument("--redeems", type=int, default=2_000, help="calls of scenario (d)")
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight in (d)")
    p.add_argument("--export-codes", type=int, default=100_000, help="codes of the export scenario")
    p.add_argument("--export-runs", type=int, default=2, help="run pairs of the export scenario")
    p.add_argument(
        "--job-codes", type=int, default=100_000, help="codes of the generation job scenario"
    )
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=[0, 10_000, 100_000],
        help="coupons stored at each step of the scale scenario (comma-separated, growing)",
    )
    p.add_argument("--scale-reps", type=int, default=9, help="timed calls per operation and size")
    p.add_argument(
        "--scale-budget",
        type=float,
        default=20.0,
        help="seconds per operation and size after which fewer calls are made (3 at least)",
    )
    p.add_argument("--relay-windows", type=int, default=3, help="relay idle CPU windows a size")
    p.add_argument("--relay-seconds", type=float, default=3.0, help="seconds of each window")
    p.add_argument("--open-rate", type=float, default=100.0, help="(r) open loop: redeems/s")
    p.add_argument("--open-seconds", type=float, default=10.0, help="(r) open loop duration")
    p.add_argument(
        "--flat-sizes",
        type=_sizes,
        default=[0, 10_000, 100_000],
        help="(r) earlier redemptions of the code at each step (comma-separated, growing)",
    )
    p.add_argument("--flat-calls", type=int, default=1000, help="(r) redeems at each flat size")
    p.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="(r) also sample the API process and the load generator with py-spy (raw "
        "stacks written here) and print the breakdown",
    )
    p.add_argument(
        "--command-log",
        type=float,
        default=None,
        metavar="MS",
        help="(r) time every MongoDB command of the API process (bench/command_log.py) and "
        "print those of MS ms or more during the open loop, grouped into episodes",
    )
    p.add_argument(
        "--no-compare",
        action="store_true",
        help="(r) skip the API process with the standard event loop and h11",
    )
    p.add_argument(
        "--only", choices=[*SCENARIOS], action="append", help="run only these (repeatable)"
    )
    return p


def say(text: str = "") -> None:
    print(text, flush=True)


def _machine(servers: Servers) -> list[tuple[str, str]]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kb = int(info.readline().split()[1])

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return [
        ("cpus (nproc)", str(os.cpu_count())),
        ("cpu model", cpu),
        ("memory", f"{mem_kb / 1024 / 1024:.1f} GiB"),
        ("os", f"{platform.system()} {platform.release()}"),
        ("python", platform.python_version()),
        ("kafka", f"noida-db {version('noida-db')} (embedded) at {servers.kafka}"),
        ("mongodb", f"nx-27017 {version('nx-27017')} (embedded) at {servers.mongodb}"),
        ("clients", f"aiokafka {version('aiokafka')}, pymongo {version('pymongo')}"),
    ]


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def _alternate(
    runs: int, baseline: Callable[[], Awaitable[Run]], worker: Callable[[], Awaitable[Run]]
) -> tuple[list[Run], list[Run]]:
    base: list[Run] = []
    work: list[Run] = []
    for i in range(runs):
        for side, fn in (("baseline", baseline), ("worker", worker)):
            run = await fn()
            (base if side == "baseline" else work).append(run)
            say(
                f"  run {i + 1}/{runs} {run.name:<26} {run.events:>7} events "
                f"in {run.seconds:6.2f} s = {run.rate:>9,.0f} events/s"
            )
    return base, work


def _median_rate(runs: list[Run]) -> float:
    return statistics.median(r.rate for r in runs)


Row = tuple[str, str, str, str, str, str, str, str]
HEADER: Row = ("scenario", "baseline", "its rate", "worker", "ratio", "per run", "target", "result")


def _throughput_row(
    scenario: str, baseline: str, base: list[Run], work: list[Run], target: float
) -> Row:
    b, w = _median_rate(base), _median_rate(work)
    ratio = w / b
    pairs = " ".join(f"{x.rate / y.rate:.2f}" for x, y in zip(work, base, strict=True))
    return (
        scenario,
        baseline,
        f"{b:,.0f} ev/s",
        f"{w:,.0f} ev/s",
        f"{ratio:.2f}",
        pairs,
        f">= {target}",
        _verdict(ratio >= target),
    )


def _reference_row(baseline: str, reference: Run, work: list[Run]) -> Row:
    """A baseline measured once for comparison, with no target."""
    say(f"  reference: {reference.name} = {reference.rate:,.0f} events/s")
    w = _median_rate(work)
    return (
        "    reference",
        baseline,
        f"{reference.rate:,.0f} ev/s",
        f"{w:,.0f} ev/s",
        f"{w / reference.rate:.2f}",
        "",
        "(none)",
        "",
    )


async def scenario_a(servers: Servers, args: argparse.Namespace) -> list[Row]:
    say(f"\n(a) {args.events:,} non-matching events: worker vs raw aiokafka consumer")
    t = now()
    inputs = await produce_inputs(scenario_settings(servers, "a-in"), args.events, False)
    say(f"  input produced in {now() - t:.1f} s (not timed) to {', '.join(inputs.topics)}")
    base, work = await _alternate(
        args.runs_a,
        lambda: raw_consume(servers, inputs),
        lambda: worker_run(servers, inputs, False),
    )
    parsed = await raw_consume(servers, inputs, parse=True)
    return [
        _throughput_row(
            "(a) non-matching", "raw aiokafka consumer", base, work, TARGET_NONMATCHING
        ),
        _reference_row("raw consumer + json.loads", parsed, work),
    ]


async def scenario_b(servers: Servers, args: argparse.Namespace) -> list[Row]:
    say(f"\n(b) {args.events:,} matching events (one coupon each): worker vs raw pipeline")
    t = now()
    inputs = await produce_inputs(scenario_settings(servers, "b-in"), args.events, True)
    say(f"  input produced in {now() - t:.1f} s (not timed) to {', '.join(inputs.topics)}")
    base, work = await _alternate(
        args.runs_b,
        lambda: raw_pipeline(servers, inputs),
        lambda: worker_run(servers, inputs, True),
    )
    indexed = await raw_pipeline(servers, inputs, indexed=True)
    return [
        _throughput_row("(b) matching", "getmany+insert_many+produce", base, work, TARGET_MATCHING),
        _reference_row("the same, coupon indexes", indexed, work),
    ]


async def scenario_c(servers: Servers, args: argparse.Namespace) -> list[Row]:
    say(
        f"\n(c) end-to-end latency: {args.rate:.0f} matching events/s for "
        f"{args.latency_seconds:.0f} s to a running worker, x{args.latency_runs}"
    )
    runs: list[LatencyRun] = []
    for i in range(args.latency_runs):
        run = await latency_run(servers, args.rate, args.latency_seconds)
        runs.append(run)
        say(
            f"  run {i + 1}/{args.latency_runs} {run.events} events at {run.rate:.0f}/s: "
            f"p50 {run.percentile(50):.1f} ms, p90 {run.percentile(90):.1f} ms, "
            f"p99 {run.percentile(99):.1f} ms, max {max(run.latencies_ms):.1f} ms"
        )
        for name, values in run.stages_ms.items():
            say(
                f"      {name:<8} p50 {percentile(values, 50):6.1f} ms  "
                f"p99 {percentile(values, 99):6.1f} ms  {STAGES[name]}"
            )
    p50 = statistics.median(r.percentile(50) for r in runs)
    p99 = statistics.median(r.percentile(99) for r in runs)
    per_run = " ".join(f"{r.percentile(50):.0f}/{r.percentile(99):.0f}" for r in runs)
    return [
        (
            f"(c) latency @{args.rate:.0f}/s",
            "(p50 / p99, ms)",
            "",
            f"{p50:.1f} / {p99:.1f}",
            "",
            per_run,
            f"p99 <= {TARGET_P99_MS:.0f}",
            _verdict(p99 <= TARGET_P99_MS),
        )
    ]


async def scenario_d(servers: Servers, args: argparse.Namespace, log: Path) -> list[Row]:
    say(
        f"\n(d) redemption: {args.redeems:,} redeems over HTTP, {args.concurrency} in flight, "
        "vs as many conditional find_one_and_update calls; then as many reserve + confirm"
    )
    raw, api, holds = await redemption_runs(servers, args.redeems, args.concurrency, log)
    for run in (raw, api, holds):
        say(
            f"  {run.name:<26} {run.calls:>6} calls in {run.seconds:6.2f} s = "
            f"{run.rate:>8,.0f}/s  p50 {run.percentile(50):.1f} ms  "
            f"p99 {run.percentile(99):.1f} ms"
        )
    return [
        (
            "(d) redemption",
            "raw find_one_and_update",
            f"{raw.rate:,.0f} op/s",
            f"{api.rate:,.0f} op/s",
            f"{api.rate / raw.rate:.2f}",
            f"p99 {api.percentile(99):.0f} ms",
            "(reported)",
            "",
        ),
        (
            "    reserve+confirm",
            "raw find_one_and_update",
            f"{raw.rate:,.0f} op/s",
            f"{holds.rate:,.0f} op/s",
            f"{holds.rate / raw.rate:.2f}",
            f"p99 {holds.percentile(99):.0f} ms",
            "(reported)",
            "",
        ),
    ]


async def scenario_r(servers: Servers, args: argparse.Namespace, log: Path) -> list[str]:
    say(
        f"\n(r) the redeem path: {args.redeems:,} calls per run, {args.concurrency} in flight, "
        f"from a load generator process; open loop {args.open_rate:.0f}/s"
    )
    plan = RedeemPlan(
        calls=args.redeems,
        concurrency=args.concurrency,
        rate=args.open_rate,
        open_seconds=args.open_seconds,
        flat_sizes=tuple(args.flat_sizes),
        flat_calls=args.flat_calls,
        profile_dir=args.profile_dir,
        command_log_ms=args.command_log,
    )
    if args.no_compare:
        plan = replace(plan, compare_env=None)
    figures = await redeem_latency_run(servers, plan, log)
    return ["", *redeem_report.lines(figures)]


async def scenario_export(servers: Servers, args: argparse.Namespace, log: Path) -> list[Row]:
    say(
        f"\n(export) {args.export_codes:,} codes exported as CSV over HTTP vs a raw cursor read "
        "of the same documents"
    )
    f = await export_run(servers, args.export_codes, args.export_runs, log)
    ratio = f.export_rate / f.raw_rate
    say(f"  API process peak resident memory (VmHWM): {f.peak_rss_mb:.0f} MiB")
    per_run = " ".join(f"{r / e:.2f}" for r, e in zip(f.raw_s, f.export_s, strict=True))
    return [
        (
            "(export) codes CSV",
            "raw cursor read",
            f"{f.raw_rate:,.0f} doc/s",
            f"{f.export_rate:,.0f} row/s",
            f"{ratio:.2f}",
            per_run,
            f">= {TARGET_EXPORT}",
            _verdict(ratio >= TARGET_EXPORT),
        ),
        (
            "    API peak RSS",
            "",
            "",
            f"{f.peak_rss_mb:.0f} MiB",
            "",
            f"{f.bytes / 2**20:.1f} MiB body",
            "(reported)",
            "",
        ),
    ]


async def scenario_jobs(servers: Servers, args: argparse.Namespace, log: Path) -> list[Row]:
    say(
        f"\n(jobs) a generation job of {args.job_codes:,} codes over HTTP, run by "
        "`phoenix-coupons jobs`, vs a raw insert_many of the same documents"
    )
    f = await job_bench(servers, args.job_codes, log)
    # The job's documents are a coupon and its code's claim per code (the registry that keeps
    # codes unique on a sharded cluster): the baseline inserts both, raw. The coupons alone
    # are printed beside: 0.65 is their ceiling with two documents a code (BENCHMARKS.md).
    ratio = f.job_rate / f.baseline_rate
    say(f"  job {f.job_s:.1f} s ({f.job_rate:,.0f} codes/s); outbox drained {f.drained_s:.1f} s")
    say(f"  runner RSS (MiB, sampled every 0.25 s, 10 points + end): {rss_line(f.rss_mb)}")
    peak = max([mb for _, mb in f.rss_mb] + [f.peak_rss_mb])
    return [
        (
            "(jobs) generation job",
            "raw coupons + claims",
            f"{f.baseline_rate:,.0f} code/s",
            f"{f.job_rate:,.0f} code/s",
            f"{ratio:.2f}",
            f"drained {f.codes / f.drained_s:,.0f}/s",
            f">= {TARGET_JOB}",
            _verdict(ratio >= TARGET_JOB),
        ),
        (
            "    the coupons alone",
            "raw insert_many",
            f"{f.raw_rate:,.0f} doc/s",
            f"{f.job_rate:,.0f} code/s",
            f"{f.job_rate / f.raw_rate:.2f}",
            "",
            "(ceiling 0.65)",
            "",
        ),
        (
            "    runner peak RSS",
            "",
            "",
            f"{peak:.0f} MiB",
            "",
            "",
            f"< {TARGET_JOB_RSS_MB:.0f} MB",
            _verdict(peak * 2**20 < TARGET_JOB_RSS_MB * 10**6),
        ),
        (
            "    export of its codes",
            "raw cursor read",
            f"{f.codes / f.read_s:,.0f} doc/s",
            f"{f.codes / f.export_s:,.0f} row/s",
            f"{f.export_ratio:.2f}",
            "",
            f">= {TARGET_EXPORT}",
            _verdict(f.export_ratio >= TARGET_EXPORT),
        ),
    ]


async def scenario_scale(servers: Servers, args: argparse.Namespace) -> ScaleFigures:
    sizes = ", ".join(f"{s:,}" for s in args.sizes)
    say(f"\n(scale) the hot paths with {sizes} coupons stored")
    plan = Plan(
        args.sizes, args.scale_reps, args.scale_budget, args.relay_windows, args.relay_seconds
    )
    return await scale_run(servers, plan, say)


def _table(rows: list[Row]) -> list[str]:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    right = {2, 3, 4}

    def line(row: Row) -> str:
        cells = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return [rule, line(HEADER), rule, *[line(r) for r in rows], rule]


async def main(args: argparse.Namespace, log_file: Path) -> int:
    servers = Servers.from_env()
    # As `phoenix-coupons worker` does once started (the worker runs in this process).
    settings = Settings()
    tune_gc(settings.gc_threshold)
    # Baselines and worker alike (the embedded Kafka answers empty fetches at once).
    install_fetch_pause(settings.kafka_empty_fetch_backoff_ms)
    say("Phoenix Coupons benchmark")
    for name, value in _machine(servers):
        say(f"  {name:<13} {value}")
    say(f"  load average  {_load()} (at start)")
    say(f"  worker logs   {log_file}")
    started = time.monotonic()
    only = set(args.only or SCENARIOS)
    rows: list[Row] = []
    for key, scenario in (("a", scenario_a), ("b", scenario_b), ("c", scenario_c)):
        if key in only:
            rows += await scenario(servers, args)
    if "d" in only:
        rows += await scenario_d(servers, args, log_file)
    redeem_lines: list[str] = []
    if "r" in only:
        redeem_lines = await scenario_r(servers, args, log_file)
    if "export" in only:
        rows += await scenario_export(servers, args, log_file)
    if "jobs" in only:
        rows += await scenario_jobs(servers, args, log_file)
    figures = await scenario_scale(servers, args) if "scale" in only else None
    if rows:
        say(
            f"\nResults: {args.events:,} events per throughput scenario, medians of the runs "
            "(throughput: worker events/s over baseline events/s)"
        )
        for text in _table(rows):
            say(text)
    for text in redeem_lines:
        say(text)
    if figures is not None:
        say("\n(scale) p50 at each store size, and its ratio to the smallest")
        for text in [*scale_report.table(figures), "", *scale_report.markdown(figures)]:
            say(text)
    say(f"total {time.monotonic() - started:.0f} s; load average {_load()} (at end)")
    return 0


def run() -> int:
    args = _parser().parse_args()
    log_file = Path(
        os.environ.get("PHOENIX_BENCH_LOG")
        or Path(tempfile.gettempdir()) / f"phoenix-bench-{os.getpid()}.log"
    )
    with log_file.open("a") as logs:
        # The worker logs as in production (JSON lines, INFO), into a file: the output stays
        # readable and the cost of logging stays in the figures.
        configure_logging("INFO", logs)
        return asyncio.run(main(args, log_file))


if __name__ == "__main__":
    try:
        sys.exit(run())
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)
