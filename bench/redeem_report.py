"""The figures of scenario (r) as text: the targets' table, CPU per call by process, the
flat check and the profiles."""

from bench.redeem_latency import Figures, Load

TARGET_REDEEM = 0.5  # x the reference's rate, 32 in flight
TARGET_VALIDATE = 0.8
TARGET_OPEN_P99_MS = 50.0
TARGET_FLAT = 1.5  # p50 at a size over p50 at the smallest


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _cpu(run: Load) -> str:
    parts = [f"{who} {run.cpu_ms_per_call(who):.2f}" for who in sorted(run.cpu_s)]
    return ", ".join([*parts, f"load generator {run.cpu_ms_per_call('load generator'):.2f}"])


def lines(f: Figures) -> list[str]:
    ref = f.reference
    out = [
        f"(r) the redeem path against the framework reference (API: {f.api_settings})",
        "  what                                   rate/s   ratio    p50 ms   p99 ms  target",
    ]

    def row(name: str, run: Load, ratio: str = "", target: str = "") -> None:
        out.append(
            f"  {name:<36} {run.rate:>8,.0f} {ratio:>7} {run.percentile(50):>9.1f} "
            f"{run.percentile(99):>8.1f}  {target}"
        )

    row("load generator alone (bare server)", f.loadgen_alone)
    row("reference: constant answer", f.hello)
    row("reference: find_one_and_update", ref, "1.00")
    redeem_ratio = f.redeem.rate / ref.rate
    row(
        "redeem, 32 in flight",
        f.redeem,
        f"{redeem_ratio:.2f}",
        f">= {TARGET_REDEEM} x ref: {_verdict(redeem_ratio >= TARGET_REDEEM)}",
    )
    validate_ratio = f.validate.rate / ref.rate
    row(
        "validate, 32 in flight",
        f.validate,
        f"{validate_ratio:.2f}",
        f">= {TARGET_VALIDATE} x ref: {_verdict(validate_ratio >= TARGET_VALIDATE)}",
    )
    p99 = f.open_redeem.percentile(99)
    ok = p99 <= TARGET_OPEN_P99_MS and not f.open_redeem.failed()
    row(f"redeem, open loop (offered {f.open_redeem.calls} calls)", f.open_redeem, "", "")
    out[-1] += f"p99 <= {TARGET_OPEN_P99_MS:.0f} ms, no error: {_verdict(ok)}"
    for run in (f.open_redeem, f.open_reference):
        if run.failed():
            out.append(f"    {run.name}: answers {run.statuses}")
    row("reference, open loop (same rate)", f.open_reference)
    for run in (f.open_redeem, f.open_reference):
        out.append(f"    slowest of {run.name} (due at: ms): {run.slowest(12)}")
    out += f.slow_commands
    for run in f.compared:
        row(run.name.removeprefix("API "), run, f"{run.rate / ref.rate:.2f}")
    out.append("  CPU ms per call, by process (server = the API or the reference):")
    for name, run in (
        ("load generator alone", f.loadgen_alone),
        ("reference: constant answer", f.hello),
        ("reference: find_one_and_update", ref),
        ("validate", f.validate),
        ("redeem", f.redeem),
        *((r.name.removeprefix("API "), r) for r in f.compared),
    ):
        out.append(f"    {name:<34} {_cpu(run)}")
    if f.round_trips is not None:
        out += f.round_trips.lines()
    out.append("  flat: redeems of one unlimited shared code with earlier redemptions")
    _, first = f.flat[0]
    for size, run in f.flat:
        ratio = run.percentile(50) / first.percentile(50)
        out.append(
            f"    {size:>7,} earlier  {run.rate:>6,.0f}/s  p50 {run.percentile(50):6.1f} ms "
            f" p99 {run.percentile(99):6.1f} ms  p50 x{ratio:.2f}  "
            f"<= {TARGET_FLAT}: {_verdict(ratio <= TARGET_FLAT)}  ({_cpu(run)})"
        )
    for who, summary in f.profiles.items():
        out.append(f"  profile of the {who} during a redeem run (py-spy):")
        out += summary.lines()
    return out
