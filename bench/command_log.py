"""Every MongoDB command a service process sends, timed: bench-only.

`python -m bench.command_log <out.jsonl> <phoenix-coupons arguments>` runs the service's CLI
with a pymongo command listener registered before any client exists; each finished command
becomes one JSON line: when it started (epoch s), its duration as the client saw it (ms: its
wait for the server included), the command, its collection, how many documents it carried
and the asyncio task that sent it (`request` for a request's, else the task's name:
`settler`, `outbox-relay`, `sweeper`...). `slow_commands` reads the file back and lines the
commands up with the open loop's slowest calls."""

import asyncio
import atexit
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pymongo import monitoring

from bench.sched_probe import SchedProbe

_BATCHES = ("documents", "updates", "deletes")  # the commands' document lists
EPISODES = 12  # the episodes printed: those with the longest commands


def _origin() -> str:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return "no loop"
    if task is None:
        return "no task"
    name = task.get_name()
    return "request" if name.startswith("Task-") else name


class _Recorder(monitoring.CommandListener):
    """One JSON line per finished command; buffered, flushed at exit."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._started: dict[tuple[object, int], dict[str, Any]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        cmd = event.command
        target = cmd.get(event.command_name)
        docs = sum(len(cmd[k]) for k in _BATCHES if isinstance(cmd.get(k), list))
        self._started[(event.connection_id, event.request_id)] = {
            "at": time.time(),
            "cmd": event.command_name,
            "coll": target if isinstance(target, str) else "",
            "docs": docs,
            "origin": _origin(),
        }

    def _done(
        self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent
    ) -> None:
        row = self._started.pop((event.connection_id, event.request_id), None)
        if row is None:
            return
        row["ms"] = round(event.duration_micros / 1000, 3)
        if isinstance(event, monitoring.CommandFailedEvent):
            row["failed"] = True
        self._out.write(json.dumps(row) + "\n")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._done(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._done(event)


@dataclass(frozen=True)
class Command:
    at: float  # epoch s
    ms: float
    cmd: str
    coll: str
    docs: int
    origin: str

    @property
    def what(self) -> str:
        docs = f" ({self.docs} docs)" if self.docs > 1 else ""
        return f"{self.cmd} {self.coll}{docs} [{self.origin}]"


def read(path: Path) -> list[Command]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        Command(r["at"], r["ms"], r["cmd"], r["coll"], r["docs"], r["origin"])
        for r in rows
        if "ms" in r
    ]


def between(commands: list[Command], start: float, end: float) -> list[Command]:
    return [c for c in commands if start <= c.at <= end]


def _episodes(commands: list[Command], slow_ms: float) -> list[list[Command]]:
    """The slow commands grouped: a command that starts before the group's last one ends
    joins it."""
    episodes: list[list[Command]] = []
    for c in sorted((c for c in commands if c.ms >= slow_ms), key=lambda c: c.at):
        if episodes and c.at <= max(e.at + e.ms / 1000 for e in episodes[-1]):
            episodes[-1].append(c)
        else:
            episodes.append([c])
    return episodes


def slow_lines(
    commands: list[Command],
    t0: float,
    series: list[tuple[float, float]],
    slow_ms: float,
    probe: SchedProbe | None = None,
) -> list[str]:
    """The commands that took `slow_ms` or more (client side: the server's time and the
    waits), grouped into episodes (overlapping commands), each at its time from `t0` (the
    open loop's first due time) with the open loop's calls due then and, from `probe`, what
    the processes did meanwhile (CPU, and time runnable without a CPU); then the background
    commands of the window by kind."""
    episodes = _episodes(commands, slow_ms)
    out: list[str] = []
    if probe is not None and series:
        whole = probe.window(t0, t0 + max(due for due, _ in series))
        if whole is not None:
            out.append(f"    the whole open loop: {whole.text()}")
    shown = sorted(episodes, key=lambda ep: -max(c.ms for c in ep))[:EPISODES]
    out.append(
        f"    {len(episodes)} episodes of slow commands; the {len(shown)} with the longest, "
        "in time order:"
    )
    for ep in sorted(shown, key=lambda ep: ep[0].at):
        start, end = ep[0].at, max(c.at + c.ms / 1000 for c in ep)
        calls = [ms for due, ms in series if start - t0 - 0.5 <= due <= end - t0]
        kinds: dict[str, int] = {}
        for c in ep:
            kinds[c.what] = kinds.get(c.what, 0) + 1
        listed = ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        out.append(
            f"    {start - t0:6.2f}-{end - t0:6.2f} s: {len(ep)} slow commands (longest "
            f"{max(c.ms for c in ep):.0f} ms), first {ep[0].what} {ep[0].ms:.0f} ms; calls due "
            f"then: {len(calls)}, slowest {max(calls, default=0.0):.0f} ms"
        )
        out.append(f"        {listed}")
        seen = probe.window(start, end) if probe is not None else None
        if seen is not None:
            out.append(f"        meanwhile: {seen.text()}")
    background: dict[str, list[float]] = {}
    for c in commands:
        if c.origin != "request":
            background.setdefault(c.what, []).append(c.ms)
    for what, times in sorted(background.items()):
        out.append(
            f"    background {what}: {len(times)} commands, max {max(times):.0f} ms, "
            f"total {sum(times):.0f} ms"
        )
    return out


def main(argv: list[str]) -> int:
    out_path, rest = Path(argv[0]), argv[1:]
    out = out_path.open("a", buffering=1 << 16)
    atexit.register(out.close)
    monitoring.register(_Recorder(out))  # before the service makes its client
    from phoenix_coupons.cli import main as service_main

    return service_main(rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
