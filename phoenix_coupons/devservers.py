"""Embedded Kafka (noida-db) and MongoDB (nx-27017) for machines without Docker.

Test and development only (both come with the `test` extra). Starts each server on a free
port, waits until it answers on its wire protocol, and stops it by PID on exit, even after
a failure. A set `KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URI` wins: that server is not started.
With `--data-dir`, the addresses are in `<data dir>/services.env` while the command runs.

    python -m phoenix_coupons.devservers --data-dir .phoenix -- phoenix-coupons run
    python -m phoenix_coupons.devservers --temp -- pytest
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 60.0


FETCH_BACKOFF_ENV = "PHOENIX_KAFKA_EMPTY_FETCH_BACKOFF_MS"
EMBEDDED_FETCH_BACKOFF_MS = "5"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _noida_binary() -> str:
    import noida_db  # imported here: a test extra, absent in production images

    return str(Path(noida_db.__file__).parent / "noida-db")


def _nx_binary() -> str:
    found = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
    if not Path(found).exists():
        raise RuntimeError("nx-27017 is not installed: pip install -e '.[test]'")
    return found


@dataclass
class EmbeddedServers:
    """Context manager over the embedded servers; `env` holds the URLs to use."""

    data_dir: Path
    start_kafka: bool = True
    start_mongodb: bool = True
    env: dict[str, str] = field(default_factory=dict)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> EmbeddedServers:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> dict[str, str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.start_kafka:
            port = free_port()
            kdir = self.data_dir / "kafka"
            kdir.mkdir(exist_ok=True)
            self._spawn(
                [
                    _noida_binary(),
                    "start",
                    "--data-dir",
                    str(kdir),
                    "--host",
                    "127.0.0.1",
                    "--only",
                    "kafka",
                    "--kafka-port",
                    str(port),
                ],
                self.data_dir / "kafka.log",
            )
            self.env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
            # noida-db answers an empty fetch at once (Kafka holds it): without a pause, idle
            # consumers spin (phoenix_coupons/adapters/aiokafka_compat.py).
            self.env.setdefault(
                FETCH_BACKOFF_ENV, os.environ.get(FETCH_BACKOFF_ENV, EMBEDDED_FETCH_BACKOFF_MS)
            )
        if self.start_mongodb:
            port = free_port()
            mdir = self.data_dir / "mongodb"
            mdir.mkdir(exist_ok=True)
            self._spawn(
                [
                    _nx_binary(),
                    "--data-dir",
                    str(mdir),
                    "--host",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "--log-file",
                    str(self.data_dir / "mongodb.log"),
                    "--pid-file",
                    str(self.data_dir / "mongodb.pid"),
                ],
                self.data_dir / "mongodb.out",
            )
            self.env["MONGODB_URI"] = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        deadline = time.monotonic() + START_TIMEOUT_S
        if self.start_kafka:
            _wait_kafka(self.env["KAFKA_BOOTSTRAP_SERVERS"], deadline, self._procs)
        if self.start_mongodb:
            _wait_mongodb(self.env["MONGODB_URI"], deadline, self._procs)
        return self.env

    def _spawn(self, argv: list[str], log: Path) -> None:
        with log.open("ab") as out:
            # Own session: a Ctrl-C in the terminal reaches us, and we stop the servers in order.
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._procs.append(proc)

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5)
        self._procs.clear()


def _check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(
                f"embedded server exited early ({proc.args!r}, code {proc.returncode})"
            )


def _wait_kafka(bootstrap: str, deadline: float, procs: list[subprocess.Popen[bytes]]) -> None:
    """Answered when a metadata request succeeds (the port alone can open before that)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    _poll(lambda: asyncio.run(probe()), deadline, procs, "Kafka", bootstrap)


def _wait_mongodb(uri: str, deadline: float, procs: list[subprocess.Popen[bytes]]) -> None:
    from pymongo import MongoClient

    def probe() -> None:
        client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=1000)
        try:
            client.admin.command("ping")
        finally:
            client.close()

    _poll(probe, deadline, procs, "MongoDB", uri)


def _poll(
    probe: object, deadline: float, procs: list[subprocess.Popen[bytes]], name: str, where: str
) -> None:
    assert callable(probe)
    last: Exception | None = None
    while time.monotonic() < deadline:
        _check_alive(procs)
        try:
            probe()
            return
        except Exception as exc:  # still starting
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"embedded {name} at {where} did not answer in time: {last}")


def write_services_env(path: Path, env: dict[str, str]) -> str:
    """Write the servers' addresses for CLI commands in other terminals; returns the text."""
    keys = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI", FETCH_BACKOFF_ENV)
    text = "\n".join(f"{key}={env[key]}" for key in keys if key in env) + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return text


def remove_services_env(path: Path, written: str) -> None:
    """Once the servers are gone the file would send CLI commands to dead ports. A file that
    another run wrote meanwhile (same data folder) is that run's, and stays."""
    with contextlib.suppress(OSError):
        if path.read_text() == written:
            path.unlink()


def run_with_servers(command: list[str], data_dir: Path | None) -> int:
    """Start what is not configured, run `command` with the URLs in its environment, and stop
    the servers when it ends. `data_dir` None: a throwaway folder (tests)."""
    temp = tempfile.TemporaryDirectory(prefix="phoenix-servers-") if data_dir is None else None
    root = Path(temp.name) if temp else Path(data_dir)  # type: ignore[arg-type]
    servers = EmbeddedServers(
        root,
        start_kafka=not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        start_mongodb=not os.environ.get("MONGODB_URI"),
    )
    services_env, written = root / "services.env", None
    try:
        with servers:
            env = {**os.environ, **servers.env}
            if data_dir is not None:
                written = write_services_env(services_env, env)
                env["PHOENIX_DATA_DIR"] = str(root)
            print(
                "embedded servers: "
                + (" ".join(f"{k}={v}" for k, v in servers.env.items()) or "none (URLs set)"),
                file=sys.stderr,
                flush=True,
            )
            child = subprocess.Popen(command, env=env)
            # Forward SIGTERM; Ctrl-C already reaches the child through the terminal.
            signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
            while True:
                try:
                    return child.wait()
                except KeyboardInterrupt:
                    continue  # let the child finish its own shutdown, then stop the servers
    finally:
        if written is not None:
            remove_services_env(services_env, written)
        if temp:
            temp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoenix_coupons.devservers")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", type=Path, help="keep data and services.env here")
    where.add_argument("--temp", action="store_true", help="use a throwaway folder")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    return run_with_servers(command, None if args.temp else args.data_dir)


if __name__ == "__main__":
    raise SystemExit(main())
