"""Which Kafka and MongoDB the test suite meets, decided in one place (`select`).

`PHOENIX_TEST_SERVERS`:
- `embedded` (the default): the pip-installed noida-db and nx-27017, on free ports;
- `containers`: `apache/kafka` (KRaft) and a `mongo` single-node replica set, the images of
  docker-compose.yml, started with testcontainers. Needs a Docker engine that answers; without
  one the run stops with the reason, it never falls back to the embedded servers;
- `external`: the servers of `KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URI` (both required).
Unset, both URLs set mean `external`, and one URL set starts the other server embedded.

`make test` runs `python -m tests.servers -- pytest ...`: the servers start once, before
pytest, and stop after it. A bare `pytest` gets the same choice from `tests/conftest.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from phoenix_coupons.devservers import FETCH_BACKOFF_ENV, EmbeddedServers, _wait_kafka

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

ENV = "PHOENIX_TEST_SERVERS"
MODES = ("embedded", "containers", "external")
URLS = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")

# The images of docker-compose.yml (a unit test keeps them equal).
KAFKA_IMAGE = "apache/kafka:3.9.1"
MONGO_IMAGE = "mongo:8.0"
CONTAINER_START_TIMEOUT_S = 120.0
DOCKER_PING_TIMEOUT_S = 10


class ServerSelectionError(Exception):
    """The requested servers cannot be had: the message says why and what to do."""


class DockerUnavailable(ServerSelectionError):
    pass


@dataclass(frozen=True)
class Selection:
    mode: str
    start_kafka: bool = False
    start_mongodb: bool = False


def select(env: Mapping[str, str]) -> Selection:
    """The servers the suite runs against, from the environment alone."""
    requested = env.get(ENV, "").strip().lower()
    given = [name for name in URLS if env.get(name)]
    if requested and requested not in MODES:
        raise ServerSelectionError(
            f"{ENV}={env[ENV]!r} is not one of {', '.join(MODES)} (unset: embedded, or "
            "external when both URLs are set)"
        )
    if requested == "external" or (not requested and len(given) == len(URLS)):
        missing = [name for name in URLS if name not in given]
        if missing:
            raise ServerSelectionError(
                f"{ENV}=external needs {' and '.join(missing)} set to the servers to use"
            )
        return Selection("external")
    if requested and given:
        raise ServerSelectionError(
            f"{ENV}={requested} starts its own servers, but {' and '.join(given)} set: unset "
            f"{' and '.join(given)}, or use {ENV}=external with both URLs"
        )
    mode = requested or "embedded"
    return Selection(
        mode,
        start_kafka="KAFKA_BOOTSTRAP_SERVERS" not in given,
        start_mongodb="MONGODB_URI" not in given,
    )


def require_docker() -> None:
    """Raise DockerUnavailable, with what to do, unless a Docker engine answers a ping (at the
    address testcontainers will use: DOCKER_HOST, ~/.testcontainers.properties or the docker
    context)."""
    from testcontainers.core.docker_client import DockerClient, get_docker_host

    where = get_docker_host() or "the default socket (unix:///var/run/docker.sock)"
    try:
        client = DockerClient(timeout=DOCKER_PING_TIMEOUT_S)
        client.client.ping()
        client.client.close()
    except Exception as exc:
        raise DockerUnavailable(
            f"{ENV}=containers needs a Docker engine, and none answers at {where}: {exc}. "
            f"Start Docker or point DOCKER_HOST at one, or run on the embedded servers "
            f"({ENV}=embedded, the default)."
        ) from exc


def check(selection: Selection) -> None:
    """What can be checked before anything starts."""
    if selection.mode == "containers":
        require_docker()


@contextlib.contextmanager
def started(selection: Selection, root: Path, env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """The servers of `selection` for the time of the block: their URLs (and the fetch
    backoff the Kafka needs) as environment variables."""
    if selection.mode == "external":
        yield {name: env[name] for name in URLS} | {
            FETCH_BACKOFF_ENV: env.get(FETCH_BACKOFF_ENV, "0")
        }
    elif selection.mode == "containers":
        with ContainerServers() as servers:
            yield servers.env
    else:
        with EmbeddedServers(
            root, start_kafka=selection.start_kafka, start_mongodb=selection.start_mongodb
        ) as embedded:
            yield {name: env.get(name, "") for name in URLS} | {
                k: v for k, v in embedded.env.items() if v
            }


# ------------------------------------------------------------------------------ containers

KAFKA_PORT = 9092  # the listener the host reaches through the mapped port
KAFKA_STARTER = "/tmp/phoenix-start.sh"
KAFKA_STARTER_READY = "/tmp/phoenix-start.ready"
# KRaft, one node that is broker and controller, as in docker-compose.yml. Kafka learns the
# host's address of its listener only once the container runs (the mapped port): it waits
# for a start script that exports it (what testcontainers-java does for apache/kafka).
KAFKA_ENV = {
    "CLUSTER_ID": "pHxT3sTcQ2a1bCdEfGhIjA",
    "KAFKA_NODE_ID": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_LISTENERS": f"PLAINTEXT://:{KAFKA_PORT},BROKER://:9093,CONTROLLER://:9094",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
        "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
    ),
    "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "1",  # a faster start; tests make many groups only
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
}
KAFKA_RUNNING = re.compile(r"Transitioning from RECOVERY to RUNNING")
MONGO_PORT = 27017
MONGO_REPLICA_SET = "rs0"


def kafka_advertised_listeners(host: str, mapped_port: int) -> str:
    """What Kafka tells clients to connect to: the host's side of the mapped port (so the
    tests and the worker processes they start reach it), and its own broker listener."""
    return f"PLAINTEXT://{host}:{mapped_port},BROKER://localhost:9093"


def kafka_starter(host: str, mapped_port: int) -> bytes:
    return (
        "#!/bin/bash\n"
        f"export KAFKA_ADVERTISED_LISTENERS={kafka_advertised_listeners(host, mapped_port)}\n"
        "exec /etc/kafka/docker/run\n"
    ).encode()


def mongo_uri(host: str, mapped_port: int) -> str:
    """The replica set's member name is the container's own (localhost:27017), which the host
    cannot resolve to this port: connect to the node directly (still a replica set primary,
    so transactions and change streams work)."""
    return f"mongodb://{host}:{mapped_port}/?directConnection=true"


class ContainerServers:
    """apache/kafka and mongo containers; `env` holds the URLs to use."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ContainerServers:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        from testcontainers.core.container import DockerContainer

        deadline = time.monotonic() + CONTAINER_START_TIMEOUT_S
        mongo = (
            DockerContainer(MONGO_IMAGE)
            .with_exposed_ports(MONGO_PORT)
            .with_command(["--replSet", MONGO_REPLICA_SET, "--bind_ip_all"])
        )
        self._stack.enter_context(mongo)  # starts it; Kafka starts meanwhile
        kafka = (
            DockerContainer(KAFKA_IMAGE)
            .with_exposed_ports(KAFKA_PORT)
            .with_envs(**KAFKA_ENV)
            .with_command(
                [
                    "sh",
                    "-c",
                    f"while [ ! -f {KAFKA_STARTER_READY} ]; do sleep 0.1; done; "
                    f"exec bash {KAFKA_STARTER}",
                ]
            )
        )
        self._stack.enter_context(kafka)
        bootstrap = _start_kafka(kafka, deadline)
        uri = mongo_uri(mongo.get_container_host_ip(), mongo.get_exposed_port(MONGO_PORT))
        _initiate_replica_set(uri, deadline)
        self.env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MONGODB_URI": uri}


def _start_kafka(kafka: DockerContainer, deadline: float) -> str:
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    host, port = kafka.get_container_host_ip(), kafka.get_exposed_port(KAFKA_PORT)
    kafka.copy_into_container(kafka_starter(host, port), KAFKA_STARTER, 0o755)
    # Written after the script is complete: the container's loop waits for this one.
    kafka.copy_into_container(b"", KAFKA_STARTER_READY)
    LogMessageWaitStrategy(KAFKA_RUNNING).with_startup_timeout(
        int(max(1.0, deadline - time.monotonic()))
    ).wait_until_ready(kafka)
    bootstrap = f"{host}:{port}"
    _wait_kafka(bootstrap, deadline, [])  # and it answers a metadata request from here
    return bootstrap


def _initiate_replica_set(uri: str, deadline: float) -> None:
    """Initiate the one-member set (once) and wait until the node is its writable primary."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError

    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=2000)
    config = {
        "_id": MONGO_REPLICA_SET,
        "members": [{"_id": 0, "host": f"localhost:{MONGO_PORT}"}],
    }
    initiated = False
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            try:
                if not initiated:
                    client.admin.command("replSetInitiate", config)
                    initiated = True
                if client.admin.command("hello").get("isWritablePrimary"):
                    return
            except OperationFailure as exc:
                if exc.code == 23:  # AlreadyInitialized
                    initiated = True
                last = exc
            except PyMongoError as exc:  # still starting
                last = exc
            time.sleep(0.2)
    finally:
        client.close()
    raise RuntimeError(f"MongoDB at {uri} did not become a replica set primary: {last}")


# ------------------------------------------------------------------------------ runner


def run(command: list[str], env: Mapping[str, str]) -> int:
    """Run the command to its end: SIGTERM is passed on, and a Ctrl-C (which reaches it
    through the terminal) waits for it to finish before the servers stop."""
    child = subprocess.Popen(command, env=dict(env))
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    try:
        selection = select(os.environ)
        check(selection)
    except ServerSelectionError as exc:
        print(f"tests.servers: {exc}", file=sys.stderr, flush=True)
        return 2
    with (
        tempfile.TemporaryDirectory(prefix="phoenix-servers-") as root,
        started(selection, Path(root), os.environ) as env,
    ):
        print(
            f"test servers: {selection.mode}: " + " ".join(f"{k}={v}" for k, v in env.items()),
            file=sys.stderr,
            flush=True,
        )
        # To the command these are given servers: conftest.py takes them as external.
        return run(command, {**os.environ, **env, ENV: "external"})


if __name__ == "__main__":
    raise SystemExit(main())
