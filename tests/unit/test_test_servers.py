"""Which servers the suite meets (tests/servers.py): the decision from the environment, the
refusal when Docker is asked for and none answers, and the containers' wiring that the host
(and the worker processes the e2e tests start) must be able to reach."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import servers
from tests.servers import Selection, ServerSelectionError, select

ROOT = Path(__file__).resolve().parents[2]
KAFKA = "KAFKA_BOOTSTRAP_SERVERS"
MONGO = "MONGODB_URI"
BOTH = {KAFKA: "k:9092", MONGO: "mongodb://m:27017/"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Selection("embedded", start_kafka=True, start_mongodb=True)),
        (BOTH, Selection("external")),
        ({KAFKA: "k:9092"}, Selection("embedded", start_kafka=False, start_mongodb=True)),
        ({MONGO: "mongodb://m/"}, Selection("embedded", start_kafka=True, start_mongodb=False)),
        ({"PHOENIX_TEST_SERVERS": ""}, Selection("embedded", True, True)),
        ({"PHOENIX_TEST_SERVERS": "embedded"}, Selection("embedded", True, True)),
        ({"PHOENIX_TEST_SERVERS": " Containers "}, Selection("containers", True, True)),
        ({"PHOENIX_TEST_SERVERS": "external", **BOTH}, Selection("external")),
        ({KAFKA: "", MONGO: ""}, Selection("embedded", True, True)),
    ],
)
def test_selection_from_the_environment(env: dict[str, str], expected: Selection) -> None:
    assert select(env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PHOENIX_TEST_SERVERS": "docker"}, ["'docker'", "embedded, containers, external"]),
        ({"PHOENIX_TEST_SERVERS": "external"}, [KAFKA, MONGO]),
        ({"PHOENIX_TEST_SERVERS": "external", KAFKA: "k:1"}, [MONGO]),
        # An explicit choice never quietly gives way to URLs left in the environment.
        ({"PHOENIX_TEST_SERVERS": "containers", **BOTH}, [KAFKA, MONGO, "external"]),
        ({"PHOENIX_TEST_SERVERS": "containers", MONGO: "mongodb://m/"}, [MONGO]),
        ({"PHOENIX_TEST_SERVERS": "embedded", KAFKA: "k:1"}, [KAFKA]),
    ],
)
def test_refusals_name_what_to_change(env: dict[str, str], named: list[str]) -> None:
    with pytest.raises(ServerSelectionError) as raised:
        select(env)
    for word in named:
        assert word in str(raised.value)


def closed_socket(tmp_path: Path) -> str:
    """A unix socket nobody listens on (bound, then closed): connecting is refused."""
    path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return f"unix://{path}"


def test_containers_without_docker_fail_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = closed_socket(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(servers.DockerUnavailable) as raised:
        servers.check(Selection("containers", True, True))
    message = str(raised.value)
    assert "PHOENIX_TEST_SERVERS=containers needs a Docker engine" in message
    assert host in message
    assert "PHOENIX_TEST_SERVERS=embedded" in message


def test_other_modes_need_no_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", closed_socket(tmp_path))
    servers.check(Selection("embedded", True, True))
    servers.check(Selection("external"))


def run_runner(
    tmp_path: Path, env: dict[str, str], *command: str
) -> "subprocess.CompletedProcess[str]":
    """`python -m tests.servers -- command` (what `make test` runs) in a bare environment."""
    return subprocess.run(
        [sys.executable, "-m", "tests.servers", "--", *command],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_runner_stops_before_the_command_without_docker(tmp_path: Path) -> None:
    """`make test PHOENIX_TEST_SERVERS=containers` with no engine: exit 2 and the reason; the
    suite never runs, on other servers or at all."""
    marker = tmp_path / "ran"
    env = {"PHOENIX_TEST_SERVERS": "containers", "DOCKER_HOST": closed_socket(tmp_path)}
    done = run_runner(tmp_path, env, "touch", str(marker))
    assert done.returncode == 2, done.stderr
    assert "needs a Docker engine" in done.stderr
    assert not marker.exists()


def test_the_runner_refuses_an_unknown_choice(tmp_path: Path) -> None:
    done = run_runner(tmp_path, {"PHOENIX_TEST_SERVERS": "kind"}, "true")
    assert done.returncode == 2
    assert "'kind' is not one of embedded, containers, external" in done.stderr


def test_the_runner_gives_the_command_its_servers_as_external(tmp_path: Path) -> None:
    """What the command (pytest) gets: the URLs, and a choice that starts nothing more."""
    out = tmp_path / "env"
    script = (
        "import os, sys; open(sys.argv[1], 'w').write(' '.join(os.environ[k] for k in "
        f"('PHOENIX_TEST_SERVERS', '{KAFKA}', '{MONGO}')))"
    )
    done = run_runner(tmp_path, BOTH, sys.executable, "-c", script, str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == f"external {BOTH[KAFKA]} {BOTH[MONGO]}"


def compose_services() -> dict[str, dict[str, object]]:
    services: dict[str, dict[str, object]] = yaml.safe_load(
        (ROOT / "docker-compose.yml").read_text()
    )["services"]
    return services


def test_containers_use_the_images_of_docker_compose() -> None:
    services = compose_services()
    assert services["kafka"]["image"] == servers.KAFKA_IMAGE
    assert services["mongo"]["image"] == servers.MONGO_IMAGE


def test_kafka_settings_agree_with_docker_compose() -> None:
    """Where both set a broker setting that changes behaviour, they set the same value."""
    compose = {k: str(v) for k, v in compose_services()["kafka"]["environment"].items()}  # type: ignore[attr-defined]
    wiring = {"CLUSTER_ID", "KAFKA_LISTENERS", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"}
    wiring |= {"KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_INTER_BROKER_LISTENER_NAME"}
    shared = (set(compose) & set(servers.KAFKA_ENV)) - wiring
    assert "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR" in shared
    assert {k: compose[k] for k in shared} == {k: servers.KAFKA_ENV[k] for k in shared}


def test_kafka_advertises_the_hosts_side_of_the_mapped_port() -> None:
    """Clients, the e2e tests' worker processes included, connect to what the broker
    advertises: the Docker host's address and the mapped port, not the container's."""
    listeners = servers.kafka_advertised_listeners("localhost", 32771)
    assert listeners.split(",")[0] == "PLAINTEXT://localhost:32771"
    assert "PLAINTEXT://:9092" in servers.KAFKA_ENV["KAFKA_LISTENERS"]
    script = servers.kafka_starter("localhost", 32771).decode()
    assert f"KAFKA_ADVERTISED_LISTENERS={listeners}\n" in script


def test_mongo_is_reached_directly_from_the_host() -> None:
    """The member name (localhost:27017 inside the container) does not lead to the mapped
    port: the driver must not follow it."""
    assert servers.mongo_uri("localhost", 32772) == (
        "mongodb://localhost:32772/?directConnection=true"
    )
