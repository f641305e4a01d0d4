"""A CLI command whose MongoDB does not answer (say a `services.env` left by a `make run` that
was killed) says so in one line and exits non-zero within seconds: no 30 s wait, no
traceback. Port 9 (discard) has no MongoDB on this machine."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEAD_URI = "mongodb://127.0.0.1:9/?directConnection=true"
# The reachability check waits PHOENIX_MONGODB_PING_TIMEOUT_MS (2 s by default) for MongoDB.
WITHIN_S = 10.0


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "phoenix_coupons", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr, time.monotonic() - started


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PHOENIX_") and k not in ("MONGODB_URI", "KAFKA_BOOTSTRAP_SERVERS")
    }
    return {**env, "PHOENIX_DATA_DIR": str(data_dir), "PHOENIX_SECRET_KEY": "x" * 32}


@pytest.mark.parametrize(
    "args",
    [
        ("api-key", "list"),
        ("api-key", "create", "--name", "admin", "--scopes", "coupons:read"),
        ("api-key", "revoke", "2d23dbab-7e90-475e-8df3-02645f3dac43"),
    ],
    ids=["list", "create", "revoke"],
)
def test_a_stale_services_env_answers_one_line_quickly(tmp_path: Path, args: tuple[str]) -> None:
    (tmp_path / "services.env").write_text(
        f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9\nMONGODB_URI={DEAD_URI}\n"
    )
    code, err, took = run_cli(clean_env(tmp_path), *args)
    assert code != 0
    assert took < WITHIN_S, f"took {took:.1f} s"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: MongoDB at 127.0.0.1:9")
    assert str(tmp_path / "services.env") in lines[0]  # where the address came from
    assert "make run" in lines[0]


def test_an_unreachable_mongodb_uri_is_named_without_its_password(tmp_path: Path) -> None:
    env = {
        **clean_env(tmp_path),
        "MONGODB_URI": "mongodb://admin:s3cret@127.0.0.1:9/?directConnection=true",
    }
    code, err, took = run_cli(env, "api-key", "list")
    assert code != 0 and took < WITHIN_S
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "MONGODB_URI" in lines[0] and "127.0.0.1:9" in lines[0]
    assert "s3cret" not in err
