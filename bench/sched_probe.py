"""Whether a process could run: every 10 ms, the CPU time and the run-queue wait of the
watched processes (the sums over their threads of /proc/<pid>/task/*/schedstat: time on a
CPU, time runnable but waiting for one) and the machine's CPU use (/proc/stat), so that a
stall can be told apart: a process waiting on a command, or a process that was ready to run
and got no CPU (the other processes of a shared machine, or the VM's steal)."""

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

PERIOD_S = 0.01
_HZ = os.sysconf("SC_CLK_TCK")


def _schedstat(pid: int) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting), summed over the process's threads."""
    cpu = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (task / "schedstat").read_text().split()
            cpu += int(fields[0])
            wait += int(fields[1])
    return cpu, wait


def _machine() -> tuple[float, float]:
    """(CPU seconds busy, CPU seconds stolen) of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq) / _HZ, steal / _HZ


@dataclass(frozen=True)
class _Sample:
    at: float  # epoch s
    procs: dict[str, tuple[int, int]]
    busy_s: float
    steal_s: float


@dataclass(frozen=True)
class Window:
    """What happened between two samples."""

    seconds: float
    cpu_ms: dict[str, float]
    wait_ms: dict[str, float]  # runnable, no CPU
    busy_cores: float  # the whole machine
    others_cores: float  # the machine less the watched processes
    steal_cores: float

    def text(self) -> str:
        procs = ", ".join(
            f"{who} cpu {self.cpu_ms[who]:.0f} ms, waited for a CPU {self.wait_ms[who]:.0f} ms"
            for who in self.cpu_ms
        )
        return (
            f"{procs}; machine {self.busy_cores:.2f} cores busy, other processes "
            f"{self.others_cores:.2f}, steal {self.steal_cores:.2f}"
        )


@dataclass
class SchedProbe:
    pids: dict[str, int]  # name -> pid
    samples: list[_Sample] = field(default_factory=list)

    def _sample(self) -> None:
        procs: dict[str, tuple[int, int]] = {}
        for who, pid in self.pids.items():
            with contextlib.suppress(OSError):
                procs[who] = _schedstat(pid)
        busy, steal = _machine()
        self.samples.append(_Sample(time.time(), procs, busy, steal))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["SchedProbe"]:
        async def run() -> None:
            while True:
                self._sample()
                await asyncio.sleep(PERIOD_S)

        task = asyncio.create_task(run(), name="sched-probe")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._sample()

    def window(self, start: float, end: float) -> Window | None:
        """From the last sample at or before `start` to the first at or after `end`."""
        before = [s for s in self.samples if s.at <= start]
        after = [s for s in self.samples if s.at >= end]
        if not before or not after:
            return None
        a, b = before[-1], after[0]
        seconds = b.at - a.at
        who = [w for w in self.pids if w in a.procs and w in b.procs]
        cpu = {w: (b.procs[w][0] - a.procs[w][0]) / 1e6 for w in who}
        wait = {w: (b.procs[w][1] - a.procs[w][1]) / 1e6 for w in who}
        busy = b.busy_s - a.busy_s
        others = max(0.0, busy - sum(cpu.values()) / 1000)
        return Window(
            seconds, cpu, wait, busy / seconds, others / seconds, (b.steal_s - a.steal_s) / seconds
        )
