"""Each rule has one home in the source: a change to it is one edit, and `grep` finds it."""

import re
from pathlib import Path

import pytest

from phoenix_coupons.settings import Settings
from schemas import topics
from schemas.export import CHANNELS
from schemas.redemptions import REFUSALS

ROOT = Path(__file__).parents[2]
PACKAGES = ("phoenix_coupons", "consumers", "schemas")


def sources(*packages: str) -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def homes(pattern: str, *packages: str) -> list[str]:
    """The files that hold `pattern` (a regular expression), one entry per occurrence."""
    return [
        name
        for name, text in sources(*(packages or PACKAGES)).items()
        for _ in re.finditer(pattern, text)
    ]


def test_the_request_hash_is_computed_in_one_place() -> None:
    assert homes(r"hashlib\.sha256\(\w+\.model_dump_json\(") == [
        "phoenix_coupons/services/idempotency.py"
    ]


def test_kafka_records_are_laid_out_in_one_module() -> None:
    """Event records and dead letters, their keys and headers: adapters/kafka.py."""
    assert set(homes(r"OutboundRecord\(")) == {"phoenix_coupons/adapters/kafka.py"}
    assert set(homes(r"\"dlq_error_kind\"|\"content-type\"")) == {
        "phoenix_coupons/adapters/kafka.py"
    }


@pytest.mark.parametrize(
    "topic",
    [
        topics.ACHIEVEMENTS,
        topics.STREAKS,
        topics.LEADERBOARDS,
        topics.COUPONS_ISSUED,
        topics.COUPONS_REDEEMED,
        topics.DEAD_LETTERS,
    ],
)
def test_each_default_topic_is_named_once(topic: str) -> None:
    assert homes(re.escape(f'"{topic}"')) == ["schemas/topics.py"]


def test_settings_and_the_asyncapi_document_share_the_default_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = ("ACHIEVEMENTS", "STREAKS", "LEADERBOARDS", "COUPONS_REDEEMED", "COUPONS_EXPIRY", "DLQ")
    for name in names:
        monkeypatch.delenv(f"PHOENIX_TOPIC_{name}", raising=False)
    monkeypatch.delenv("PHOENIX_TOPIC_COUPONS_ISSUED", raising=False)
    defaults = Settings()
    configured = {
        defaults.topic_achievements,
        defaults.topic_streaks,
        defaults.topic_leaderboards,
        defaults.topic_coupons_issued,
        defaults.topic_coupons_redeemed,
        defaults.topic_coupons_expiry,
        defaults.topic_dlq,
    }
    assert configured == {channel["address"] for channel in CHANNELS.values()}


def test_each_refusal_is_worded_once() -> None:
    for message in REFUSALS.values():
        assert homes(re.escape(f'"{message}"')) == ["schemas/redemptions.py"], message


def test_services_build_no_documents_or_filters() -> None:
    """Storage belongs to the adapters: no MongoDB field names (`_id`, outbox fields) or
    operators in the services; they speak domain types to the ports."""
    found = homes(r"\"_id\"|\"\$[a-z]+\"|\"\w*publish_\w+\"|Doc\b", "phoenix_coupons/services")
    assert found == []
