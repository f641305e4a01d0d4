"""`services.env` in the data folder fills only the server URLs that are not set; the
servers' addresses are checked once, at start-up."""

import re
from pathlib import Path

import pytest

from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.errors import ConfigurationError
from phoenix_coupons.settings import (
    SERVICES_ENV,
    ServiceSettings,
    Settings,
    load_services_env,
    service_settings,
)

URL_VARS = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "MONGODB_URI",
    "PHOENIX_KAFKA_BOOTSTRAP_SERVERS",
    "PHOENIX_MONGODB_URI",
    "PHOENIX_DATA_DIR",
    "PHOENIX_KAFKA_EMPTY_FETCH_BACKOFF_MS",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in URL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def write_env(data_dir: Path, text: str) -> None:
    (data_dir / SERVICES_ENV).write_text(text)


SERVICES = (
    "# written by make run\n"
    "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092\n"
    "\n"
    "  # MONGODB_URI=mongodb://commented-out:1/\n"
    "MONGODB_URI = mongodb://127.0.0.1:37017/?directConnection=true \n"
    "not a setting line\n"
)


def test_fills_both_urls_when_none_is_set(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(tmp_path, SERVICES)
    settings = Settings(data_dir=tmp_path)
    assert settings.kafka_bootstrap_servers is None
    assert settings.mongodb_uri is None
    loaded = load_services_env(settings)
    assert loaded.kafka_bootstrap_servers == "127.0.0.1:39092"
    assert loaded.mongodb_uri == "mongodb://127.0.0.1:37017/?directConnection=true"
    assert loaded.data_dir == tmp_path
    assert settings.kafka_bootstrap_servers is None, "the input settings are not modified"


def test_a_url_already_set_wins(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(tmp_path, SERVICES)
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.prod:9092")
    loaded = load_services_env(Settings(data_dir=tmp_path))
    assert loaded.kafka_bootstrap_servers == "kafka.prod:9092"
    assert loaded.mongodb_uri == "mongodb://127.0.0.1:37017/?directConnection=true"


def test_nothing_is_read_when_both_are_set(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(tmp_path, SERVICES)
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.prod:9092")
    clean_env.setenv("MONGODB_URI", "mongodb://mongo.prod:27017/")
    settings = Settings(data_dir=tmp_path)
    loaded = load_services_env(settings)
    assert loaded.kafka_bootstrap_servers == "kafka.prod:9092"
    assert loaded.mongodb_uri == "mongodb://mongo.prod:27017/"


def test_commented_lines_are_ignored(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(
        tmp_path,
        "#KAFKA_BOOTSTRAP_SERVERS=commented:1\n   # MONGODB_URI=mongodb://commented:2/\n",
    )
    loaded = load_services_env(Settings(data_dir=tmp_path))
    assert loaded.kafka_bootstrap_servers is None
    assert loaded.mongodb_uri is None


def test_empty_values_are_ignored(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(tmp_path, "KAFKA_BOOTSTRAP_SERVERS=\nMONGODB_URI=mongodb://m:1/\n")
    loaded = load_services_env(Settings(data_dir=tmp_path))
    assert loaded.kafka_bootstrap_servers is None
    assert loaded.mongodb_uri == "mongodb://m:1/"


def test_no_file_leaves_settings_unchanged(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "missing")
    loaded = load_services_env(settings)
    assert loaded.kafka_bootstrap_servers is None
    assert loaded.mongodb_uri is None


def test_only_the_data_dir_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    write_env(other, SERVICES)
    clean_env.chdir(other)
    loaded = load_services_env(Settings(data_dir=tmp_path / "data"))
    assert loaded.kafka_bootstrap_servers is None
    assert loaded.mongodb_uri is None


def test_data_dir_from_the_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_env(tmp_path, SERVICES)
    clean_env.setenv("PHOENIX_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.services_env == tmp_path / SERVICES_ENV
    assert load_services_env(settings).kafka_bootstrap_servers == "127.0.0.1:39092"


def test_the_embedded_kafkas_fetch_pause_comes_with_its_address(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_env(tmp_path, SERVICES + "PHOENIX_KAFKA_EMPTY_FETCH_BACKOFF_MS=5\n")
    assert Settings(data_dir=tmp_path).kafka_empty_fetch_backoff_ms == 0
    assert load_services_env(Settings(data_dir=tmp_path)).kafka_empty_fetch_backoff_ms == 5


def test_the_fetch_pause_stays_off_for_a_kafka_of_ones_own(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_env(tmp_path, SERVICES + "PHOENIX_KAFKA_EMPTY_FETCH_BACKOFF_MS=5\n")
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.prod:9092")
    assert load_services_env(Settings(data_dir=tmp_path)).kafka_empty_fetch_backoff_ms == 0
    clean_env.delenv("KAFKA_BOOTSTRAP_SERVERS")
    clean_env.setenv("PHOENIX_KAFKA_EMPTY_FETCH_BACKOFF_MS", "0")
    assert load_services_env(Settings(data_dir=tmp_path)).kafka_empty_fetch_backoff_ms == 0


def test_the_failed_lookup_limit_is_one_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHOENIX_CODE_LOOKUP_FAILURE_LIMIT", raising=False)
    assert Settings().code_lookup_failure_limit == "30/minute"
    monkeypatch.setenv("PHOENIX_CODE_LOOKUP_FAILURE_LIMIT", "100 per hour")
    assert Settings().code_lookup_failure_limit == "100 per hour"
    for bad in ("thirty", "0/minute", "5/second;30/minute", ""):
        monkeypatch.setenv("PHOENIX_CODE_LOOKUP_FAILURE_LIMIT", bad)
        with pytest.raises(ValueError, match="code_lookup_failure_limit"):
            Settings()


# --- the servers' addresses, checked once at start-up ----------------------------------------


def test_start_up_names_every_missing_server_address(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        service_settings(Settings(data_dir=tmp_path))
    message = str(caught.value)
    assert "KAFKA_BOOTSTRAP_SERVERS" in message and "MONGODB_URI" in message
    with pytest.raises(ConfigurationError, match="MONGODB_URI") as caught:
        service_settings(Settings(data_dir=tmp_path, kafka_bootstrap_servers="k:9092"))
    assert "KAFKA_BOOTSTRAP_SERVERS" not in str(caught.value)


def test_the_checked_settings_keep_every_value_and_what_was_set(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given = Settings(
        data_dir=tmp_path,
        kafka_bootstrap_servers="k:9092",
        mongodb_uri="mongodb://m:1/",
        topic_partitions=3,
    )
    checked = service_settings(given)
    assert isinstance(checked, ServiceSettings)
    assert checked.model_dump() == given.model_dump()
    assert checked.model_fields_set == given.model_fields_set
    assert checked.kafka_bootstrap_servers == "k:9092" and checked.mongodb_uri == "mongodb://m:1/"


def test_the_container_checks_at_construction(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Container(Settings(data_dir=tmp_path, mongodb_uri="mongodb://m:1/"))


def test_no_setting_is_checked_by_assert_outside_the_consumers() -> None:
    """Required settings are checked once, at start-up, with an error naming the variable;
    an `assert` is skipped under `python -O` and names nothing."""
    root = Path(__file__).parents[2] / "phoenix_coupons"
    found = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*assert .*settings\.", line)
    ]
    assert found == []
