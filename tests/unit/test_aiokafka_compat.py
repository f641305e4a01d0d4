"""The aiokafka workarounds (adapters/aiokafka_compat.py) without servers: the version check
fails loudly outside the versions they were written for, they still match the installed
aiokafka's source, and each is harmless on Apache Kafka (off unless configured, or only what
a static member asks of Kafka's own clients)."""

import inspect
from typing import Any

import aiokafka
import pytest
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import for_code

from phoenix_coupons.adapters import aiokafka_compat as compat
from phoenix_coupons.settings import Settings


@pytest.mark.parametrize("version", ["0.12.0", "0.13.1", "0.14.0", "0.14.2rc1"])
def test_the_versions_written_for_pass(version: str) -> None:
    compat.require_supported(version)


@pytest.mark.parametrize("version", ["0.11.0", "0.15.0", "1.0.0"])
def test_any_other_version_fails_loudly_naming_the_module(version: str) -> None:
    with pytest.raises(RuntimeError, match=f"aiokafka {version} .*aiokafka_compat"):
        compat.require_supported(version)


def test_the_installed_aiokafka_still_has_what_the_workarounds_touch() -> None:
    compat.require_supported(aiokafka.__version__)
    assert list(inspect.signature(compat._original).parameters) == [
        "self",
        "assignment",
        "node_id",
        "request",
    ]
    coordinator = inspect.getsource(GroupCoordinator)
    assert "self._group_instance_id = group_instance_id" in coordinator
    assert "self._group_instance_id is None" in inspect.getsource(
        GroupCoordinator._maybe_leave_group
    )
    assert for_code(82) is compat.FencedInstanceIdError


def test_the_fetch_pause_is_off_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    # Apache Kafka holds an empty fetch itself (fetch.max.wait.ms): nothing to add there.
    assert Settings.model_fields["kafka_empty_fetch_backoff_ms"].default == 0
    monkeypatch.setattr(Fetcher, "_proc_fetch_request", compat._original)
    monkeypatch.setitem(compat._pause, "seconds", 0.0)
    compat.install_fetch_pause(0)
    assert Fetcher._proc_fetch_request is compat._original
    assert not compat.fetch_pause_installed()


async def test_a_pause_of_zero_passes_each_fetch_through_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = iter([False, True])

    async def fetch(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        return next(answers)

    monkeypatch.setattr(compat, "_original", fetch)
    monkeypatch.setitem(compat._pause, "seconds", 0.0)
    assert await compat._fetch_then_pause_if_empty(None, None, 1, None) is False
    assert await compat._fetch_then_pause_if_empty(None, None, 1, None) is True


class _Coordinator:
    def __init__(self, instance_id: str | None) -> None:
        self._group_instance_id = instance_id
        self.member_id = "m-1"
        self.generation = 3
        self.coordinator_id = 0


class _Consumer:
    def __init__(self, coordinator: _Coordinator | None) -> None:
        self._coordinator = coordinator


def test_only_a_static_member_is_made_to_leave_on_stop() -> None:
    # A dynamic member leaves on stop by itself, as with Kafka's Java client: untouched.
    dynamic = _Coordinator(None)
    assert not compat.leave_group_on_stop(_Consumer(dynamic))  # type: ignore[arg-type]
    assert not compat.leave_group_on_stop(_Consumer(None))  # type: ignore[arg-type]
    # A static member: what the Java client does on close(LEAVE_GROUP) (KIP-1092).
    static = _Coordinator("worker-1")
    assert compat.leave_group_on_stop(_Consumer(static))  # type: ignore[arg-type]
    assert static._group_instance_id is None


def test_the_group_state_is_read_from_the_coordinator() -> None:
    state = compat.group_state(_Consumer(_Coordinator("w")))  # type: ignore[arg-type]
    assert state == compat.GroupState("m-1", 3, 0)
    assert compat.group_state(_Consumer(None)) is None  # type: ignore[arg-type]
