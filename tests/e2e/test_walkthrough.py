"""The documentation runs as written: the stack started as `make run` starts it
(`phoenix_coupons.devservers --data-dir ... -- phoenix-coupons run`, here on the session's
servers, with a database and topics of its own), then, as from a second terminal with only
the same `PHOENIX_DATA_DIR`, the README's first request and `docs/walkthrough.sh`, which
checks every status it documents. Ctrl-C then stops the stack and removes `services.env`."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from phoenix_coupons.devservers import FETCH_BACKOFF_ENV, free_port
from phoenix_coupons.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TOPICS = (
    "ACHIEVEMENTS",
    "STREAKS",
    "LEADERBOARDS",
    "COUPONS_ISSUED",
    "COUPONS_REDEEMED",
    "COUPONS_EXPIRY",
    "DLQ",
)
# The lifecycle walk waits for a reminder and an expiry: `make run` looks every 30 s, the
# test's stack every second (the walk says so).
EXPIRY_SWEEP_SECONDS = "1"
URLS = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")
# What `make run` runs.
DEVSERVERS = (sys.executable, "-m", "phoenix_coupons.devservers")
RUN = (sys.executable, "-m", "phoenix_coupons", "run")


@dataclass
class Stack:
    proc: "subprocess.Popen[bytes]"
    data_dir: Path
    port: int
    log: Path
    env: dict[str, str]  # a second terminal's: no URL, the same PHOENIX_DATA_DIR

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def own_settings(run: str, port: int) -> dict[str, str]:
    """A database and topics of this test's own, in both terminals."""
    names = {f"PHOENIX_TOPIC_{t}": f"walk.{run}.{t.lower()}" for t in TOPICS}
    return {
        **names,
        "PHOENIX_MONGODB_DATABASE": f"phoenix_walk_{run}",
        "PHOENIX_TOPIC_PARTITIONS": "1",
        "PHOENIX_EXPIRY_SWEEP_SECONDS": EXPIRY_SWEEP_SECONDS,
        # lifecycle.sh's flash coupon, shorter than the page's 40 s (its steps 1 s+ apart).
        "FLASH_VALID_FOR": "PT6S",
        "FLASH_REMIND_BEFORE": "PT4S",
        "PHOENIX_API_PORT": str(port),
    }


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    assert settings.kafka_bootstrap_servers and settings.mongodb_uri
    port = free_port()
    data_dir = tmp_path / "phoenix"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX") and k not in URLS}
    terminal = {
        **base,
        **own_settings(uuid.uuid4().hex[:8], port),
        "PHOENIX_DATA_DIR": str(data_dir),
    }
    # `make run` with the URLs set: devservers starts no server and writes them to services.env.
    first = {
        **terminal,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URI": settings.mongodb_uri,
        FETCH_BACKOFF_ENV: str(settings.kafka_empty_fetch_backoff_ms),
        "PHOENIX_MONGODB_TIMEOUT_MS": str(settings.mongodb_timeout_ms),
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*DEVSERVERS, "--data-dir", str(data_dir), "--", *RUN],
            env=first,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's foreground job: Ctrl-C signals the group
        )
    running = Stack(proc, data_dir, port, log, terminal)
    try:
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def bash(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`bash ARGS...` in the second terminal, at the repository root."""
    return subprocess.run(
        ["bash", *args],
        env={**stack.env, "PY": sys.executable},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )


def readme_first_request(port: int) -> str:
    """The README's block under "A first request", on this stack's port."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## A first request", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "127.0.0.1:8080" in block
    return block.replace("127.0.0.1:8080", f"127.0.0.1:{port}")


def test_the_readme_and_the_walkthroughs_run_as_written(stack: Stack) -> None:
    started = time.monotonic()
    for script, done in (
        ("walkthrough.sh", "walkthrough done"),
        ("lifecycle.sh", "lifecycle done"),
        ("campaign.sh", "campaign done"),
    ):
        walk = bash(stack, f"docs/{script}")
        assert walk.returncode == 0, (
            f"{script} failed ({walk.returncode}):\n{walk.stdout[-4000:]}\n"
            f"{walk.stderr[-4000:]}\n----- make run -----\n{stack.tail()}"
        )
        assert done in walk.stdout
    first = bash(stack, "-c", readme_first_request(stack.port))
    assert first.returncode == 0 and '"item_id"' in first.stdout, first.stdout + first.stderr
    took = time.monotonic() - started

    # Ctrl-C in the first terminal: the stack stops and takes services.env with it.
    assert (stack.data_dir / "services.env").is_file()
    os.killpg(stack.proc.pid, signal.SIGINT)
    assert stack.proc.wait(STOP_TIMEOUT_S) in (0, -signal.SIGINT, 130), stack.tail()
    assert not (stack.data_dir / "services.env").exists()
    print(f"walkthrough and first request: {took:.1f} s")
