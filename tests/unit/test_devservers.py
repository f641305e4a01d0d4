"""`make run` (phoenix_coupons.devservers) leaves no `services.env` behind when it stops: a
file naming servers that are gone would send every later CLI command to dead ports. With
both URLs set, no server starts, so these run without any."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import POLL_S

DEADLINE_S = 20.0
DEVSERVERS = [sys.executable, "-m", "phoenix_coupons.devservers"]
# The command `make run` would run, standing in: says it started, then waits to be stopped.
CHILD = (
    "import pathlib, sys, time\n"
    "env = pathlib.Path(sys.argv[1]) / 'services.env'\n"
    "pathlib.Path(sys.argv[2]).write_text(env.read_text())\n"
    "if sys.argv[3] == 'wait':\n"
    "    try:\n"
    "        time.sleep(60)\n"
    "    except KeyboardInterrupt:\n"
    "        pass\n"
)
URLS = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "MONGODB_URI": "mongodb://127.0.0.1:9/?directConnection=true",
}


def start(data_dir: Path, seen: Path, mode: str) -> "subprocess.Popen[bytes]":
    env = {**os.environ, **URLS}
    child = [sys.executable, "-c", CHILD, str(data_dir), str(seen), mode]
    return subprocess.Popen(
        [*DEVSERVERS, "--data-dir", str(data_dir), "--", *child],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def wait_for(path: Path) -> None:
    end = time.monotonic() + DEADLINE_S
    while not path.is_file():
        assert time.monotonic() < end, f"{path} not written within {DEADLINE_S} s"
        time.sleep(POLL_S)


def test_services_env_is_removed_when_the_command_ends(tmp_path: Path) -> None:
    data, seen = tmp_path / "data", tmp_path / "seen"
    proc = start(data, seen, "exit")
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err.decode()
    assert "MONGODB_URI=mongodb://127.0.0.1:9/" in seen.read_text()  # the command saw it
    assert not (data / "services.env").exists()


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_services_env_is_removed_when_stopped(tmp_path: Path, stop: str) -> None:
    data, seen = tmp_path / "data", tmp_path / "seen"
    proc = start(data, seen, "wait")
    wait_for(seen)
    assert (data / "services.env").is_file()
    if stop == "ctrl-c":  # the terminal signals the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert not (data / "services.env").exists(), err.decode()


def test_a_services_env_another_run_wrote_is_left_alone(tmp_path: Path) -> None:
    """Two runs on one data folder: the file is the last one's, which only it removes."""
    data, seen = tmp_path / "data", tmp_path / "seen"
    proc = start(data, seen, "wait")
    wait_for(seen)
    newer = "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:10\nMONGODB_URI=mongodb://127.0.0.1:10/\n"
    (data / "services.env").write_text(newer)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=DEADLINE_S)
    assert (data / "services.env").read_text() == newer
