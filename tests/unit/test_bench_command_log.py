"""The bench's command log read back (bench/command_log.py): slow commands grouped into
episodes and lined up with the open loop's calls and with what the processes did meanwhile
(bench/sched_probe.py). No timing here: synthetic commands and samples."""

from bench.command_log import Command, slow_lines
from bench.sched_probe import SchedProbe, _Sample

T0 = 1000.0


def cmd(at: float, ms: float, what: str = "find coupons", origin: str = "request") -> Command:
    name, coll = what.split()
    return Command(T0 + at, ms, name, coll, 1, origin)


def probe() -> SchedProbe:
    p = SchedProbe({"API": 1})
    # API: 20 ms on a CPU and 90 ms waiting for one between 1.0 and 1.2 s; the machine
    # 0.4 CPU s busy (2 cores) of which the API's 0.02: other processes 1.9 cores.
    p.samples = [
        _Sample(T0, {"API": (0, 0)}, 9.9, 0.0),
        _Sample(T0 + 1.0, {"API": (0, 0)}, 10.0, 0.0),
        _Sample(T0 + 1.2, {"API": (20_000_000, 90_000_000)}, 10.4, 0.0),
        _Sample(T0 + 2.0, {"API": (40_000_000, 95_000_000)}, 10.6, 0.0),
    ]
    return p


def test_overlapping_slow_commands_make_one_episode_with_what_the_processes_did() -> None:
    commands = [
        cmd(0.5, 3.0),
        cmd(1.00, 80.0, "find codes"),  # ends at 1.08
        cmd(1.05, 60.0),  # starts before it ends: the same episode
        cmd(1.07, 60.0, "update outbox", "outbox-relay"),  # ends at 1.13
        cmd(1.5, 70.0),  # a later one on its own
    ]
    series = [(0.9, 20.0), (1.0, 150.0), (1.05, 120.0), (1.5, 90.0), (1.9, 10.0)]
    out = slow_lines(commands, T0, series, 50.0, probe())
    assert out[0].startswith("    the whole open loop: API cpu 40 ms, waited for a CPU 95 ms")
    assert "2 episodes of slow commands" in out[1]
    first = out[2]
    assert "1.00-  1.13 s: 3 slow commands (longest 80 ms)" in first
    assert "first find codes [request] 80 ms" in first
    assert "slowest 150 ms" in first
    assert "1 x find codes [request]" in out[3] and "1 x update outbox [outbox-relay]" in out[3]
    assert out[4] == (
        "        meanwhile: API cpu 20 ms, waited for a CPU 90 ms; machine 2.00 cores busy, "
        "other processes 1.90, steal 0.00"
    )
    assert out[5].startswith("      1.50-  1.57 s: 1 slow commands")
    assert out[-1].startswith("    background update outbox [outbox-relay]: 1 commands, max 60 ms")


def test_without_samples_around_an_episode_nothing_is_claimed() -> None:
    p = probe()
    assert p.window(T0 - 0.5, T0 + 1.2) is None  # no sample before
    assert p.window(T0 + 1.0, T0 + 3.0) is None  # none after
    w = p.window(T0 + 1.0, T0 + 2.0)
    assert w is not None and w.cpu_ms == {"API": 40.0} and w.wait_ms == {"API": 95.0}
